// The host's say over who comes in on a Public Conference's link: the waiting room,
// the lock, and the guests waiting to be let in (docs/lobby-protocol.md, "Who may
// come in"). The server is the truth: a refused change goes back to what it said.
// Server data goes into the page as text, never as HTML.

export class GuestAccess {
  #section;
  #waitingRoom;
  #lock;
  #knocking;
  #list;
  #request;
  #state = null;

  /** root: the #guest-access section; request(type, fields, undo) as the lobby's. */
  constructor(root, request) {
    this.#section = root;
    this.#waitingRoom = root.querySelector("#waiting-room-option");
    this.#lock = root.querySelector("#lock-option");
    this.#knocking = root.querySelector("#knocking");
    this.#list = root.querySelector("#knocking-list");
    this.#request = request;
    const sendAccess = () =>
      this.#request(
        "set_access",
        { locked: this.#lock.checked, waiting_room: this.#waitingRoom.checked },
        () => this.#rerender(),
      );
    this.#waitingRoom.addEventListener("change", sendAccess);
    this.#lock.addEventListener("change", sendAccess);
    root.querySelector("#let-in-all").addEventListener("click", () =>
      this.#request("let_in_all", {}, () => this.#rerender()),
    );
    root.querySelector("#turn-away-all").addEventListener("click", () =>
      this.#request("turn_away_all", {}, () => this.#rerender()),
    );
  }

  /** state: {you, options, waiting: [{id, name}], connected}. */
  render(state) {
    this.#state = state;
    const { you, options, waiting, connected } = state;
    this.#section.hidden = !you.host;
    if (!you.host) return;
    this.#waitingRoom.checked = options.waiting_room;
    this.#lock.checked = options.locked;
    for (const box of [this.#waitingRoom, this.#lock]) box.disabled = !connected;
    this.#knocking.hidden = waiting.length === 0;
    this.#list.replaceChildren(...waiting.map((guest) => this.#guestItem(guest, connected)));
  }

  #guestItem(guest, connected) {
    const item = document.createElement("li");
    item.append(guest.name, " ");
    const letIn = button(`Let ${guest.name} in`, "Let in", "primary");
    letIn.addEventListener("click", () =>
      this.#request("let_in", { guest: guest.id }, () => this.#rerender()),
    );
    const turnAway = button(`Turn ${guest.name} away`, "Turn away", "danger");
    turnAway.addEventListener("click", () =>
      this.#request("turn_away", { guest: guest.id }, () => this.#rerender()),
    );
    for (const control of [letIn, turnAway]) control.disabled = !connected;
    item.append(letIn, " ", turnAway);
    return item;
  }

  #rerender() {
    if (this.#state !== null) this.render(this.#state);
  }
}

function button(label, text, style) {
  const control = document.createElement("button");
  control.type = "button";
  control.className = style;
  control.textContent = text;
  control.setAttribute("aria-label", label);
  return control;
}
