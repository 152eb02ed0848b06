// The landing page's websocket (docs/lobby-protocol.md): a hello on every connection,
// increasing message ids, and reconnection with a growing delay after a loss.

const PROTOCOL_VERSION = 1;
const FIRST_RETRY_MS = 1000;
const LONGEST_RETRY_MS = 10000;
// The server sends at least its clock every 30 s: longer silence means a dead link
// that the browser has not noticed (a laptop waking up, a network change).
const SILENCE_LIMIT_MS = 45000;
// Close codes 4400-4499 say the link cannot be used (cancelled, ended, no longer
// valid, conference full): reconnecting would not help. 4000 asks for a reconnect.
const FINAL_CLOSE_CODES = { min: 4400, max: 4499 };

export class LobbySocket {
  #url;
  #hello;
  #onMessage;
  #onLost;
  #onCancelled;
  #socket = null;
  #nextId = 1;
  #failures = 0;
  #retryTimer;
  #silenceTimer;
  #stopped = false;

  /**
   * url: the ws: or wss: address; hello: the hello message's fields;
   * onMessage(message) for each server message; onLost() when the connection drops
   * (a new one is on its way); onCancelled(code) when the server closed for good
   * (see FINAL_CLOSE_CODES).
   */
  constructor(url, hello, { onMessage, onLost, onCancelled }) {
    this.#url = url;
    this.#hello = hello;
    this.#onMessage = onMessage;
    this.#onLost = onLost;
    this.#onCancelled = onCancelled;
  }

  start() {
    this.#connect();
  }

  /** Send a request; returns its id, or null when there is no open connection. */
  send(type, fields = {}) {
    if (this.#socket?.readyState !== WebSocket.OPEN) return null;
    const id = this.#nextId++;
    this.#socket.send(JSON.stringify({ ...fields, v: PROTOCOL_VERSION, type, id }));
    return id;
  }

  /** Close for good: no reconnection. */
  stop() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#silenceTimer);
    this.#socket?.close(1000);
    this.#socket = null;
  }

  #connect() {
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    this.#nextId = 1; // ids count per connection
    socket.addEventListener("open", () => {
      this.send("hello", this.#hello);
      this.#expectNews(socket);
    });
    socket.addEventListener("message", (event) => this.#receive(socket, event));
    socket.addEventListener("close", (event) => this.#closed(socket, event.code));
  }

  #receive(socket, event) {
    const message = JSON.parse(event.data);
    this.#expectNews(socket);
    // Only a welcome proves the server took us back: until then, keep backing off.
    if (message.type === "welcome") this.#failures = 0;
    this.#onMessage(message);
  }

  #expectNews(socket) {
    clearTimeout(this.#silenceTimer);
    this.#silenceTimer = setTimeout(() => {
      socket.close();
      this.#closed(socket, null);
    }, SILENCE_LIMIT_MS);
  }

  #closed(socket, code) {
    if (socket !== this.#socket || this.#stopped) return; // an abandoned connection
    this.#socket = null;
    clearTimeout(this.#silenceTimer);
    if (code >= FINAL_CLOSE_CODES.min && code <= FINAL_CLOSE_CODES.max) {
      this.#stopped = true;
      this.#onCancelled(code);
      return;
    }
    this.#onLost();
    const delay = Math.min(FIRST_RETRY_MS * 2 ** this.#failures, LONGEST_RETRY_MS);
    this.#failures += 1;
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
  }
}
