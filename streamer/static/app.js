// tradestream dashboard: log in, pick a strategy, show its orders and positions live.
//
// The data flow follows CONTRACT.md section 3: load a snapshot over REST, then stream
// from the snapshot's last_event_id, so nothing between the two is missed. Events
// carry full state, so applying one twice is harmless: every table is an upsert.
//
// Reconnection is ours, not EventSource's: EventSource gives up for good on any
// non-200 answer and retries a dead server at a fixed pace, so on every error we
// close it and open a new one after an exponential backoff with jitter, passing
// the last id we applied as `last_event_id` (a new EventSource cannot set headers).
"use strict";

(() => {
  const RETRY_BASE_MS = 1000;
  const RETRY_MAX_MS = 30000;
  // A quiet connection is only trusted while heartbeats arrive: a proxy or a
  // sleeping laptop can leave a half-open socket that EventSource never notices.
  const MIN_STALE_MS = 35000; // 3.5 heartbeats at the default 10 s
  const MAX_ROWS = 500; // older rows leave the DOM; the snapshot has them all
  const MAX_TOASTS = 4;
  const TOAST_MS = 6000;

  const $ = (id) => document.getElementById(id);

  const state = {
    strategyId: null,
    lastEventId: null, // newest event applied, or the snapshot's head: where a reconnect resumes
    source: null,
    attempt: 0, // failed attempts since the last `connection` event
    retryTimer: null,
    lastHeartbeat: 0, // Date.now() of the last heartbeat or connection, shown as an age
    lastSign: 0, // Date.now() of anything heard from the stream: the liveness watchdog's clock
    heartbeatGap: 10000,
    stopped: false, // set by force_disconnect: never reconnect by ourselves
    resyncing: false,
    pending: [], // events that arrive while a resync reloads the snapshot
    generation: 0, // bumped on every strategy switch; late answers of the old one are ignored
    orders: new Map(), // order_id -> <tr>
    positions: new Map(), // position_id -> <tr>
    names: new Map(), // strategy id -> name, from the last strategy list
  };

  // ---- HTTP -----------------------------------------------------------------

  class HttpError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.error;
    }
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      credentials: "same-origin",
      headers: { Accept: "application/json", "Content-Type": "application/json" },
      ...options,
    });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new HttpError(response.status, body);
    return body;
  }

  // ---- event ids: "<epoch>-<seq>" ---------------------------------------------

  function parseId(id) {
    const match = /^(\d+)-(\d+)$/.exec(id || "");
    return match ? { epoch: match[1], seq: Number(match[2]) } : null;
  }

  // True when `id` is already reflected in what we show. Ids of another epoch
  // cannot be ordered; the server follows them with `resync`, so apply them.
  function alreadySeen(id, than) {
    const a = parseId(id);
    const b = parseId(than);
    return Boolean(a && b && a.epoch === b.epoch && a.seq <= b.seq);
  }

  // ---- why a stream ends ---------------------------------------------------------

  // A force_disconnect brings the server's message. When the page finds out by itself
  // (a reconnect finds the strategy gone or inactive), it shows the same text, from the
  // server's one table of reasons (bus/reasons.py), served as /reasons.json.
  const CLOSED = "The server closed this stream.";
  let reasonTexts = {};

  async function loadReasons() {
    reasonTexts = await api("/reasons.json").catch(() => ({}));
  }

  function reasonText(reason) {
    const template = reasonTexts[reason];
    if (!template) return CLOSED;
    const name = state.names.get(state.strategyId);
    return template.replace("{strategy}", name === undefined ? String(state.strategyId) : `"${name}"`);
  }

  // ---- login and strategies ---------------------------------------------------

  function show(section) {
    for (const id of ["login", "empty", "dashboard"]) $(id).hidden = id !== section;
    $("picker").hidden = section === "login";
    $("who").hidden = section === "login";
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
    // The cookie is HttpOnly, so the name shown after a reload comes from here.
    localStorage.setItem("tradestream.username", user.username);
    form.password.value = "";
    await loadStrategies();
  }

  function showLogin() {
    closeStream();
    setConnection("idle", "not connected");
    show("login");
  }

  async function loadStrategies() {
    let body;
    try {
      body = await api("/api/strategies");
    } catch (error) {
      if (error.status === 401) return showLogin();
      return showBanner("Cannot load strategies", error.message, true);
    }
    $("username").textContent = localStorage.getItem("tradestream.username") || "";
    state.names = new Map(body.strategies.map((s) => [s.id, s.name]));
    const select = $("strategy");
    select.replaceChildren(
      ...body.strategies.map((s) => {
        const option = new Option(s.is_active ? s.name : `${s.name} (inactive)`, s.id);
        option.disabled = !s.is_active;
        return option;
      })
    );
    const active = body.strategies.filter((s) => s.is_active);
    if (active.length === 0) {
      closeStream();
      setConnection("idle", "no strategy");
      return show("empty");
    }
    show("dashboard");
    const saved = Number(localStorage.getItem("tradestream.strategy"));
    const chosen = active.find((s) => s.id === saved) || active[0];
    select.value = String(chosen.id);
    await selectStrategy(chosen.id);
  }

  async function selectStrategy(strategyId) {
    closeStream();
    hideBanner();
    state.generation += 1;
    // lastEventId belongs to the old strategy's stream: never resume another key from it.
    Object.assign(state, { strategyId, lastEventId: null, stopped: false, attempt: 0, resyncing: false, pending: [] });
    localStorage.setItem("tradestream.strategy", String(strategyId));
    clearTables();
    setConnection("connecting", "loading");
    const generation = state.generation;
    try {
      await loadSnapshot(generation);
    } catch (error) {
      if (generation !== state.generation) return;
      if (error.status === 401) return showLogin();
      return scheduleReconnect(`snapshot failed: ${error.message}`);
    }
    if (generation === state.generation) openStream();
  }

  // ---- snapshot ---------------------------------------------------------------

  async function loadSnapshot(generation) {
    const query = `?strategy_id=${state.strategyId}`;
    const [orders, positions] = await Promise.all([
      api(`/api/orders${query}`),
      api(`/api/positions${query}`),
    ]);
    if (generation !== state.generation) return;
    clearTables();
    const newestFirst = (a, b) => String(b.timestamp).localeCompare(String(a.timestamp));
    for (const row of [...orders.orders].sort(newestFirst).reverse()) upsertOrder(row, false);
    for (const row of [...positions.positions].sort(newestFirst).reverse()) upsertPosition(row, false);
    // Each snapshot read its head before the database; resuming from the older
    // one misses nothing (a repeated event only rewrites a row with its own state).
    const older = alreadySeen(orders.last_event_id, positions.last_event_id);
    state.lastEventId = older ? orders.last_event_id : positions.last_event_id;
  }

  // ---- the stream ---------------------------------------------------------------

  function openStream() {
    closeStream();
    const params = new URLSearchParams({ strategy_id: state.strategyId });
    if (state.lastEventId) params.set("last_event_id", state.lastEventId);
    const source = new EventSource(`/api/events/stream?${params}`);
    const on = (name, handler) =>
      source.addEventListener(name, (event) => {
        // A closed source can still deliver an event already queued for it.
        if (source === state.source) handler(event);
      });
    on("connection", onConnected);
    on("heartbeat", onHeartbeat);
    on("order_update", (event) => onBusEvent(event, applyOrderEvent));
    on("position_update", (event) => onBusEvent(event, applyPositionEvent));
    on("order_batch_update", (event) => onBusEvent(event, applyBatch));
    on("resync", onResync);
    on("force_disconnect", onForceDisconnect);
    source.onerror = () => {
      if (source === state.source) scheduleReconnect("connection lost");
    };
    state.source = source;
    state.lastSign = Date.now();
    setConnection("connecting", "connecting");
  }

  function closeStream() {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
    if (state.source) state.source.close();
    state.source = null;
  }

  function onConnected() {
    state.attempt = 0;
    state.lastHeartbeat = state.lastSign = Date.now();
    setConnection("connected", "connected");
  }

  function onHeartbeat() {
    const now = Date.now();
    if (state.lastHeartbeat) state.heartbeatGap = now - state.lastHeartbeat;
    state.lastHeartbeat = state.lastSign = now;
    if (!state.resyncing) setConnection("connected", "connected");
  }

  function onBusEvent(event, apply) {
    state.lastSign = Date.now();
    if (alreadySeen(event.lastEventId, state.lastEventId)) return;
    const data = JSON.parse(event.data);
    if (state.resyncing) {
      state.pending.push({ id: event.lastEventId, data, apply });
      return;
    }
    apply(data);
    state.lastEventId = event.lastEventId;
  }

  // The stream goes on live after `resync`; only the tables must be rebuilt.
  // Events arriving meanwhile wait, and only those newer than the new snapshot apply.
  async function onResync() {
    const generation = state.generation;
    const source = state.source;
    state.resyncing = true;
    state.pending = [];
    setConnection("resyncing", "resyncing");
    try {
      await loadSnapshot(generation);
    } catch (error) {
      if (generation !== state.generation) return;
      state.resyncing = false;
      if (error.status === 401) return showLogin();
      return scheduleReconnect(`resync failed: ${error.message}`);
    }
    if (generation !== state.generation) return;
    for (const { id, data, apply } of state.pending) {
      if (alreadySeen(id, state.lastEventId)) continue;
      apply(data);
      state.lastEventId = id;
    }
    state.pending = [];
    state.resyncing = false;
    // The stream may have dropped meanwhile; then the reconnect owns the indicator.
    if (state.source === source) setConnection("connected", "connected");
  }

  function onForceDisconnect(event) {
    const data = JSON.parse(event.data);
    closeStream();
    if (data.reason === "server_shutdown") {
      // One streamer process stopping is routine (a deploy, a restart); the
      // others still serve. Reconnect, jittered so clients do not stampede them.
      return scheduleReconnect("server restarting");
    }
    stop("Stream stopped.", data.message || CLOSED);
  }

  function stop(title, text) {
    closeStream();
    state.stopped = true;
    setConnection("stopped", "disconnected");
    showBanner(title, text || "", true);
  }

  function scheduleReconnect(why) {
    closeStream();
    if (state.stopped) return;
    const ceiling = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** state.attempt);
    // Half fixed, half random: a restarted server is not hit by every browser at once.
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    state.attempt += 1;
    const seconds = Math.ceil(delay / 1000);
    setConnection("reconnecting", `reconnecting in ${seconds} s (${why})`);
    const generation = state.generation;
    state.retryTimer = setTimeout(() => reconnect(generation), delay);
  }

  // EventSource hides the status of a refused stream, so ask /api/strategies why
  // before trying again: logged out (401), access lost (absent) or inactive.
  async function reconnect(generation) {
    let body;
    try {
      body = await api("/api/strategies");
    } catch (error) {
      if (generation !== state.generation) return;
      if (error.status === 401) return showLogin();
      return scheduleReconnect("server unreachable");
    }
    if (generation !== state.generation) return;
    const strategy = body.strategies.find((s) => s.id === state.strategyId);
    if (!strategy) return stop("Stream stopped.", reasonText("permission_revoked"));
    if (!strategy.is_active) return stop("Stream stopped.", reasonText("strategy_inactive"));
    if (!state.lastEventId) {
      // No snapshot yet (it failed before the first stream): without one there is no resume point.
      try {
        await loadSnapshot(generation);
      } catch (error) {
        if (generation !== state.generation) return;
        return scheduleReconnect(`snapshot failed: ${error.message}`);
      }
      if (generation !== state.generation) return;
    }
    openStream();
  }

  // ---- tables -----------------------------------------------------------------

  function clearTables() {
    state.orders.clear();
    state.positions.clear();
    $("orders").tBodies[0].replaceChildren();
    $("positions").tBodies[0].replaceChildren();
    updateCounts();
  }

  function applyOrderEvent(order) {
    upsertOrder(order, true);
    if (!order.suppress_toast) toast(describeOrder(order), order.side === "SELL" ? "sell" : "buy");
  }

  function applyPositionEvent(position) {
    upsertPosition(position, true);
  }

  function upsertOrder(order, live) {
    const cells = [
      cell(time(order.timestamp), "time", order.timestamp),
      cell(order.symbol),
      cell(order.side, `side ${String(order.side).toLowerCase()}`),
      cell(order.order_type, "opt"),
      cell(number(order.quantity), "num"),
      cell(number(order.filled_quantity), "num opt"),
      cell(orderPrice(order), "num"),
      badge(order.status),
      cell(order.account && order.account.name, "opt"),
    ];
    upsertRow(state.orders, $("orders"), order.order_id, cells, live);
  }

  function upsertPosition(position, live) {
    const closed = position.event_type === "position_closed" || Number(position.quantity) === 0;
    const cells = [
      cell(position.symbol),
      cell(number(position.quantity), "num"),
      cell(money(position.entry_price), "num"),
      cell(position.account_name || (position.account && position.account.name), "opt"),
      cell(closed ? "closed" : time(position.timestamp), "", position.timestamp),
    ];
    const row = upsertRow(state.positions, $("positions"), position.position_id, cells, live);
    // A closed position stays visible, greyed, so its last state can still be read.
    row.classList.toggle("closed", closed);
  }

  // New rows go on top; an updated row keeps its place and flashes.
  function upsertRow(rows, table, id, cells, live) {
    const key = String(id);
    let row = rows.get(key);
    if (row) {
      row.replaceChildren(...cells);
    } else {
      row = document.createElement("tr");
      row.dataset.id = key;
      row.append(...cells);
      table.tBodies[0].prepend(row);
      rows.set(key, row);
      if (rows.size > MAX_ROWS) {
        const oldest = table.tBodies[0].lastElementChild;
        rows.delete(oldest.dataset.id);
        oldest.remove();
      }
    }
    if (live) {
      row.classList.remove("flash");
      void row.offsetWidth; // restart the CSS animation on a row that flashed recently
      row.classList.add("flash");
    }
    updateCounts();
    return row;
  }

  function updateCounts() {
    for (const [name, rows] of [["orders", state.orders], ["positions", state.positions]]) {
      $(`${name}-count`).textContent = rows.size ? String(rows.size) : "";
      $(name).classList.toggle("empty", rows.size === 0);
    }
  }

  function applyBatch(batch) {
    const table = document.createElement("table");
    table.innerHTML = '<thead><tr><th>Type</th><th class="num">Created</th><th class="num">Cancelled</th></tr></thead>';
    const body = table.createTBody();
    for (const s of batch.summaries) {
      const row = body.insertRow();
      row.append(cell(s.order_type), cell(String(s.created), "num"), cell(String(s.cancelled), "num"));
    }
    const when = document.createElement("p");
    when.className = "muted";
    when.textContent = `at ${time(batch.timestamp)}`;
    $("batch").replaceChildren(table, when);
    const created = batch.summaries.reduce((n, s) => n + s.created, 0);
    const cancelled = batch.summaries.reduce((n, s) => n + s.cancelled, 0);
    toast(`Batch: ${created} created, ${cancelled} cancelled`, "batch");
  }

  // ---- small view helpers (textContent only: event fields are never parsed as HTML) ----

  function cell(text, className = "", title = "") {
    const td = document.createElement("td");
    td.textContent = text ?? "—";
    if (className) td.className = className;
    if (title) td.title = title;
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

  function number(value) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: 8 });
  }

  // Prices get the decimals that matter at their size: 90,884.1 but 0.00001234.
  function money(value) {
    if (value === null || value === undefined) return "—";
    const size = Math.abs(Number(value));
    const digits = size >= 1000 ? 2 : size >= 1 ? 4 : 8;
    return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
  }

  // A resting stop order has no price yet: its trigger is what the trader looks for.
  function orderPrice(order) {
    const price = order.price ?? (order.average_price || null); // the limit, else what it filled at
    if (price !== null && price !== undefined) return money(price);
    if (order.stop_price !== null && order.stop_price !== undefined) return `stop ${money(order.stop_price)}`;
    return "—";
  }

  function time(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? "—" : date.toLocaleTimeString([], { hour12: false });
  }

  function describeOrder(order) {
    const verb = String(order.event_type || "order_updated").replace("order_", "").replace("_", " ");
    const price = orderPrice(order);
    const at = price === "—" ? "" : ` @ ${price}`;
    return `${order.side} ${number(order.quantity)} ${order.symbol} ${order.order_type}${at} — ${verb}`;
  }

  function toast(text, kind) {
    const box = $("toasts");
    const item = document.createElement("div");
    item.className = "toast";
    item.dataset.kind = kind;
    item.textContent = text;
    box.append(item);
    while (box.children.length > MAX_TOASTS) box.firstElementChild.remove();
    setTimeout(() => item.remove(), TOAST_MS);
  }

  function showBanner(title, text, retry) {
    $("banner-title").textContent = title;
    $("banner-text").textContent = text;
    $("banner-retry").hidden = !retry;
    $("banner").hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
  }

  function setConnection(kind, text) {
    $("connection").dataset.state = kind;
    $("connection-text").textContent = text;
    showHeartbeatAge();
  }

  function showHeartbeatAge() {
    const seconds = Math.floor((Date.now() - state.lastHeartbeat) / 1000);
    $("heartbeat-age").textContent =
      state.source && state.lastHeartbeat ? `· heartbeat ${seconds} s ago` : "";
  }

  // Once a second: the heartbeat's age, and a reconnect when the stream went
  // silent (also catches a server that accepted the connection but never answers).
  function tick() {
    const now = Date.now();
    showHeartbeatAge();
    const staleAfter = Math.max(MIN_STALE_MS, 3 * state.heartbeatGap);
    if (state.source && now - state.lastSign > staleAfter) scheduleReconnect("no heartbeat");
  }

  // ---- start ------------------------------------------------------------------

  $("login-form").addEventListener("submit", login);
  $("strategy").addEventListener("change", (event) => selectStrategy(Number(event.target.value)));
  $("banner-retry").addEventListener("click", () => loadStrategies());
  $("logout").addEventListener("click", async () => {
    await api("/api/logout", { method: "POST" }).catch(() => null);
    localStorage.removeItem("tradestream.username");
    showLogin();
  });
  setInterval(tick, 1000);
  loadReasons();
  loadStrategies();
})();
