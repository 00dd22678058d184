// The WebSocket to the server: frames in and out, replies matched to requests by `ref`,
// and the back-off (with jitter) between reconnection attempts. Knows nothing of the page.

export const MAX_BACKOFF_S = 30;

/** Seconds to wait before reconnection attempt number `attempt` (0, 1, ...): doubling from
 * 1 s up to 30 s, each cut by a random 0-50 % so that many pages do not return at once. */
export function backoff(attempt, random = Math.random) {
  const base = Math.min(MAX_BACKOFF_S, 2 ** attempt);
  return Math.max(0.5, base * (1 - random() / 2));
}

export function serverUrl(loc = window.location) {
  if (!loc.host) return "ws://127.0.0.1:12346/"; // opened as a file: the default port
  return (loc.protocol === "https:" ? "wss://" : "ws://") + loc.host + "/";
}

export class Connection {
  /**
   * @param {object} handlers onOpen(), onFrame(frame, meta), onClose(reason, byeCode)
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.nextRef = 1;
    this.pending = new Map(); // ref -> {meta, resolve}
    this.unanswered = new Map(); // ref -> meta of a post(): only an error answers those
    this.bye = null;
    this.opened = false;
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    if (this.ws) return;
    this.bye = null;
    this.opened = false;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      queueMicrotask(() => this.handlers.onClose("cannot connect: " + err.message, null));
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      if (this.ws !== ws) return;
      this.opened = true;
      this.handlers.onOpen();
    });
    ws.addEventListener("message", (ev) => {
      if (this.ws !== ws) return;
      let frame;
      try { frame = JSON.parse(ev.data); } catch { return; }
      if (frame && frame.type === "batch" && Array.isArray(frame.events)) {
        // Several events in one message (asked for with batch: true), in order.
        for (const event of frame.events) this.receive(event);
      } else {
        this.receive(frame);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      for (const {resolve} of this.pending.values()) resolve(null);
      this.pending.clear();
      this.unanswered.clear();
      let reason = this.bye ? this.bye.text : ev.reason;
      if (!reason) reason = this.opened ? "connection lost" : "could not reach the server";
      this.handlers.onClose(reason, this.bye ? this.bye.code : null);
    });
  }

  receive(frame) {
    if (!frame || typeof frame !== "object" || typeof frame.type !== "string") return;
    if (frame.type === "bye") {
      this.bye = {code: String(frame.code || ""), text: String(frame.text || frame.code || "bye")};
    }
    const ref = frame.ref != null ? String(frame.ref) : null;
    const waiting = ref !== null && frame.type !== "pong" ? this.pending.get(ref) : undefined;
    if (!waiting && ref !== null && frame.type === "error" && this.unanswered.has(ref)) {
      const meta = this.unanswered.get(ref);
      this.unanswered.delete(ref);
      this.handlers.onFrame(frame, meta);
      return;
    }
    if (waiting) {
      this.pending.delete(ref);
      waiting.resolve(frame);
      if (waiting.quiet) return; // a request() of the page itself: its caller handles it
    }
    this.handlers.onFrame(frame, waiting ? waiting.meta : undefined);
  }

  /** Send a frame; `meta` comes back with its reply. Returns the ref, or null if closed. */
  send(frame, meta) {
    if (!this.open) return null;
    const ref = "w" + this.nextRef++;
    this.ws.send(JSON.stringify({...frame, ref}));
    if (meta !== undefined) this.pending.set(ref, {meta, resolve: () => {}, quiet: false});
    return ref;
  }

  /** Send a frame that is answered only when refused (`typing`, `read`, `edit`, ...: on
   * success the server sends an event, not a reply): an `error` with its ref comes back
   * with `meta`. Only the latest refs are remembered, so successes cost no memory. */
  post(frame, meta) {
    const ref = this.send(frame);
    if (ref === null) return null;
    this.unanswered.set(ref, meta);
    if (this.unanswered.size > 64) this.unanswered.delete(this.unanswered.keys().next().value);
    return ref;
  }

  /** Send a frame and resolve with its reply (an error frame included), or null when the
   * connection closes first. The reply is not passed to onFrame. */
  request(frame) {
    return new Promise((resolve) => {
      if (!this.open) { resolve(null); return; }
      const ref = "w" + this.nextRef++;
      this.pending.set(ref, {meta: undefined, resolve, quiet: true});
      this.ws.send(JSON.stringify({...frame, ref}));
    });
  }

  close() {
    if (this.ws) this.ws.close();
  }
}
