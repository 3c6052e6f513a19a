// The dashboard's tables: orders (sorted, filtered, paged back) and positions (with P&L when
// the server sends it). Each row is the last full state received for its id (events carry
// full state, so an upsert is the whole update); the DOM shows a sorted, filtered view of
// that state, rebuilt once per animation frame however many events arrived. Text goes in
// with textContent only: event fields are never parsed as HTML.

import { compareDecimal, formatDecimal, formatTimestamp, isZero, decimalSign } from "./format.js";

const MAX_SHOWN = 500; // rows in the DOM; the rest are a filter or "show more" away
const RESTING = new Set(["NEW", "OPEN", "PARTIALLY_FILLED", "TRIGGERED"]);
const PNL_FIELDS = ["mark_price", "unrealized_pnl", "realized_pnl"];

// ---- cells ---------------------------------------------------------------------------

export function cell(text, className = "", title = "") {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  if (className) td.className = className;
  if (title) td.title = title;
  return td;
}

/** A full timestamp: date, time and the reader's zone; UTC on hover. */
export function timeCell(iso, className = "time") {
  const td = cell("", className);
  const when = formatTimestamp(iso);
  if (!when) return cell("—", className);
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = when.utc;
  for (const [part, text] of [["date", when.date], ["clock", when.time], ["zone", when.zone]]) {
    const span = document.createElement("span");
    span.className = part;
    span.textContent = text;
    time.append(span, " ");
  }
  td.append(time);
  return td;
}

function numberCell(value, className = "num") {
  return cell(formatDecimal(value), className);
}

function pnlCell(value) {
  const td = cell(formatDecimal(value, { signed: true }), "num pnl");
  const sign = decimalSign(value);
  if (sign) td.classList.add(sign > 0 ? "gain" : "loss");
  return td;
}

function badge(status) {
  const td = cell("");
  const span = document.createElement("span");
  span.className = `badge ${String(status).toLowerCase()}`;
  // The longest status would push the column off a phone screen; the title keeps it whole.
  span.textContent = status === "PARTIALLY_FILLED" ? "PARTIAL" : status ?? "—";
  span.title = status ?? "";
  td.append(span);
  return td;
}

/** The price a trader looks for: the limit, else what it filled at, else a resting stop's trigger. */
export function orderPrice(order) {
  const price = order.price ?? (isZero(order.average_price) ? null : order.average_price);
  if (price !== null && price !== undefined) return formatDecimal(price);
  if (order.stop_price !== null && order.stop_price !== undefined) return `stop ${formatDecimal(order.stop_price)}`;
  return "—";
}

function priceCell(order) {
  const text = orderPrice(order);
  const td = cell(text, "num");
  if (text.startsWith("stop ")) {
    const word = document.createElement("span");
    word.className = "stop";
    word.textContent = "stop ";
    td.replaceChildren(word, text.slice(5));
  }
  return td;
}

function orderCells(order) {
  return [
    timeCell(order.timestamp),
    cell(order.order_id, "id", order.order_id),
    cell(order.symbol),
    cell(order.side, `side ${String(order.side).toLowerCase()}`),
    cell(order.order_type, "opt"),
    badge(order.status), // before the numbers: a long quantity on a phone scrolls them, not the status, away
    numberCell(order.quantity),
    numberCell(order.filled_quantity, "num opt"),
    priceCell(order),
    cell(order.account && order.account.name, "opt"),
  ];
}

// ---- orders --------------------------------------------------------------------------

// Sort keys by column; the Time column is the last update (`timestamp`), newest first by default.
const ORDER_SORTS = {
  timestamp: (a, b) => String(a.timestamp).localeCompare(String(b.timestamp)),
  order_id: (a, b) => String(a.order_id).localeCompare(String(b.order_id)),
  symbol: (a, b) => String(a.symbol).localeCompare(String(b.symbol)),
  side: (a, b) => String(a.side).localeCompare(String(b.side)),
  order_type: (a, b) => String(a.order_type).localeCompare(String(b.order_type)),
  quantity: (a, b) => compareDecimal(a.quantity, b.quantity),
  filled_quantity: (a, b) => compareDecimal(a.filled_quantity, b.filled_quantity),
  status: (a, b) => String(a.status).localeCompare(String(b.status)),
};

export class OrdersTable {
  constructor(table, { onChange = () => {} } = {}) {
    this.table = table;
    this.onChange = onChange;
    this.rows = new Map(); // order_id -> {order, rank, tr, fresh}; rank: creation order as far as known
    this.minRank = 0;
    this.maxRank = 0;
    this.sort = { key: "timestamp", descending: true };
    this.filter = { symbol: "", side: "", status: "" };
    this.shown = MAX_SHOWN;
    this.hasMore = false; // the server holds older orders than the oldest here
    this.pending = false;
    for (const th of table.tHead.querySelectorAll("th[data-sort]")) {
      th.querySelector("button").addEventListener("click", () => this.sortBy(th.dataset.sort));
    }
  }

  clear() {
    this.rows.clear();
    this.minRank = this.maxRank = 0;
    this.hasMore = false;
    this.shown = MAX_SHOWN;
    this.render();
  }

  /** Rows of a snapshot or an older page (oldest first): they rank below everything known when `older`. */
  load(orders, { older = false } = {}) {
    const base = older ? this.minRank - orders.length : this.maxRank + 1;
    orders.forEach((order, index) => this.put(order, base + index, false));
    this.schedule();
  }

  /** A live event's full state. */
  upsert(order) {
    const known = this.rows.get(order.order_id);
    this.put(order, known ? known.rank : this.maxRank + 1, true);
    this.schedule();
  }

  put(order, rank, live) {
    const known = this.rows.get(order.order_id);
    if (known) rank = known.rank; // a row keeps its place in creation order
    this.minRank = Math.min(this.minRank, rank);
    this.maxRank = Math.max(this.maxRank, rank);
    const tr = known ? known.tr : document.createElement("tr");
    tr.dataset.id = order.order_id;
    tr.replaceChildren(...orderCells(order));
    this.rows.set(order.order_id, { order, rank, tr, fresh: live });
  }

  /** The order_id to page back from: the oldest order held. */
  oldestId() {
    let oldest = null;
    for (const row of this.rows.values()) if (!oldest || row.rank < oldest.rank) oldest = row;
    return oldest && oldest.order.order_id;
  }

  sortBy(key) {
    this.sort = this.sort.key === key ? { key, descending: !this.sort.descending } : { key, descending: key === "timestamp" };
    this.render();
  }

  setFilter(name, value) {
    this.filter[name] = value;
    this.render();
  }

  showMore() {
    this.shown += MAX_SHOWN;
    this.render();
  }

  matches(order) {
    const { symbol, side, status } = this.filter;
    if (symbol && order.symbol !== symbol) return false;
    if (side && order.side !== side) return false;
    if (status === "resting") return RESTING.has(order.status);
    return !status || order.status === status;
  }

  view() {
    const compare = ORDER_SORTS[this.sort.key] || ORDER_SORTS.timestamp;
    const direction = this.sort.descending ? -1 : 1;
    // Ties keep creation order, newest first: a stable, predictable table.
    return [...this.rows.values()]
      .filter((row) => this.matches(row.order))
      .sort((a, b) => direction * compare(a.order, b.order) || b.rank - a.rank);
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => this.render());
  }

  render() {
    this.pending = false;
    const view = this.view();
    const shown = view.slice(0, this.shown);
    for (const row of shown) {
      if (!row.fresh) continue;
      row.fresh = false;
      row.tr.classList.remove("flash");
      void row.tr.offsetWidth; // restart the CSS animation on a row that flashed recently
      row.tr.classList.add("flash");
    }
    this.table.tBodies[0].replaceChildren(...shown.map((row) => row.tr));
    this.table.classList.toggle("empty", this.rows.size === 0);
    for (const th of this.table.tHead.querySelectorAll("th[data-sort]")) {
      const sorted = th.dataset.sort === this.sort.key;
      th.setAttribute("aria-sort", sorted ? (this.sort.descending ? "descending" : "ascending") : "none");
    }
    this.onChange({ total: this.rows.size, matching: view.length, shown: shown.length, hasMore: this.hasMore,
      symbols: [...new Set([...this.rows.values()].map((row) => row.order.symbol))].sort() });
  }
}

// ---- positions -----------------------------------------------------------------------

export class PositionsTable {
  constructor(table) {
    this.table = table;
    this.rows = new Map(); // position_id -> <tr>
  }

  clear() {
    this.rows.clear();
    this.table.tBodies[0].replaceChildren();
    this.update();
  }

  upsert(position, live) {
    const closed = position.event_type === "position_closed" || isZero(position.quantity);
    const hasPnl = PNL_FIELDS.some((name) => name in position);
    if (hasPnl) this.table.classList.add("has-pnl"); // the server computes P&L: show its columns
    const cells = [
      cell(position.symbol),
      numberCell(position.quantity),
      numberCell(position.entry_price),
      numberCell(position.mark_price, "num pnl-col"),
      pnlCell(position.unrealized_pnl),
      pnlCell(position.realized_pnl),
      cell(position.account_name || (position.account && position.account.name), "opt"),
      closed ? cell("closed", "time") : timeCell(position.timestamp),
    ];
    cells[4].classList.add("pnl-col");
    cells[5].classList.add("pnl-col");
    const key = String(position.position_id);
    let tr = this.rows.get(key);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.id = key;
      this.table.tBodies[0].prepend(tr);
      this.rows.set(key, tr);
    }
    tr.replaceChildren(...cells);
    tr.classList.toggle("closed", closed); // a closed position stays visible, greyed, so its last state can be read
    if (live) {
      tr.classList.remove("flash");
      void tr.offsetWidth;
      tr.classList.add("flash");
    }
    this.update();
  }

  update() {
    this.table.classList.toggle("empty", this.rows.size === 0);
  }
}
