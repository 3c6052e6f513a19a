// tradestream dashboard: log in, pick a strategy, show its orders, positions and batches live.
//
// The data flow follows CONTRACT section 3: load a snapshot over REST, then stream from
// the snapshot's last_event_id (tradestream.js does the streaming: resume, resync,
// backoff, outages). Events carry full state, so every table is an upsert.

import { TradeStream, fetchJson, isAtOrBefore } from "./tradestream.js";
import { OrdersTable, PositionsTable } from "./tables.js";
import { formatDecimal } from "./format.js";
import { batchView, describeBatch, describeOrder, hideBanner, placeholder, showBanner, toast } from "./views.js";

const PAGE = 500; // orders per REST page
const OUTAGE_TITLES = {
  unreachable: "Server unreachable.",
  heartbeat_timeout: "Server unreachable.",
  server_error: "The server answers with errors.",
};
const $ = (id) => document.getElementById(id);

const state = {
  strategyId: null,
  stream: null,
  generation: 0, // bumped on every strategy switch; late answers of the old one are ignored
  batchId: null, // event id of the batch shown
  names: new Map(), // strategy id -> name
  accounts: new Map(), // account_id -> {name, equity}
  retry: null, // {retryAt, reason} while reconnecting
  lastHeartbeat: 0,
};
const orders = new OrdersTable($("orders"), { onChange: showOrderCounts });
const positions = new PositionsTable($("positions"));
let reasonTexts = {};

const api = (path, init = {}) =>
  fetchJson(path, { ...init, headers: { "Content-Type": "application/json", ...init.headers } });

// ---- login and strategies ------------------------------------------------------------

function show(section) {
  for (const id of ["login", "empty", "dashboard"]) $(id).hidden = id !== section;
  $("picker").hidden = section === "login";
  $("who").hidden = section === "login";
  $("toasts").hidden = section !== "dashboard";
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  $("login-error").textContent = "";
  let user;
  try {
    user = await api("/api/login", {
      method: "POST",
      body: JSON.stringify({ username: form.username.value, password: form.password.value }),
    });
  } catch (error) {
    $("login-error").textContent =
      error.status === 401 ? "Wrong username or password." : `Cannot sign in: ${error.message}`;
    return;
  }
  localStorage.setItem("tradestream.username", user.username); // the cookie is HttpOnly
  form.password.value = "";
  await loadStrategies();
}

function showLogin() {
  closeStream();
  setIndicator("idle", "not connected");
  show("login");
}

async function loadStrategies() {
  let body;
  try {
    body = await api("/api/strategies");
  } catch (error) {
    if (error.status === 401) return showLogin();
    return showBanner("Cannot load strategies.", error.message, true);
  }
  $("username").textContent = localStorage.getItem("tradestream.username") || "";
  state.names = new Map(body.strategies.map((s) => [s.id, s.name]));
  $("strategy").replaceChildren(
    ...body.strategies.map((s) => {
      const option = new Option(s.is_active ? s.name : `${s.name} (inactive)`, s.id);
      option.disabled = !s.is_active;
      return option;
    })
  );
  const active = body.strategies.filter((s) => s.is_active);
  if (active.length === 0) {
    closeStream();
    setIndicator("idle", "no strategy");
    return show("empty");
  }
  show("dashboard");
  const saved = Number(localStorage.getItem("tradestream.strategy"));
  const chosen = active.find((s) => s.id === saved) || active[0];
  $("strategy").value = String(chosen.id);
  selectStrategy(chosen.id);
}

function selectStrategy(strategyId) {
  closeStream();
  hideBanner();
  state.generation += 1;
  state.strategyId = strategyId;
  localStorage.setItem("tradestream.strategy", String(strategyId));
  clearTables();
  const generation = state.generation;
  const stream = new TradeStream(strategyId, { snapshot: () => loadSnapshot(generation) });
  stream.on("event", ({ type, data, id }) => APPLY[type] && APPLY[type](data, id));
  stream.on("state", onStreamState);
  stream.on("bus", showConnection);
  stream.on("heartbeat", () => (state.lastHeartbeat = Date.now()));
  state.stream = stream;
  stream.start();
}

function closeStream() {
  if (state.stream) state.stream.close();
  state.stream = null;
}

// ---- snapshot ------------------------------------------------------------------------

// Called by the stream at start and on resync; returns where the stream resumes.
async function loadSnapshot(generation) {
  const query = `strategy_id=${state.strategyId}`;
  const [orderPage, positionList, batch] = await Promise.all([
    api(`/api/orders?${query}&limit=${PAGE}`),
    api(`/api/positions?${query}`),
    api(`/api/batches/latest?${query}`).catch(() => ({ batch: null })),
  ]);
  if (generation !== state.generation) return null;
  clearTables({ keepBatch: true }); // a broker that forgot its history does not make the last batch untrue
  orders.load(orderPage.orders);
  orders.hasMore = orderPage.has_more;
  for (const row of orderPage.orders) noteAccount(row.account);
  for (const row of positionList.positions) applyPosition(row, false);
  if (batch.batch) showBatch(batch.batch, batch.event_id, false);
  // Each snapshot read its head before the database; resuming from the older one
  // misses nothing (a repeated event only rewrites a row with its own state).
  const older = isAtOrBefore(orderPage.last_event_id, positionList.last_event_id);
  return older ? orderPage.last_event_id : positionList.last_event_id;
}

async function loadOlder() {
  const generation = state.generation;
  const before = orders.oldestId();
  $("orders-older").disabled = true;
  try {
    const page = await api(`/api/orders?strategy_id=${state.strategyId}&before=${encodeURIComponent(before)}&limit=${PAGE}`);
    if (generation !== state.generation) return;
    orders.load(page.orders, { older: true });
    orders.hasMore = page.has_more;
  } catch (error) {
    toast(`Cannot load older orders: ${error.message}`, "error");
  } finally {
    $("orders-older").disabled = false;
  }
}

function clearTables({ keepBatch = false } = {}) {
  orders.clear();
  positions.clear();
  state.accounts.clear();
  showEquity();
  if (keepBatch && state.batchId) return;
  state.batchId = null;
  $("batch").replaceChildren(placeholder("No batch yet. A webhook with an orders list shows its summary here."));
}

// ---- events --------------------------------------------------------------------------

const APPLY = {
  order_update(order) {
    orders.upsert(order);
    noteAccount(order.account);
    if (!order.suppress_toast) toast(describeOrder(order), order.side === "SELL" ? "sell" : "buy");
  },
  position_update(position) {
    applyPosition(position, true);
  },
  order_batch_update(batch, id) {
    showBatch(batch, id, true);
  },
};

function applyPosition(position, live) {
  positions.upsert(position, live);
  noteAccount(position.account);
}

function noteAccount(account) {
  if (!account || account.equity === undefined) return;
  state.accounts.set(account.account_id, { name: account.name, equity: account.equity });
  showEquity();
}

function showEquity() {
  const items = [...state.accounts.values()].map(({ name, equity }) => `${name}: ${formatDecimal(equity)}`);
  $("equity").textContent = items.length ? `Equity · ${items.join(" · ")}` : "";
}

function showBatch(batch, id, live) {
  if (id && state.batchId && isAtOrBefore(id, state.batchId)) return; // an older one answered late
  state.batchId = id;
  $("batch").replaceChildren(...batchView(batch));
  if (live) toast(describeBatch(batch), "batch");
}

// ---- connection, outages and stops -----------------------------------------------------

function onStreamState({ state: now, reason, message, status, retryAt }) {
  state.retry = now === "reconnecting" ? { retryAt, reason } : null;
  if (now === "stopped") onStopped(reason, message, status);
  showConnection();
}

// The indicator and the outage banner, from the stream's state and what it knows of the bus.
function showConnection() {
  const stream = state.stream;
  const now = stream ? stream.state : "idle";
  if (now === "connecting") setIndicator("connecting", "connecting");
  else if (now === "connected" && stream.bus === "down") setIndicator("paused", "live data paused (event bus down)");
  else if (now === "connected") setIndicator("connected", "connected");
  else if (now === "resyncing") setIndicator("resyncing", "resyncing");
  else if (now === "reconnecting") setIndicator("reconnecting", reconnectText());
  showOutage();
}

function onStopped(reason, message, status) {
  if (status === 401) return showLogin();
  setIndicator("stopped", "disconnected");
  // A refused reconnect says why in its status; the text is the server's own (/reasons.json).
  const text = status === 403 ? reasonText("permission_revoked") : status === 409 ? reasonText("strategy_inactive") : message;
  showBanner("Stream stopped.", text || "The server closed this stream.", true);
}

function reconnectText() {
  const seconds = Math.max(0, Math.ceil((state.retry.retryAt - Date.now()) / 1000));
  return `reconnecting in ${seconds} s (${state.retry.reason.replaceAll("_", " ")})`;
}

// The amber banner: the server or its event bus is away, so what the tables show may be stale.
function showOutage() {
  const stream = state.stream;
  const reason = state.retry && state.retry.reason;
  const busDown = Boolean(stream && (stream.bus === "down" || reason === "bus_unavailable"));
  const title = OUTAGE_TITLES[reason] || (busDown ? "Live data paused: event bus down." : "");
  $("outage").hidden = !title;
  $("outage-title").textContent = title;
  const retrying = state.retry ? ` Retrying in ${Math.max(0, Math.ceil((state.retry.retryAt - Date.now()) / 1000))} s.` : "";
  $("outage-text").textContent = title ? `What you see may be out of date.${retrying}` : "";
  $("outage-retry").hidden = !state.retry;
  const stale = Boolean(title) || (stream && ["reconnecting", "stopped"].includes(stream.state));
  document.body.classList.toggle("stale", Boolean(stale));
}

function reasonText(reason) {
  const template = reasonTexts[reason];
  if (!template) return "The server closed this stream.";
  const name = state.names.get(state.strategyId);
  return template.replace("{strategy}", name === undefined ? String(state.strategyId) : `"${name}"`);
}

function setIndicator(kind, text) {
  $("connection").dataset.state = kind;
  $("connection-text").textContent = text;
  showHeartbeatAge();
}

function showHeartbeatAge() {
  const connected = $("connection").dataset.state === "connected" && state.lastHeartbeat;
  const seconds = Math.floor((Date.now() - state.lastHeartbeat) / 1000);
  $("heartbeat-age").textContent = connected ? `· heartbeat ${seconds} s ago` : "";
}

function tick() {
  showHeartbeatAge();
  if (state.retry) {
    $("connection-text").textContent = reconnectText();
    showOutage();
  }
}

// ---- small view parts ------------------------------------------------------------------

function showOrderCounts({ total, matching, shown, hasMore, symbols }) {
  $("orders-count").textContent = total ? String(total) : "";
  $("orders-shown").textContent = matching === total ? "" : `${matching} of ${total} match`;
  $("orders-more").hidden = shown >= matching;
  $("orders-older").hidden = !hasMore;
  const select = $("filter-symbol");
  const known = [...select.options].slice(1).map((o) => o.value);
  if (known.join() !== symbols.join()) {
    const chosen = select.value;
    select.replaceChildren(new Option("All symbols", ""), ...symbols.map((s) => new Option(s, s)));
    select.value = symbols.includes(chosen) ? chosen : "";
  }
}

// ---- start -----------------------------------------------------------------------------

$("login-form").addEventListener("submit", login);
$("strategy").addEventListener("change", (event) => selectStrategy(Number(event.target.value)));
$("banner-retry").addEventListener("click", () => loadStrategies());
$("outage-retry").addEventListener("click", () => state.stream && state.stream.retryNow());
$("orders-more").addEventListener("click", () => orders.showMore());
$("orders-older").addEventListener("click", loadOlder);
for (const name of ["symbol", "side", "status"]) {
  $(`filter-${name}`).addEventListener("change", (event) => orders.setFilter(name, event.target.value));
}
$("logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => null);
  localStorage.removeItem("tradestream.username");
  showLogin();
});
setInterval(tick, 1000);
fetchJson("/reasons.json").then((texts) => (reasonTexts = texts), () => {});
// Signed in before (the cookie is HttpOnly, so only the name we kept says so): straight to the
// strategies; otherwise to the form, rather than asking and logging a 401 in the console.
if (localStorage.getItem("tradestream.username")) loadStrategies();
else showLogin();
