// The conference itself: this page's camera and microphone go to the clinic's media
// server, and the others' sound and video come back (docs/lobby-protocol.md, "The
// conference"). The server makes every offer and this page only answers, one offer
// at a time: the server's media stack cannot take an offer from the browser.
// Server data goes into the page as text, never as HTML.

import { openDevices, stopTracks } from "./devices.js";
import { ModeratorPanel } from "./moderation.js";
import { tag } from "./page.js";

const KINDS = ["audio", "video"];
// The answer carries the browser's candidates, so the page waits for gathering to
// finish; where it never does (a STUN server out of reach), it answers with what it has.
const GATHERING_LIMIT_MS = 3000;
const TOGGLE_LABELS = {
  audio: { on: "Mute microphone", off: "Unmute microphone" },
  video: { on: "Turn camera off", off: "Turn camera on" },
};
const WITHHELD = {
  audio: "The moderator has turned off your microphone.",
  video: "The moderator has turned off your camera.",
  both: "The moderator has turned off your microphone and camera.",
};
const NO_DEVICES_BUT = "You can still see and hear the others.";
const ELSEWHERE = "This conference is open in another window.";
const COULD_NOT_CONNECT = "Sound and video could not be connected.";
const CONNECTION_LOST = "The connection for sound and video was lost.";
const TRY_AGAIN = "Try again";
// A media connection lost on the way (a network that dropped, a server too busy to
// answer) is taken up again by the page itself, at most once in this long: nobody
// should have to press anything for a passing fault. A loss sooner after is shown,
// with the reason and "Try again".
const RETRY_ITSELF_INTERVAL_MS = 60000;
const DEVICE_STOPPED =
  "Your camera or microphone stopped: it was unplugged, switched off or taken by another program.";
const SOUND_BLOCKED = "Your browser blocked the others' sound. Press Turn on sound.";
const END_QUESTION = "End the conference for everyone? Everyone's sound and video will stop.";

export class Conference {
  #elements;
  #channel;
  #choices;
  #panel;
  #you = null;
  #connected = false;
  // This page's camera and microphone.
  #stream = null;
  // Counts openings of the devices: one that finishes after a newer one, or after
  // the page let the devices go, is thrown away.
  #deviceAttempt = 0;
  // What the person chose with the buttons, and what the moderator allows: a track
  // is on when both say so, and the person's choice comes back when allowed again.
  #wanted = { audio: true, video: true };
  #allowed = { audio: true, video: true };
  // The media connection of the current join_media, and the offers for it, answered
  // strictly one after another.
  #pc = null;
  #negotiation = Promise.resolve();
  #publish = {}; // kind -> the mid this page sends it on
  #tracks = []; // what the server last said this page receives
  // The server names each media connection: an offer, a tracks list or a closing
  // for an earlier one (crossing a "Try again" on the wire) is told apart.
  #connection = null; // the connection #pc belongs to
  #latestOffered = null; // the newest connection the server has offered
  #tracksOf = null; // the connection #tracks describes
  #remote = new Map(); // mid -> its tile (video) or <audio>
  #entered = false;
  #joined = false; // join_media sent, and the connection not closed since
  #otherWindow = false; // another window of this person has taken the media
  #finished = false;
  #endPending = false;
  #retriedItselfAt = -Infinity;

  /**
   * root: the #conference section. channel: {request(type, fields, undo, {quiet}),
   * close()}: request sends a message and calls undo(message) if the server refuses
   * it (message undefined: it could not be sent); quiet: this page shows the refusal
   * itself. close() stops the socket for good. choices(): the getUserMedia constraints
   * of the devices the person chose in the preview.
   */
  constructor(root, channel, choices) {
    const find = (selector) => root.querySelector(selector);
    this.#elements = {
      heading: find("#conference-heading"),
      recording: find("#recording-indicator"),
      left: find("#conference-left"),
      rejoin: find("#rejoin"),
      live: find("#conference-live"),
      deviceMessage: find("#device-message"),
      restartDevices: find("#restart-devices"),
      mediaNotice: find("#media-notice"),
      closed: find("#media-closed"),
      closedMessage: find("#media-closed-message"),
      retry: find("#media-retry"),
      tiles: find("#tiles"),
      selfTile: find("[data-self]"),
      selfVideo: find("[data-self] video"),
      noVideo: find("#no-video"),
      audio: find("#conference-audio"),
      toggles: { audio: find("#toggle-microphone"), video: find("#toggle-camera") },
      enableSound: find("#enable-sound"),
      leave: find("#leave"),
      end: find("#end-conference"),
    };
    this.#channel = channel;
    this.#choices = choices;
    this.#panel = new ModeratorPanel(root, channel.request);
    const elements = this.#elements;
    for (const kind of KINDS) {
      elements.toggles[kind].addEventListener("click", () => {
        this.#wanted[kind] = !this.#wanted[kind];
        this.#renderToggles();
      });
    }
    elements.enableSound.addEventListener("click", () => this.#turnOnSound());
    elements.restartDevices.addEventListener("click", () => this.#openDevices());
    // A phone pauses media in a tab sent to the background: play again on return.
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.#resumePlayback();
    });
    elements.leave.addEventListener("click", () => this.#leave());
    elements.end.addEventListener("click", () => this.#end());
    elements.retry.addEventListener("click", () => this.#retry());
    elements.rejoin.addEventListener("click", () => location.reload());
    // Closing the tab turns the camera off at once.
    window.addEventListener("pagehide", () => {
      this.#closeMedia();
      this.#closeDevices();
    });
    this.#renderToggles(); // off until the devices are open
  }

  /** The conference is on and the server has welcomed this connection: join its media. */
  join() {
    if (this.#finished || this.#otherWindow || this.#joined) return;
    if (!this.#entered) {
      this.#entered = true;
      this.#openDevices();
    }
    this.#joinMedia();
  }

  /** After the page's own notice (which had the focus) is gone: the conference's heading. */
  focus() {
    this.#elements.heading.focus();
  }

  /** The recording could not go on (told to the hosts only). */
  recordingFailed(message) {
    this.#panel.recordingFailed(message);
  }

  /** A conference message from the server: offer, tracks or media_closed. */
  receive(message) {
    switch (message.type) {
      case "offer":
        this.#latestOffered = message.connection;
        this.#queue(() => this.#answer(message));
        break;
      case "tracks":
        // News of a connection already closed, or replaced: nothing to show.
        if (!this.#joined || message.connection !== this.#latestOffered) return;
        this.#tracks = message.tracks;
        this.#tracksOf = message.connection;
        this.#renderTracks(); // shown once that connection is this page's
        break;
      case "media_closed":
        if (message.connection === this.#latestOffered) this.#mediaClosed(message);
        break;
    }
  }

  /** state: {you, options, moderation, participants (present, in order), connected}. */
  render(state) {
    const { you, options, moderation, connected } = state;
    const elements = this.#elements;
    this.#you = you;
    this.#connected = connected;
    elements.recording.hidden = !options.recording;
    elements.end.hidden = !you.host;
    elements.end.disabled = !connected || this.#endPending;
    elements.retry.disabled = !connected;
    this.#applyModeration(moderation);
    this.#panel.render(state);
  }

  /** The socket dropped (a new one is on its way): the media connection goes with it. */
  connectionLost() {
    this.#joined = false;
    this.#endPending = false;
    this.#closeMedia();
  }

  /** Everything off for good: the media connection, the camera and the microphone. */
  stop() {
    this.#finished = true;
    this.#joined = false;
    this.#closeMedia();
    this.#closeDevices();
  }

  // --- this page's camera and microphone ---------------------------------------------

  async #openDevices() {
    this.#deviceAttempt += 1;
    const attempt = this.#deviceAttempt;
    const { stream, problem } = await openDevices(this.#choices());
    if (attempt !== this.#deviceAttempt) {
      if (stream) stopTracks(stream);
      return;
    }
    if (this.#stream) stopTracks(this.#stream);
    this.#stream = stream;
    this.#elements.selfVideo.srcObject = stream;
    // A device unplugged, switched off or taken by another program (a phone call)
    // ends its track: say so, with a way to start them again.
    for (const track of stream?.getTracks() ?? []) {
      track.addEventListener("ended", () => this.#deviceStopped(stream));
    }
    this.#elements.restartDevices.hidden = true;
    // Without any device the person still takes part: say so after the reason.
    const message = stream || !problem ? problem : `${problem} ${NO_DEVICES_BUT}`;
    say(this.#elements.deviceMessage, message);
    this.#renderToggles();
    // Offers answered before the devices opened sent nothing: send them now.
    this.#queue(() => this.#publishTracks());
  }

  #closeDevices() {
    this.#deviceAttempt += 1;
    if (this.#stream) stopTracks(this.#stream);
    this.#stream = null;
    this.#elements.selfVideo.srcObject = null;
    this.#renderToggles();
  }

  #deviceStopped(stream) {
    if (stream !== this.#stream || this.#finished) return; // an earlier opening
    say(this.#elements.deviceMessage, DEVICE_STOPPED);
    this.#elements.restartDevices.hidden = false;
    this.#renderToggles();
  }

  #resumePlayback() {
    const { tiles, audio, selfVideo } = this.#elements;
    for (const media of [selfVideo, ...tiles.querySelectorAll("video"), ...audio.children]) {
      if (media.srcObject) media.play().catch((error) => this.#playRefused(error));
    }
  }

  #localTrack(kind) {
    if (this.#stream === null) return null;
    const [track] =
      kind === "audio" ? this.#stream.getAudioTracks() : this.#stream.getVideoTracks();
    return track?.readyState === "live" ? track : null;
  }

  /** Whether this kind goes out: its device is open, the person and the moderator agree. */
  #sending(kind) {
    return this.#localTrack(kind) !== null && this.#wanted[kind] && this.#allowed[kind];
  }

  #applyModeration({ moderator, permissions }) {
    const permission = (moderator && permissions[this.#you.id]) || "audio_video";
    this.#allowed = { audio: allows(permission, "audio"), video: allows(permission, "video") };
    const { audio, video } = this.#allowed;
    let withheld = "";
    if (!audio && !video) withheld = WITHHELD.both;
    else if (!audio) withheld = WITHHELD.audio;
    else if (!video) withheld = WITHHELD.video;
    say(this.#elements.mediaNotice, withheld);
    this.#renderToggles();
  }

  #renderToggles() {
    for (const kind of KINDS) {
      const track = this.#localTrack(kind);
      const on = this.#sending(kind);
      // A disabled track sends silence or black (and the server withholds it as well).
      if (track) track.enabled = on;
      const button = this.#elements.toggles[kind];
      button.textContent = TOGGLE_LABELS[kind][on ? "on" : "off"];
      button.disabled = track === null || !this.#allowed[kind];
    }
    this.#elements.selfTile.classList.toggle("camera-off", !this.#sending("video"));
  }

  // --- the media connection ----------------------------------------------------------

  #joinMedia() {
    this.#joined = true;
    // Whatever was offered before is over: news of it crossing this request is not
    // about the connection to come.
    this.#latestOffered = null;
    this.#showClosed("");
    this.#channel.request("join_media", {}, (message) => this.#joinRefused(message), {
      quiet: true,
    });
  }

  #joinRefused(message) {
    this.#joined = false;
    if (message === undefined) return; // never sent: the next connection joins again
    this.#closeMedia();
    this.#showClosed(message, TRY_AGAIN);
  }

  #retry() {
    if (this.#otherWindow) {
      this.#otherWindow = false;
      this.#openDevices();
    }
    this.#joinMedia();
  }

  /** Run a step after every earlier one: offers are answered strictly in turn. */
  #queue(step) {
    this.#negotiation = this.#negotiation.then(step);
  }

  async #answer({ connection, sdp, publish, ice_servers: iceServers }) {
    if (!this.#joined || connection !== this.#latestOffered) return; // let go, or superseded
    let pc = this.#pc;
    try {
      if (connection !== this.#connection) {
        this.#pc?.close(); // a new connection replaces the earlier one
        pc = this.#connect(connection, iceServers);
      }
      await pc.setRemoteDescription({ type: "offer", sdp });
      if (pc !== this.#pc) return;
      this.#publish = publish;
      for (const transceiver of pc.getTransceivers()) {
        if (isStopped(transceiver)) continue; // setting its direction would throw
        const kind = KINDS.find((candidate) => publish[candidate] === transceiver.mid);
        if (kind) {
          await transceiver.sender.replaceTrack(this.#localTrack(kind));
          transceiver.direction = "sendonly";
        } else {
          transceiver.direction = "recvonly";
        }
      }
      this.#renderTracks(); // tracks listed before this offer now have their receivers
      await pc.setLocalDescription(await pc.createAnswer());
      await gatheringDone(pc);
      if (pc !== this.#pc) return;
      this.#channel.request(
        "answer",
        { connection, sdp: pc.localDescription.sdp },
        (message, code) => this.#answerRefused(pc, message, code),
        { quiet: true },
      );
    } catch (error) {
      this.#negotiationFailed(pc, error);
    }
  }

  #connect(connection, iceServers) {
    const pc = new RTCPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.#pc = pc;
    this.#connection = connection;
    pc.addEventListener("connectionstatechange", () => {
      if (pc === this.#pc && pc.connectionState === "failed") this.#connectionLost(CONNECTION_LOST);
    });
    return pc;
  }

  async #publishTracks() {
    const pc = this.#pc;
    if (pc === null) return;
    try {
      for (const kind of KINDS) {
        const transceiver = transceiverOf(pc, this.#publish[kind]);
        if (transceiver) await transceiver.sender.replaceTrack(this.#localTrack(kind));
      }
    } catch (error) {
      this.#negotiationFailed(pc, error);
    }
  }

  #answerRefused(pc, message, code) {
    // Closed meanwhile, or the socket dropped: the next connection joins again. An
    // answer to a connection the server has already replaced changes nothing.
    if (pc !== this.#pc || message === undefined || code === "stale") return;
    this.#mediaFailed(message);
  }

  #negotiationFailed(pc, error) {
    if (pc !== this.#pc) return; // that connection was closed meanwhile: nothing to tell
    console.error(error);
    this.#mediaFailed(COULD_NOT_CONNECT);
  }

  #mediaFailed(text) {
    this.#joined = false;
    this.#closeMedia();
    this.#showClosed(text, TRY_AGAIN);
  }

  #mediaClosed({ reason, message }) {
    if (reason === "elsewhere") {
      // The other window sends this person's camera now: this one lets it go.
      this.#joined = false;
      this.#closeMedia();
      this.#otherWindow = true;
      this.#closeDevices();
      this.#showClosed(ELSEWHERE, "Use this window");
    } else {
      this.#connectionLost(message || CONNECTION_LOST);
    }
  }

  #connectionLost(text) {
    this.#joined = false;
    this.#closeMedia();
    const now = performance.now();
    if (this.#connected && now - this.#retriedItselfAt >= RETRY_ITSELF_INTERVAL_MS) {
      this.#retriedItselfAt = now;
      this.#joinMedia();
    } else {
      // Without the socket, the page joins again by itself once it is back.
      this.#showClosed(text, TRY_AGAIN);
    }
  }

  #closeMedia() {
    this.#pc?.close();
    this.#pc = null;
    this.#connection = null;
    this.#publish = {};
    this.#tracks = [];
    this.#renderTracks();
    this.#elements.enableSound.hidden = true;
  }

  // --- the others' sound and video ---------------------------------------------------

  #renderTracks() {
    const current = this.#tracksOf === this.#connection ? this.#tracks : [];
    const listed = new Set(current.map((entry) => entry.mid));
    for (const [mid, element] of this.#remote) {
      if (!listed.has(mid)) {
        element.remove();
        this.#remote.delete(mid);
      }
    }
    for (const entry of current) {
      const video = entry.kind === "video";
      let element = this.#remote.get(entry.mid);
      if (!element) {
        element = video ? newTile(entry.mid) : newAudio(entry.mid);
        this.#remote.set(entry.mid, element);
        (video ? this.#elements.tiles : this.#elements.audio).append(element);
      }
      if (video) fillTile(element, entry);
      else element.dataset.participant = entry.participant;
      this.#play(video ? element.querySelector("video") : element, entry.mid);
    }
    this.#elements.noVideo.hidden = current.some((entry) => entry.kind === "video");
  }

  /** Play what the media server sends on this mid, once its receiver exists. */
  #play(media, mid) {
    const track = transceiverOf(this.#pc, mid)?.receiver.track ?? null;
    if (track === null || media.srcObject?.getTracks()[0] === track) return;
    media.srcObject = new MediaStream([track]);
    if (media instanceof HTMLAudioElement) {
      media.play().catch((error) => this.#playRefused(error));
    }
  }

  #playRefused(error) {
    // The browser plays sound only once the person has used the page: ask them to.
    if (error.name !== "NotAllowedError") return;
    this.#elements.enableSound.hidden = false;
    say(this.#elements.deviceMessage, SOUND_BLOCKED);
  }

  #turnOnSound() {
    const { enableSound, deviceMessage, toggles } = this.#elements;
    enableSound.hidden = true;
    if (deviceMessage.textContent === SOUND_BLOCKED) say(deviceMessage, "");
    toggles.audio.focus(); // the button pressed is gone: focus stays among the controls
    for (const audio of this.#elements.audio.children) {
      audio.play().catch((error) => this.#playRefused(error));
    }
  }

  // --- the person's own actions ------------------------------------------------------

  #leave() {
    this.#channel.request("leave", {}, () => {}, { quiet: true });
    this.#channel.close();
    this.stop();
    this.#elements.live.hidden = true;
    this.#elements.left.hidden = false;
    this.#elements.rejoin.focus(); // the Leave button that had the focus is gone
  }

  #end() {
    if (!window.confirm(END_QUESTION)) return;
    const { end } = this.#elements;
    this.#endPending = true;
    end.disabled = true;
    this.#channel.request("end", {}, () => {
      this.#endPending = false;
      end.disabled = !this.#connected;
    });
  }

  #showClosed(text, action = "") {
    const { closed, closedMessage, retry, toggles } = this.#elements;
    // Hiding the focused "Try again" would drop the focus to the page's top.
    if (!text && closed.contains(document.activeElement)) toggles.audio.focus();
    closed.hidden = !text;
    closedMessage.textContent = text;
    retry.textContent = action;
  }
}

function allows(permission, kind) {
  return permission === "audio_video" || permission === kind;
}

function isStopped(transceiver) {
  return transceiver.direction === "stopped" || transceiver.currentDirection === "stopped";
}

function transceiverOf(pc, mid) {
  if (!pc || mid === undefined) return undefined;
  return pc.getTransceivers().find((transceiver) => transceiver.mid === mid);
}

/** Resolves once the browser has gathered its candidates, or after GATHERING_LIMIT_MS. */
function gatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, GATHERING_LIMIT_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/** <figure class="tile" data-participant data-mid><video …></video><figcaption>. */
function newTile(mid) {
  const tile = document.createElement("figure");
  tile.className = "tile";
  tile.dataset.mid = mid;
  const video = document.createElement("video");
  // Attributes as in the markup, and the property too: a muted attribute added after
  // creation does not mute. The sound plays from the <audio> elements.
  for (const name of ["autoplay", "playsinline", "muted"]) video.setAttribute(name, "");
  video.muted = true;
  tile.append(video, document.createElement("figcaption"));
  return tile;
}

function fillTile(tile, { participant, name, shown }) {
  tile.dataset.participant = participant;
  tile.classList.toggle("not-shown", shown === false);
  const caption = tile.querySelector("figcaption");
  caption.replaceChildren(name);
  // Only a host receives the video of someone not on everyone's screen.
  if (shown === false) caption.append(" ", tag("Not on screen"));
}

/** <audio data-participant data-mid>, playing one person's sound. */
function newAudio(mid) {
  const audio = document.createElement("audio");
  audio.autoplay = true;
  audio.dataset.mid = mid;
  return audio;
}

/** Put `text` in a status region; unchanged text is not written again (a screen
 * reader would read it out again). */
function say(element, text) {
  if (element.textContent === text && element.hidden === !text) return;
  element.textContent = text;
  element.hidden = !text;
}
