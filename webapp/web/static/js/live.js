// One WebSocket per open page: it reconnects when lost and resumes from the last event id it saw,
// and says which state it is in (connecting, live, reconnecting, offline).
import { goToSignIn } from "./session.js";

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
// The server pings at the protocol level, which a page cannot see; this checks the path both ways.
const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const POLICY_VIOLATION = 1008;

export class Live {
  #api;
  #ws = null;
  #failures = 0;
  #handlers = new Map();
  #timers = { retry: null, ping: null, pong: null };
  #connectedOnce = false;
  #stopped = false;
  state = "connecting";
  lastEventId = null;

  constructor(api) {
    this.#api = api;
  }

  /** Call `handler(message)` for each message of `type` ("state" for state changes). */
  on(type, handler) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(handler);
    return this;
  }

  start() {
    window.addEventListener("offline", () => this.#drop("offline"));
    window.addEventListener("online", () => this.#reconnectNow());
    this.#connect();
    return this;
  }

  /** Close the socket for good (signing out): its close, and the server's, start nothing. */
  stop() {
    this.#stopped = true;
    const ws = this.#ws;
    this.#ws = null;
    for (const timer of Object.values(this.#timers)) clearTimeout(timer);
    ws?.close();
  }

  #emit(type, message) {
    for (const handler of this.#handlers.get(type) || []) handler(message);
  }

  #setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.#emit("state", state);
  }

  async #connect() {
    if (this.#stopped) return;
    this.#setState(this.#connectedOnce ? "reconnecting" : "connecting");
    let ticket;
    try {
      ticket = await this.#api.post("/api/v1/ws/ticket");
    } catch {
      this.#retry();
      return;
    }
    if (this.#stopped) return;
    const url = new URL(ticket.url, location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (this.lastEventId) url.searchParams.set("last_event_id", this.lastEventId);
    const ws = new WebSocket(url);
    this.#ws = ws;
    ws.addEventListener("message", (event) => this.#receive(event.data));
    ws.addEventListener("close", (event) => {
      if (this.#ws === ws) this.#closed(event.code);
    });
  }

  #receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    if (message.id) this.lastEventId = message.id;
    clearTimeout(this.#timers.pong);
    if (message.type === "connected") {
      const resumed = this.#connectedOnce;
      this.#connectedOnce = true;
      this.#failures = 0;
      this.#setState("live");
      this.#schedulePing();
      this.#emit("connected", { ...message, resumed });
      return;
    }
    this.#emit(message.type, message);
  }

  #schedulePing() {
    clearTimeout(this.#timers.ping);
    this.#timers.ping = setTimeout(() => {
      if (this.#ws?.readyState !== WebSocket.OPEN) return;
      this.#ws.send(JSON.stringify({ type: "ping" }));
      this.#timers.pong = setTimeout(() => this.#drop("reconnecting"), PONG_WITHIN_MS);
      this.#schedulePing();
    }, PING_EVERY_MS);
  }

  async #closed(code) {
    this.#ws = null;
    if (this.#stopped) return;
    clearTimeout(this.#timers.ping);
    clearTimeout(this.#timers.pong);
    if (!navigator.onLine) {
      this.#setState("offline");
      return;
    }
    // 1008: the token expired or was revoked; a fresh one comes with the next ticket, or sign-in.
    if (code === POLICY_VIOLATION && !(await this.#api.session.renew())) {
      goToSignIn({ ended: true });
      return;
    }
    this.#retry();
  }

  #retry() {
    if (this.#stopped) return;
    const delay = BACKOFF_MS[Math.min(this.#failures, BACKOFF_MS.length - 1)];
    this.#failures += 1;
    this.#setState(this.#failures > BACKOFF_MS.length ? "offline" : "reconnecting");
    clearTimeout(this.#timers.retry);
    this.#timers.retry = setTimeout(() => this.#connect(), delay);
  }

  /** Close the socket (it will not be resumed until `#reconnectNow`). */
  #drop(state) {
    const ws = this.#ws;
    this.#ws = null;
    clearTimeout(this.#timers.retry);
    ws?.close();
    this.#setState(state);
    if (state !== "offline") this.#retry();
  }

  #reconnectNow() {
    if (this.#ws) return;
    this.#failures = 0;
    clearTimeout(this.#timers.retry);
    this.#connect();
  }
}
