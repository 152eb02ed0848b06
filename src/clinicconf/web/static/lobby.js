// The Video Conference landing page, live: who is here and who is awaited, the time
// left, the host's options and the start of the conference, then the conference itself
// (conference.js) over the same websocket. The server is the truth for all of it
// (docs/lobby-protocol.md); this page only shows what it is told.
// Server data goes into the page as text, never as HTML.

import { GuestAccess } from "./access.js";
import { Conference } from "./conference.js";
import { DevicePreview } from "./devices.js";
import { LobbySocket } from "./lobby_socket.js";
import { showToast, tag } from "./page.js";
import { ServerClock, TimeLeft } from "./time_left.js";

const KIND_ORDER = { staff: 0, patient: 1, guest: 2 };
const KIND_TAGS = { staff: "Staff", guest: "Guest" };
// The server's close codes, by its name for why (web/protocol.py's tables:
// tests/conference/lobby/test_protocol.py holds the two together), and what the page says when the
// server closes it for good (docs/lobby-protocol.md).
const CLOSE = {
  unknown: 4404,
  early: 4403,
  cancelled: 4410,
  ended: 4411,
  full: 4429,
  too_many_pages: 4428,
  locked: 4423,
  removed: 4430,
  turned_away: 4431,
};
const CLOSED_FOR_GOOD = {
  [CLOSE.early]: "This link is not open yet. Please reload the page a little before the start.",
  [CLOSE.unknown]: "This link no longer works. Please ask the clinic for a new one.",
  [CLOSE.cancelled]: "This conference was cancelled.",
  [CLOSE.ended]: "This conference has ended.",
  [CLOSE.full]: "This conference is full.",
  [CLOSE.too_many_pages]: "Too many pages of this conference are open here. Please close one and reload this page.",
  [CLOSE.locked]: "This conference is locked: nobody else can join it now.",
  [CLOSE.removed]: "You were removed from this conference.",
  [CLOSE.turned_away]: "The host did not let you in.",
};
const ENDED_BY = {
  host: "The host ended the conference.",
  time: "This conference has ended.",
};
// Before the server's first word on moderation (it comes with the start).
const NO_MODERATION = { moderator: false, shown: [], permissions: {} };

class Lobby {
  #elements;
  #clock = new ServerClock();
  #timeLeft;
  #preview;
  #socket = null;
  // What the server last said.
  #you = null;
  #options = { moderator: false, recording: false, locked: false, waiting_room: false };
  // The host's ticks not yet answered: shown until the server's options arrive, so that
  // a render meanwhile (someone arriving) does not untick what the host just ticked.
  #askedOptions = null;
  // Guests waiting to be let in (told to hosts only), and whether this page waits.
  #waiting = [];
  #admitting = false;
  #access = null;
  #started = false;
  #participants = new Map();
  #moderation = NO_MODERATION;
  #connected = false;
  #startPending = false;
  // Whoever is not a host goes into a recorded conference only by pressing "Join the
  // recorded conference" (once per page); meanwhile the page waits at that notice.
  #toldOfRecording = false;
  #awaitingConsent = false;
  // Requests awaiting their answer: id -> {undo: what to do if the server refuses it,
  // quiet: whether the requester shows the refusal itself}.
  #pending = new Map();
  #conference;

  constructor(root, elements, preview) {
    this.#elements = elements;
    this.#preview = preview;
    this.#timeLeft = new TimeLeft(elements.timeLeft, this.#clock, root.dataset.timeZone);
    elements.moderator.addEventListener("change", () => this.#sendOptions());
    elements.recording.addEventListener("change", () => this.#sendOptions());
    elements.start.addEventListener("click", () => this.#sendStart());
    elements.joinRecorded.addEventListener("click", () => {
      this.#toldOfRecording = true;
      this.#enter();
      this.#conference.focus(); // the notice with the focus is gone
    });
    const channel = {
      request: (type, fields, undo, options) => this.#request(type, fields, undo, options),
      close: () => this.#socket.stop(),
    };
    this.#conference = new Conference(elements.conference, channel, () => preview.choices());
    if (elements.guestAccess) this.#access = new GuestAccess(elements.guestAccess, channel.request);

  }

  connect(url, hello) {
    this.#socket = new LobbySocket(url, hello, {
      onMessage: (message) => this.#receive(message),
      onLost: () => this.#connectionLost(),
      onCancelled: (code) => this.#cancelled(code),
    });
    this.#socket.start();
  }

  // --- from the server -------------------------------------------------------------

  #receive(message) {
    if (typeof message.server_time === "number") this.#clock.sync(message.server_time);
    switch (message.type) {
      case "welcome":
        this.#welcome(message);
        break;
      case "presence":
        this.#presence(message.participant);
        break;
      case "options":
        this.#options = message.options;
        this.#askedOptions = null;
        break;
      case "waiting":
        this.#waiting = message.guests;
        break;
      case "waiting_room":
        this.#admitting = true;
        this.#renderAdmission(message);
        return;
      case "moderation":
        this.#moderation = moderationOf(message);
        break;
      case "started":
        this.#started = true;
        break;
      case "offer":
      case "tracks":
      case "media_closed":
        this.#conference.receive(message);
        return;
      case "ended":
        this.#finish(ENDED_BY[message.by] ?? ENDED_BY.time, { ended: true });
        return;
      case "cancelled":
        this.#cancelled();
        return;
      case "recording_failed":
        this.#conference.recordingFailed(message.message);
        return;
      case "result":
        this.#pending.delete(message.id);
        return;
      case "error":
        this.#refused(message);
        return;
      default:
        return; // "time": the clock is synced above
    }
    this.#render();
    // Going in, and on every new connection once in, the page joins the media.
    if (this.#started && (message.type === "welcome" || message.type === "started")) {
      this.#enter();
    }
  }

  /** Join the conference's media, once told if it is being recorded. */
  #enter() {
    const consentFirst = this.#options.recording && !this.#toldOfRecording && !this.#you.host;
    const noticeAppears = consentFirst && !this.#awaitingConsent;
    this.#awaitingConsent = consentFirst;
    this.#render();
    if (noticeAppears) this.#elements.recordingConsent.focus(); // read out first
    if (!consentFirst) this.#conference.join();
  }

  #welcome({ you, event, options, moderation, started, participants, waiting }) {
    this.#admitting = false;
    this.#elements.admission.hidden = true;
    this.#waiting = waiting ?? [];
    this.#you = you;
    this.#options = options;
    this.#moderation = moderation ?? NO_MODERATION;
    this.#started = started;
    this.#participants = new Map(participants.map((p) => [p.id, p]));
    this.#connected = true;
    this.#elements.reconnecting.hidden = true;
    this.#elements.invited.hidden = true;
    this.#timeLeft.show(event);
  }

  #presence(participant) {
    // Someone not invited (a guest, or staff with a link of their own) who leaves is
    // announced once, then is no longer listed.
    if (!participant.invited && !participant.active) {
      this.#participants.delete(participant.id);
    } else {
      this.#participants.set(participant.id, participant);
    }
  }

  #refused({ id, message, code }) {
    const request = this.#pending.get(id);
    this.#pending.delete(id);
    request?.undo(message, code);
    if (!request?.quiet) showToast(message, { error: true });
  }

  #connectionLost() {
    // Requests of the lost connection will never be answered: show the last known state.
    this.#pending.clear();
    this.#connected = false;
    this.#startPending = false;
    this.#askedOptions = null;
    this.#elements.reconnecting.hidden = false;
    if (this.#started) this.#conference.connectionLost();
    this.#render();
  }

  /** The server closed for good: cancelled, ended, or the link no longer works. */
  #cancelled(code = CLOSE.cancelled) {
    const text = CLOSED_FOR_GOOD[code] ?? CLOSED_FOR_GOOD[CLOSE.unknown];
    this.#finish(text, { ended: code === CLOSE.ended });
  }

  /**
   * The conference is over for this page: everything stops, and the page says why.
   * ended: the conference has ended, which a host may undo while the event lasts.
   */
  #finish(text, { ended = false } = {}) {
    this.#socket.stop();
    this.#preview.stop();
    this.#conference.stop();
    this.#timeLeft.stop();
    const { waitingRoom, conference, recordingConsent, reconnecting, cancelled } = this.#elements;
    waitingRoom.hidden = true;
    conference.hidden = true;
    recordingConsent.hidden = true;
    reconnecting.hidden = true;
    cancelled.textContent = text;
    cancelled.hidden = false;
    cancelled.focus(); // what had the focus is gone with the conference
    if (ended && this.#elements.reopen) this.#elements.reopen.hidden = false;
  }

  /** A host asks for the ended conference to open again; the page then loads afresh. */
  reopen(url) {
    const { reopenButton, reopenProblem } = this.#elements;
    reopenButton.disabled = true;
    reopenProblem.hidden = true;
    const socket = new WebSocket(url);
    const failed = (text) => {
      reopenProblem.textContent = text;
      reopenProblem.hidden = false;
      reopenButton.disabled = false;
    };
    // Sent before hello: the conference this page would join has ended.
    socket.addEventListener("open", () => socket.send(JSON.stringify({ v: 1, id: 1, type: "reopen" })));
    socket.addEventListener("message", (event) => {
      const answer = JSON.parse(event.data);
      socket.close(1000);
      if (answer.type === "result") location.reload();
      else failed(answer.message);
    });
    socket.addEventListener("close", (event) => {
      if (event.code !== 1000) failed("The conference could not be reopened. Please try again.");
    });
  }

  // --- from the host ---------------------------------------------------------------

  #sendOptions() {
    const { moderator, recording } = this.#elements;
    this.#askedOptions = { moderator: moderator.checked, recording: recording.checked };
    // Unsent or refused, the boxes go back to what the server last said.
    this.#request("set_options", this.#askedOptions, () => {
      this.#askedOptions = null;
      this.#render();
    });
  }

  #remove(person) {
    const question = `Remove ${person.name} from the conference? They cannot come back during this event.`;
    if (window.confirm(question)) this.#request("remove", { participant: person.id }, () => {});
  }

  #sendStart() {
    this.#startPending = true;
    this.#render();
    this.#request("start", {}, () => {
      this.#startPending = false;
      this.#render();
    });
  }

  /**
   * Send a request. undo(message, code) runs if the server refuses it (with the server's
   * message) or if it cannot be sent (without one); quiet: the caller shows the
   * refusal itself, instead of the toast.
   */
  #request(type, fields, undo, { quiet = false } = {}) {
    const id = this.#socket.send(type, fields);
    if (id === null) undo();
    else this.#pending.set(id, { undo, quiet });
  }

  // --- showing it ------------------------------------------------------------------

  /** A guest waiting for a host to let them in: only that, and the time left. */
  #renderAdmission({ event }) {
    const { admission, waitingRoom, invited } = this.#elements;
    admission.hidden = false;
    waitingRoom.hidden = true;
    invited.hidden = true;
    this.#timeLeft.show(event);
  }

  #render() {
    if (this.#you === null) return; // nothing to show before the server's welcome
    this.#access?.render({
      you: this.#you,
      options: this.#options,
      waiting: this.#waiting,
      connected: this.#connected,
    });
    const { waitingRoom, conference, recordingConsent } = this.#elements;
    waitingRoom.hidden = this.#started;
    conference.hidden = !this.#started || this.#awaitingConsent;
    recordingConsent.hidden = !this.#awaitingConsent;
    this.#elements.recordingPaused.hidden = this.#options.recording;
    if (this.#started) {
      // Nothing to preview any more; the camera goes off.
      this.#preview.stop();
      this.#renderConference();
    } else {
      this.#renderWaitingRoom();
    }
  }

  #renderWaitingRoom() {
    const elements = this.#elements;
    const host = this.#you.host;
    elements.hostOptions.hidden = !host;
    elements.guestWaiting.hidden = host;
    const shown = this.#askedOptions ?? this.#options;
    elements.moderator.checked = shown.moderator;
    elements.recording.checked = shown.recording;
    elements.moderator.disabled = !this.#connected;
    elements.recording.disabled = !this.#connected;
    elements.start.disabled = !this.#connected || this.#startPending;
    elements.recordingNotice.textContent = this.#options.recording
      ? "This session will be recorded."
      : "Recording is off.";
    const everyone = this.#sortedParticipants();
    const here = everyone.filter((p) => p.active);
    const awaited = everyone.filter((p) => !p.active);
    elements.presence.hidden = false;
    showPeople(elements.activePeople, here, this.#you, "Nobody yet.", (p) => this.#remove(p));
    showPeople(elements.inactivePeople, awaited, this.#you, "Everyone is here.");
  }

  #renderConference() {
    const elements = this.#elements;
    const present = this.#sortedParticipants().filter((p) => p.active);
    showPeople(elements.conferencePeople, present, this.#you, "Nobody is here.", (p) =>
      this.#remove(p),
    );
    elements.moderatorState.textContent = `Moderator mode: ${onOff(this.#options.moderator)}`;
    elements.recordingState.textContent = `Recording: ${onOff(this.#options.recording)}`;
    this.#conference.render({
      you: this.#you,
      options: this.#options,
      moderation: this.#moderation,
      participants: present,
      connected: this.#connected,
    });
  }

  #sortedParticipants() {
    return [...this.#participants.values()].sort(
      (a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || a.name.localeCompare(b.name),
    );
  }
}

/** remove(person): offered to a host, for each person present who is not staff. */
function showPeople(list, people, you, emptyText, remove = null) {
  if (people.length === 0) {
    const empty = document.createElement("li");
    empty.className = "muted";
    empty.textContent = emptyText;
    list.replaceChildren(empty);
    return;
  }
  list.replaceChildren(...people.map((person) => personItem(person, you, remove)));
}

function personItem(person, you, remove) {
  const item = document.createElement("li");
  item.append(person.name);
  if (person.id === you.id) item.append(" ", tag("You"));
  // Someone shown by kind alone ("Guest" to a patient) is named by the kind already.
  const kindTag = person.anonymous ? null : KIND_TAGS[person.kind];
  if (kindTag) item.append(" ", tag(kindTag));
  if (remove && you.host && person.kind !== "staff" && person.active) {
    const control = document.createElement("button");
    control.type = "button";
    control.textContent = "Remove";
    control.setAttribute("aria-label", `Remove ${person.name}`);
    control.addEventListener("click", () => remove(person));
    item.append(" ", control);
  }
  return item;
}

/** The moderation fields of a moderation message (the welcome carries them as one). */
function moderationOf({ moderator, shown, permissions }) {
  return { moderator, shown, permissions };
}

function onOff(flag) {
  return flag ? "on" : "off";
}

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/** A random key for this browser and link, kept so that reconnects and tabs are one guest. */
function clientKey() {
  const storageKey = `clinicconf.client_key:${location.pathname}`;
  const fresh = () =>
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) =>
      byte.toString(16).padStart(2, "0"),
    ).join("");
  try {
    let key = localStorage.getItem(storageKey);
    if (!key) {
      key = fresh();
      localStorage.setItem(storageKey, key);
    }
    return key;
  } catch {
    return fresh(); // storage refused (private mode, a policy): this page alone
  }
}

function main() {
  const root = document.getElementById("lobby");
  const byId = (id) => document.getElementById(id);
  const elements = {
    timeLeft: byId("time-left"),
    reconnecting: byId("reconnecting"),
    cancelled: byId("cancelled"),
    waitingRoom: byId("waiting-room"),
    hostOptions: byId("host-options"),
    moderator: byId("moderator"),
    recording: byId("recording"),
    start: byId("start-conference"),
    guestWaiting: byId("guest-waiting"),
    recordingNotice: byId("recording-notice"),
    presence: byId("presence"),
    activePeople: byId("active-people"),
    inactivePeople: byId("inactive-people"),
    invited: byId("invited"),
    conference: byId("conference"),
    conferencePeople: byId("conference-people"),
    moderatorState: byId("moderator-state"),
    recordingState: byId("recording-state"),
    recordingConsent: byId("recording-consent"),
    guestAccess: byId("guest-access"),
    admission: byId("admission"),
    joinRecorded: byId("join-recorded"),
    recordingPaused: byId("recording-consent-paused"),
    reopen: byId("reopen"),
    reopenButton: byId("reopen-conference"),
    reopenProblem: byId("reopen-problem"),
  };
  const preview = new DevicePreview(byId("preview"));
  preview.start();

  const { wsPath, displayName } = root.dataset;
  const isPublic = "public" in root.dataset;
  // A public guest joins once they have said what name the others will see.
  if (isPublic && !displayName) return;
  const hello = { client_key: clientKey() };
  if (isPublic) hello.display_name = displayName;
  const lobby = new Lobby(root, elements, preview);
  lobby.connect(socketUrl(wsPath), hello);
  elements.reopenButton?.addEventListener("click", () => lobby.reopen(socketUrl(wsPath)));
}

main();
