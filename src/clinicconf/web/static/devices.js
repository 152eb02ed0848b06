// The camera and microphone preview, so that each person can check their devices
// while waiting. Nothing here leaves the browser.

import { watchSoundLevel } from "./sound_level.js";

const NO_MEDIA =
  "This browser cannot use a camera or microphone on this page. Try an up-to-date browser, or ask the clinic for help.";
const NO_DEVICE = "No camera or microphone was found. Plug one in, then reload the page.";

/** Why the camera or microphone could not be started, in words a patient can act on. */
function explain(error) {
  switch (error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The browser did not allow this page to use your camera and microphone. Allow them (often from the icon in the address bar), then reload the page.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "The chosen camera or microphone was not found. Check that it is plugged in, then choose it again.";
    case "NotReadableError":
    case "AbortError":
      return "The camera or microphone could not be started: another program may be using it. Close that program, then choose it again.";
    default:
      return "The camera and microphone could not be started.";
  }
}

export class DevicePreview {
  #video;
  #cameras;
  #microphones;
  #meter;
  #message;
  #stream = null;
  #stopSoundLevel = () => {};
  // Counts openings: a slower, older opening that finishes late is thrown away.
  #attempt = 0;

  constructor(root) {
    this.#video = root.querySelector("#preview-video");
    this.#cameras = root.querySelector("#camera");
    this.#microphones = root.querySelector("#microphone");
    this.#meter = root.querySelector("#microphone-level");
    this.#message = root.querySelector("#preview-message");
    root.hidden = false;
    for (const select of [this.#cameras, this.#microphones]) {
      select.addEventListener("change", () => this.start());
    }
    navigator.mediaDevices?.addEventListener("devicechange", () => this.#listDevices());
    // Leaving the page turns the camera off at once. (The page is never kept for the
    // Back button: it is sent with no-store and holds a websocket.)
    window.addEventListener("pagehide", () => this.stop());
  }

  /** Open the chosen (at first, the default) camera and microphone. */
  async start() {
    this.stop();
    const attempt = this.#attempt;
    const { stream, problem } = await openDevices(this.choices());
    if (attempt !== this.#attempt) {
      if (stream) stopTracks(stream);
      return;
    }
    this.#say(problem);
    if (!stream) return;
    this.#show(stream);
    await this.#listDevices();
  }

  /** The devices chosen here, as getUserMedia constraints: the conference opens the same. */
  choices() {
    return { video: chosen(this.#cameras), audio: chosen(this.#microphones) };
  }

  /** Turn the camera and microphone off (the light on the camera goes out). */
  stop() {
    this.#attempt += 1;
    this.#stopSoundLevel();
    this.#stopSoundLevel = () => {};
    if (this.#stream) stopTracks(this.#stream);
    this.#stream = null;
    this.#video.srcObject = null;
  }

  #show(stream) {
    const hasAudio = stream.getAudioTracks().length > 0;
    this.#stream = stream;
    this.#video.srcObject = stream;
    this.#video.hidden = stream.getVideoTracks().length === 0;
    this.#meter.hidden = !hasAudio;
    this.#stopSoundLevel = hasAudio ? watchSoundLevel(stream, this.#meter) : () => {};
  }

  async #listDevices() {
    if (!this.#stream) return; // without permission, the browser does not name the devices
    const [camera] = this.#stream.getVideoTracks();
    const [microphone] = this.#stream.getAudioTracks();
    const devices = await navigator.mediaDevices.enumerateDevices();
    fillSelect(this.#cameras, devices, "videoinput", "Camera", camera?.getSettings().deviceId);
    fillSelect(
      this.#microphones,
      devices,
      "audioinput",
      "Microphone",
      microphone?.getSettings().deviceId,
    );
  }

  #say(text) {
    this.#message.textContent = text;
    this.#message.hidden = !text;
  }
}

/**
 * Open the camera and microphone ({video, audio}: getUserMedia constraints), leaving
 * out a kind of device the computer does not have. Resolves to {stream, problem}:
 * stream is null when nothing could be opened; problem says why, or what is missing,
 * in words a patient can act on ("" when all is well).
 */
export async function openDevices(constraints) {
  if (!navigator.mediaDevices?.getUserMedia) return { stream: null, problem: NO_MEDIA };
  const kinds = await availableKinds();
  if (!kinds.videoinput && !kinds.audioinput) return { stream: null, problem: NO_DEVICE };
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: kinds.videoinput && constraints.video,
      audio: kinds.audioinput && constraints.audio,
    });
    return { stream, problem: missingDevice(kinds) };
  } catch (error) {
    return { stream: null, problem: explain(error) };
  }
}

function missingDevice(kinds) {
  if (!kinds.videoinput) return "No camera was found: the others will not see you.";
  if (!kinds.audioinput) return "No microphone was found: the others will not hear you.";
  return "";
}

/** Which kinds of device exist; the browser tells this even before permission. */
async function availableKinds() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return {
    videoinput: devices.some((d) => d.kind === "videoinput"),
    audioinput: devices.some((d) => d.kind === "audioinput"),
  };
}

/** The constraint for a select's device: the default one until the person chooses. */
function chosen(select) {
  return select.value ? { deviceId: { exact: select.value } } : true;
}

function fillSelect(select, devices, kind, noun, selectedId) {
  const options = devices
    .filter((device) => device.kind === kind)
    .map((device, index) => {
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || `${noun} ${index + 1}`;
      option.selected = device.deviceId === selectedId;
      return option;
    });
  select.replaceChildren(...options);
  select.disabled = options.length === 0;
}

/** Turn a stream's devices off (the light on the camera goes out). */
export function stopTracks(stream) {
  for (const track of stream.getTracks()) track.stop();
}
