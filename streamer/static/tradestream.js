// tradestream.js: a browser client for tradestream's event stream (docs/client.md).
//
//   import { TradeStream } from "/static/tradestream.js";
//   const stream = new TradeStream(strategyId, { snapshot: async () => (await loadTables()).last_event_id });
//   stream.on("event", ({ type, data, id }) => apply(type, data));
//   stream.on("state", ({ state, reason, message }) => show(state, reason, message));
//   stream.start();
//
// What it does for its page (CONTRACT section 3): every bus event once, in order
// (resuming from the last id it delivered, dropping what it already had); `resync`
// reloads the page's snapshot while later events wait; reconnects after a jittered
// exponential backoff and, while waiting, asks /healthz so it retries the moment
// the server is back; refusals it cannot fix (401, 403, 409, 400, force_disconnect)
// stop it; a stream silent for three heartbeats is taken for dead.
//
// fetch() rather than EventSource: EventSource hides the status and body of a refused
// stream, gives up for good on any non-200 answer, and cannot send headers.

import { HttpError, SseParser, fetchJson, isAtOrBefore, parseEventId } from "./wire.js";

export { HttpError, SseParser, fetchJson, isAtOrBefore, parseEventId };

const DEFAULTS = {
  baseUrl: "",
  headers: {},
  credentials: "same-origin",
  lastEventId: null, // where to resume; with none, snapshot() is asked first
  snapshot: null, // async () => last_event_id of the state it just loaded (also on resync)
  retryBaseMs: 1000,
  retryMaxMs: 30000,
  minStaleMs: 35000, // silence this long (or three heartbeat gaps) ends a stream
  probeMs: 2000, // while waiting to retry an outage: how often /healthz is asked
  probeUrl: "/healthz",
};
// A refusal that retrying cannot fix: the page must act (log in, pick another strategy).
const FINAL_STATUSES = new Set([400, 401, 403, 404, 409]);
// Refusals worth retrying, by the server's error code, and the reason the state then gives.
const RETRY_REASONS = { bus_unavailable: "bus_unavailable", shutting_down: "server_shutdown" };
const MAX_WAITING = 10000; // events held while a resync reloads the snapshot
// Why a retry waits that an answering /healthz shortens: the server or the bus was away.
const OUTAGES = new Set(["unreachable", "heartbeat_timeout", "server_error", "bus_unavailable"]);

/** One strategy's stream, kept open, resumed and resynced for its page. */
export class TradeStream extends EventTarget {
  constructor(strategyId, options = {}) {
    super();
    this.strategyId = strategyId;
    this.options = { ...DEFAULTS, ...options };
    this.lastEventId = this.options.lastEventId;
    this.state = "idle";
    this.bus = null; // "up" | "down" once known
    this.attempt = 0; // failed attempts since the last `connection`
    this.heartbeatGap = 10000;
    this.lastSign = 0; // Date.now() of anything heard: the silence watchdog's clock
    this.lastHeartbeat = 0;
    this.controller = null;
    this.timers = [];
    this.round = 0; // bumped whenever the current attempt ends: late answers of an old one are ignored
    this.resyncing = null; // events that wait while a resync reloads the snapshot
    this.online = () => this.retryNow();
  }

  /** Listen to "event", "state", "bus" or "heartbeat" (or a bus kind such as "order_update"); returns an unsubscribe. */
  on(type, listener) {
    const wrapped = (event) => listener(event.detail);
    this.addEventListener(type, wrapped);
    return () => this.removeEventListener(type, wrapped);
  }

  start() {
    if (this.state !== "idle") return;
    globalThis.addEventListener("online", this.online);
    this.watchdog = setInterval(() => this.checkSilence(), 1000);
    this.connect();
  }

  /** Stop for good (the page leaves, or switches strategy). */
  close() {
    this.end();
    clearInterval(this.watchdog);
    globalThis.removeEventListener("online", this.online);
    this.setState("closed");
  }

  /** Reconnect now: instead of after the backoff, or after a stop (a "Try again" button; also when the network is back). */
  retryNow() {
    if (this.state === "reconnecting" || this.state === "stopped") this.connect();
  }

  // ---- connecting ----------------------------------------------------------------

  async connect() {
    this.end();
    const controller = (this.controller = new AbortController());
    this.lastSign = Date.now(); // a server that accepts but never answers is silence too
    this.setState("connecting");
    try {
      if (!this.lastEventId && this.options.snapshot) this.lastEventId = await this.options.snapshot();
      if (controller.signal.aborted) return;
      const response = await fetch(this.streamUrl(), {
        headers: { Accept: "text/event-stream", ...this.options.headers, ...(this.lastEventId ? { "Last-Event-ID": this.lastEventId } : {}) },
        credentials: this.options.credentials,
        cache: "no-store",
        signal: controller.signal,
      });
      if (!response.ok) return this.refused(response, controller);
      this.lastSign = Date.now();
      await this.read(response.body, controller);
      if (!controller.signal.aborted) this.retry("stream_ended");
    } catch (error) {
      if (controller.signal.aborted) return;
      if (error instanceof HttpError) return this.failed(error); // from snapshot()
      this.retry("unreachable", { message: String(error && error.message) });
    }
  }

  streamUrl() {
    const params = new URLSearchParams({ strategy_id: String(this.strategyId) });
    return `${this.options.baseUrl}/api/events/stream?${params}`;
  }

  async refused(response, controller) {
    const body = await response.json().catch(() => null);
    if (controller.signal.aborted) return; // closed or replaced while the body came
    const error = new HttpError(response.status, body);
    const seconds = Number(response.headers.get("Retry-After"));
    this.failed(error, Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 0);
  }

  failed(error, waitMs = 0) {
    const code = error.code || `http_${error.status}`;
    if (FINAL_STATUSES.has(error.status)) return this.stop(code, error.message, error.status);
    if (code === "bus_unavailable") this.setBus("down");
    const reason = RETRY_REASONS[code] || (error.status >= 500 ? "server_error" : code); // 429: its code
    this.retry(reason, { message: error.message, status: error.status, waitMs });
  }

  async read(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser((frame) => {
      if (!controller.signal.aborted) this.frame(frame);
    });
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || controller.signal.aborted) return;
        this.lastSign = Date.now();
        parser.push(value);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  // ---- what arrives --------------------------------------------------------------

  frame({ event, data, id }) {
    const value = parse(data);
    if (event === "connection") return this.connected(value);
    if (event === "heartbeat") return this.heartbeat(value);
    if (event === "bus_status") return this.setBus(value && value.status);
    if (event === "resync") return this.resync(value);
    if (event === "force_disconnect") return this.forced(value || {});
    if (id) this.busEvent(event, value, id);
  }

  connected(value) {
    this.attempt = 0;
    this.lastHeartbeat = Date.now();
    if (!this.lastEventId && value) this.lastEventId = value.last_event_id; // no snapshot: from the head on
    this.setBus(value && value.bus === "down" ? "down" : "up");
    if (!this.resyncing) this.setState("connected");
  }

  heartbeat(value) {
    const now = Date.now();
    if (this.lastHeartbeat) this.heartbeatGap = now - this.lastHeartbeat;
    this.lastHeartbeat = now;
    this.emit("heartbeat", { timestamp: value && value.timestamp, lastEventId: value && value.last_event_id });
  }

  busEvent(type, data, id) {
    if (isAtOrBefore(id, this.lastEventId)) return; // already delivered, or in the snapshot
    if (this.resyncing) {
      this.resyncing.push({ type, data, id });
      if (this.resyncing.length > MAX_WAITING) this.retry("resync_overflow"); // resumes from before: resync again
      return;
    }
    this.lastEventId = id;
    this.emit("event", { type, data, id });
    this.emit(type, { type, data, id });
  }

  // The stream goes on live after `resync`: the page reloads its snapshot, events wait meanwhile.
  async resync(value) {
    const controller = this.controller;
    if (!this.options.snapshot) return this.emit("resync", value || {});
    this.resyncing = [];
    this.setState("resyncing", { reason: value && value.reason });
    let head;
    try {
      head = await this.options.snapshot();
    } catch (error) {
      if (controller !== this.controller) return;
      this.resyncing = null;
      return error instanceof HttpError ? this.failed(error) : this.retry("unreachable", { message: String(error.message) });
    }
    if (controller !== this.controller) return;
    const waiting = this.resyncing;
    this.resyncing = null;
    this.lastEventId = head;
    for (const { type, data, id } of waiting) this.busEvent(type, data, id);
    this.setState("connected");
  }

  forced({ reason, message }) {
    // One streamer process stopping is routine (a deploy): reconnect, jittered, to another.
    if (reason === "server_shutdown") return this.retry("server_shutdown", { message });
    this.stop(reason || "closed", message || "The server closed this stream.");
  }

  setBus(status) {
    if (status !== "up" && status !== "down") return;
    if (status === this.bus) return;
    this.bus = status;
    this.emit("bus", { status });
  }

  // ---- waiting, retrying, stopping ------------------------------------------------

  retry(reason, detail = {}) {
    this.end();
    const ceiling = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** this.attempt);
    // Half fixed, half random: a restarted server is not hit by every browser at once.
    const delay = Math.max(detail.waitMs || 0, Math.round(ceiling / 2 + (Math.random() * ceiling) / 2));
    this.attempt += 1;
    this.setState("reconnecting", { reason, retryInMs: delay, retryAt: Date.now() + delay, ...detail });
    this.later(() => this.connect(), delay);
    if (OUTAGES.has(reason)) this.later(() => this.probe(reason, this.round), jitter(this.options.probeMs));
  }

  // While an outage lasts, ask /healthz now and then: retry the moment the server (and its bus) answers.
  async probe(reason, round) {
    let health = null;
    try {
      health = await fetchJson(this.options.baseUrl + this.options.probeUrl, { cache: "no-store" });
    } catch (error) {
      // Readiness answers 503 naming what is down (broker, database): the server itself is back.
      health = error instanceof HttpError && error.status === 503 ? error.body : null;
    }
    if (round !== this.round) return;
    if (health && health.broker) this.setBus(health.broker === "up" ? "up" : "down");
    const back = health !== null && (reason !== "bus_unavailable" || health.broker === "up");
    if (back) return this.connect();
    this.later(() => this.probe(reason, round), jitter(this.options.probeMs));
  }

  stop(reason, message, status = null) {
    this.end();
    this.setState("stopped", { reason, message, status });
  }

  checkSilence() {
    if (!["connecting", "connected", "resyncing"].includes(this.state)) return;
    const staleAfter = Math.max(this.options.minStaleMs, 3 * this.heartbeatGap);
    if (Date.now() - this.lastSign > staleAfter) this.retry("heartbeat_timeout");
  }

  later(fn, ms) {
    this.timers.push(setTimeout(fn, ms));
  }

  end() {
    this.round += 1;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers = [];
    this.resyncing = null;
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  setState(state, detail = {}) {
    const previous = this.state;
    this.state = state;
    this.emit("state", { state, previous, ...detail });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}

function jitter(ms) {
  return Math.round(ms / 2 + (Math.random() * ms) / 2);
}
