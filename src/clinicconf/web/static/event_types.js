// The event type form: Public Conference needs Video Conferencing, so its checkbox
// is only available while Video Conferencing is ticked. The server checks it too.
const video = document.getElementById("video_conferencing");
const publicConference = document.getElementById("public_conference");

function sync() {
  publicConference.disabled = !video.checked;
  if (publicConference.disabled) publicConference.checked = false;
}

if (video && publicConference) {
  video.addEventListener("change", sync);
  // A form sent back with the contradiction keeps what was typed, beside its message.
  if (!publicConference.checked) sync();
}
