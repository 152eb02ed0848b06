// The host's controls during the conference: the "Moderator Role" and "Recording"
// switches (recording paused or resumed), and while moderator mode is on, a row per person present saying whether they are on everyone's
// screen and what they may use (docs/lobby-protocol.md, "The conference"). The server
// is the truth: a refused change goes back to what it last said.
// Server data goes into the page as text, never as HTML.

import { tag } from "./page.js";

const PERMISSIONS = [
  ["audio_video", "Audio and video"],
  ["audio", "Audio only"],
  ["video", "Video only"],
  ["none", "Neither"],
];
// A permission the server does not list is the default.
const DEFAULT_PERMISSION = "audio_video";

export class ModeratorPanel {
  #panel;
  #rows;
  #liveField;
  #live;
  #recordingField;
  #recording;
  #recordingProblem;
  #request;
  // What the server last said, to go back to when a change is refused.
  #state = null;
  // participant id -> its <tr>, updated in place so that focus stays where it is.
  #rowsById = new Map();

  /**
   * root: the #conference section; request(type, fields, undo): sends a request
   * and calls undo() if it is refused or cannot be sent.
   */
  constructor(root, request) {
    this.#panel = root.querySelector("#moderator-panel");
    this.#rows = root.querySelector("#moderator-rows");
    this.#liveField = root.querySelector("#moderator-live-field");
    this.#live = root.querySelector("#moderator-live");
    this.#recordingField = root.querySelector("#recording-live-field");
    this.#recording = root.querySelector("#recording-live");
    this.#recordingProblem = root.querySelector("#recording-problem");
    this.#request = request;
    this.#live.addEventListener("change", () => this.#sendOptions());
    this.#recording.addEventListener("change", () => this.#sendOptions());
  }

  /** state: {you, options, moderation, participants (present, in order), connected}. */
  render(state) {
    this.#state = state;
    const { you, options, moderation, participants, connected } = state;
    this.#liveField.hidden = !you.host;
    this.#live.checked = options.moderator;
    this.#live.disabled = !connected;
    this.#recordingField.hidden = !you.host;
    this.#recording.checked = options.recording;
    this.#recording.disabled = !connected;
    if (options.recording) this.#recordingProblem.hidden = true; // recording again
    this.#panel.hidden = !(you.host && moderation.moderator);
    if (this.#panel.hidden) return;

    const present = new Set(participants.map((person) => person.id));
    for (const [id, row] of this.#rowsById) {
      if (!present.has(id)) {
        row.remove();
        this.#rowsById.delete(id);
      }
    }
    const shown = new Set(moderation.shown);
    let previous = null;
    for (const person of participants) {
      let row = this.#rowsById.get(person.id);
      if (!row) {
        row = this.#newRow(person.id);
        this.#rowsById.set(person.id, row);
      }
      fillRow(row, person, you, {
        shown: shown.has(person.id),
        permission: moderation.permissions[person.id] ?? DEFAULT_PERMISSION,
        connected,
      });
      // In the lobby's order, moving a row only when it is out of place: a moved
      // element loses the keyboard focus.
      const expected = previous ? previous.nextElementSibling : this.#rows.firstElementChild;
      if (row !== expected) this.#rows.insertBefore(row, expected);
      previous = row;
    }
  }

  /** Why the recording stopped, until the host turns it on again. */
  recordingFailed(message) {
    this.#recordingProblem.textContent = `Recording stopped: ${message}`;
    this.#recordingProblem.hidden = false;
  }

  #rerender() {
    if (this.#state !== null) this.render(this.#state);
  }

  #sendOptions() {
    const options = { moderator: this.#live.checked, recording: this.#recording.checked };
    this.#request("set_options", options, () => this.#rerender());
  }

  #newRow(id) {
    const row = document.createElement("tr");
    row.dataset.participant = id;
    const name = document.createElement("th");
    name.scope = "row";

    const showBox = document.createElement("input");
    showBox.type = "checkbox";
    showBox.addEventListener("change", () =>
      this.#request("set_shown", { participant: id, shown: showBox.checked }, () =>
        this.#rerender(),
      ),
    );
    const showLabel = document.createElement("label");
    showLabel.append(showBox, " Show on screen");

    const permission = document.createElement("select");
    for (const [value, text] of PERMISSIONS) permission.append(new Option(text, value));
    permission.addEventListener("change", () =>
      this.#request("set_permission", { participant: id, permission: permission.value }, () =>
        this.#rerender(),
      ),
    );

    row.append(name, cell(showLabel), cell(permission));
    return row;
  }
}

function fillRow(row, person, you, { shown, permission, connected }) {
  const [name, showCell, permissionCell] = row.children;
  name.replaceChildren(person.name);
  if (person.id === you.id) name.append(" ", tag("You"));
  const showBox = showCell.querySelector("input");
  showBox.setAttribute("aria-label", `Show ${person.name} on screen`);
  showBox.checked = shown;
  showBox.disabled = !connected;
  const select = permissionCell.querySelector("select");
  select.setAttribute("aria-label", `What ${person.name} may use`);
  select.value = permission;
  select.disabled = !connected;
}

function cell(content) {
  const element = document.createElement("td");
  element.append(content);
  return element;
}
