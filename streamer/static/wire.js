// What crosses the wire for tradestream.js (docs/client.md): JSON answers and their
// errors, event ids, and Server-Sent Events frames. tradestream.js re-exports all of it.
//
// The SSE parser follows the HTML standard's rules (CR, LF or CRLF line ends, even
// split across chunks; `:` comments; one space after the colon dropped; several
// `data:` lines joined by LF) with one simplification the stream allows: an event's
// id is its own `id:` line, not inherited (system events have none, bus events always one).

/** An HTTP answer that is not 2xx; `status` and the server's `code` (its `error` field). */
export class HttpError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.error) || null;
    this.body = body;
  }
}

/** GET (or `init`) a JSON answer; throws HttpError on a non-2xx answer, TypeError when unreachable. */
export async function fetchJson(url, init = {}) {
  const response = await fetch(url, { credentials: "same-origin", ...init, headers: { Accept: "application/json", ...init.headers } });
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new HttpError(response.status, body);
  return body;
}

/** "<epoch>-<seq>" → {epoch, seq}, or null. */
export function parseEventId(id) {
  const match = /^(\d+)-(\d+)$/.exec(id || "");
  return match ? { epoch: match[1], seq: Number(match[2]) } : null;
}

/** Whether event `id` is at or before `than` (same epoch only: ids of two epochs cannot be ordered). */
export function isAtOrBefore(id, than) {
  const a = parseEventId(id);
  const b = parseEventId(than);
  return Boolean(a && b && a.epoch === b.epoch && a.seq <= b.seq);
}

/** Server-Sent Events from a text stream: calls `dispatch({event, data, id})` per frame. */
export class SseParser {
  constructor(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.skipLF = false;
    this.reset();
  }

  reset() {
    this.event = "";
    this.data = [];
    this.id = null;
  }

  push(text) {
    if (!text) return;
    // A CR that ended the last chunk ended a line; an LF starting this one belongs to it.
    if (this.skipLF && text.startsWith("\n")) text = text.slice(1);
    this.skipLF = text.endsWith("\r");
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // the unfinished line
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length) this.dispatch({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      return this.reset();
    }
    if (line.startsWith(":")) return; // a comment
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.id = value;
  }
}
