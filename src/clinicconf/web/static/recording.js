// The recording page: while the conference is recorded or composed, keep the
// progress bar current, and show the page anew once the recording's state changes
// (composed: the player appears; failed: the reason does) — unless a track is
// playing: then the page only says so, and the listener reloads when they choose.

const POLL_MILLISECONDS = 2000;
const page = document.getElementById("recording");
const { recordingId, state } = page.dataset;
const progress = document.getElementById("compose-progress");
const percent = document.getElementById("compose-percent");

async function poll() {
  let response;
  try {
    response = await fetch(`/recordings/${recordingId}/status`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
  } catch {
    // The server is out of reach for a moment: ask again at the next tick.
    setTimeout(poll, POLL_MILLISECONDS);
    return;
  }
  // Gone (deleted by someone else) or signed out: the page says so when reloaded.
  if (response.status === 404 || response.status === 401) {
    window.location.reload();
    return;
  }
  if (response.ok) {
    const status = await response.json();
    if (status.state !== state) {
      if (playing()) document.getElementById("recording-changed").hidden = false;
      else window.location.reload();
      return;
    }
    if (progress) {
      progress.value = status.progress;
      percent.textContent = `${status.progress} %`;
    }
  }
  setTimeout(poll, POLL_MILLISECONDS);
}

function playing() {
  return [...document.querySelectorAll("audio, video")].some((media) => !media.paused);
}

if (state === "recording" || state === "composing") {
  setTimeout(poll, POLL_MILLISECONDS);
}
