// The live feed: a websocket that reconnects with back-off and resyncs from a snapshot.

import {api, liveURL} from "./api.js";

const MIN_DELAY = 500;
const MAX_DELAY = 15000;
const SILENCE = 45000; // the server ticks every 15 s; this long without a word is a dead line

export class Feed {
  /**
   * handlers: snapshot(msg), update(msg), state(name, detail) where name is one of
   * "connecting", "live", "down" (detail: {retryIn, attempt}), "refused" (detail: reason).
   */
  constructor(handlers) {
    this.handlers = handlers;
    this.attempt = 0;
    this.ws = null;
    this.timer = null;
    this.lastHeard = 0;
    this.stopped = false;
    this.messages = 0;
    this.watchdog = setInterval(() => this.checkSilence(), 5000);
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    this.handlers.state("connecting", {attempt: this.attempt});
    let ws;
    try {
      ws = new WebSocket(liveURL());
    } catch (err) {
      this.retry();
      return;
    }
    this.ws = ws;
    this.lastHeard = Date.now();
    ws.onopen = () => {
      this.lastHeard = Date.now();
    };
    ws.onmessage = (event) => {
      this.lastHeard = Date.now();
      this.messages += 1;
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (msg.t === "snapshot") {
        this.attempt = 0;
        this.handlers.state("live", {});
        this.handlers.snapshot(msg);
      } else if (msg.t === "update") {
        this.handlers.update(msg);
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.afterClose();
    };
  }

  async afterClose() {
    // The browser does not say why a handshake failed: ask whether the token is still good.
    try {
      await api.info();
    } catch (err) {
      if (err.status === 401) {
        this.stopped = true;
        this.handlers.state("refused", {reason: err.message});
        return;
      }
    }
    this.retry();
  }

  retry() {
    if (this.stopped || this.timer) return;
    const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.handlers.state("down", {retryIn: delay, attempt: this.attempt});
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Reconnect at once (the "reconnect now" button). */
  now() {
    this.attempt = 0;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
    }
    this.connect();
  }

  checkSilence() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN &&
        Date.now() - this.lastHeard > SILENCE) {
      const ws = this.ws;
      this.ws = null;
      ws.close();
      this.retry();
    }
  }
}
