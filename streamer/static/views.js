// Small parts of the dashboard's view: toasts, banners, the batch summary, order texts.
// Text goes in with textContent only: event fields are never parsed as HTML.

import { formatDecimal } from "./format.js";
import { orderPrice, timeCell } from "./tables.js";

const MAX_TOASTS = 3;
const TOAST_MS = 6000;

export function describeOrder(order) {
  const verb = String(order.event_type || "order_updated").replace("order_", "").replace("_", " ");
  const price = orderPrice(order);
  const fill = order.fill_quantity === null || order.fill_quantity === undefined
    ? "" : ` (${formatDecimal(order.fill_quantity)} @ ${formatDecimal(order.fill_price)})`;
  const at = price === "—" ? "" : ` @ ${price}`;
  return `${order.side} ${formatDecimal(order.quantity)} ${order.symbol} ${order.order_type}${at} — ${verb}${fill}`;
}

export function describeBatch(batch) {
  const created = batch.summaries.reduce((n, s) => n + s.created, 0);
  const cancelled = batch.summaries.reduce((n, s) => n + s.cancelled, 0);
  return `Batch: ${created} created, ${cancelled} cancelled`;
}

/** The "Last batch" card's content: a table of the summaries and when. */
export function batchView(batch) {
  const table = document.createElement("table");
  table.innerHTML = '<thead><tr><th>Type</th><th class="num">Created</th><th class="num">Cancelled</th></tr></thead>';
  const body = table.createTBody();
  for (const s of batch.summaries) {
    const row = body.insertRow();
    for (const [text, className] of [[s.order_type, ""], [String(s.created), "num"], [String(s.cancelled), "num"]]) {
      const td = row.insertCell();
      td.textContent = text;
      td.className = className;
    }
  }
  const when = document.createElement("p");
  when.className = "muted";
  when.append("at ", timeCell(batch.timestamp, "when").firstChild || "—");
  return [table, when];
}

export function placeholder(text) {
  const p = document.createElement("p");
  p.className = "placeholder";
  p.textContent = text;
  return p;
}

// Toasts live in their own strip above the tables: they never cover a row.
export function toast(text, kind) {
  const box = document.getElementById("toasts");
  const item = document.createElement("div");
  item.className = "toast";
  item.dataset.kind = kind;
  item.textContent = text;
  item.title = text;
  box.prepend(item);
  while (box.children.length > MAX_TOASTS) box.lastElementChild.remove();
  setTimeout(() => item.remove(), TOAST_MS);
}

export function showBanner(title, text, retry) {
  const $ = (id) => document.getElementById(id);
  $("banner-title").textContent = title;
  $("banner-text").textContent = text;
  $("banner-retry").hidden = !retry;
  $("banner").hidden = false;
}

export function hideBanner() {
  document.getElementById("banner").hidden = true;
}
