// A microphone level bar: the preview is muted (no echo), so this is how a person
// sees that their microphone hears them.

// Speech rarely goes above a quarter of full scale: stretch it to fill the bar.
const GAIN = 4;

/** Show the loudness of the stream's audio on a <meter> (0 to 1); returns a stop function. */
export function watchSoundLevel(stream, meter) {
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let frame;
  const draw = () => {
    analyser.getFloatTimeDomainData(samples);
    meter.value = Math.min(1, GAIN * rootMeanSquare(samples));
    frame = requestAnimationFrame(draw);
  };
  draw();
  // Browsers keep audio suspended until the person has used the page.
  const resume = () => context.resume();
  document.addEventListener("pointerdown", resume, { once: true });
  document.addEventListener("keydown", resume, { once: true });
  return () => {
    cancelAnimationFrame(frame);
    document.removeEventListener("pointerdown", resume);
    document.removeEventListener("keydown", resume);
    context.close();
  };
}

function rootMeanSquare(samples) {
  let sum = 0;
  for (const sample of samples) sum += sample * sample;
  return Math.sqrt(sum / samples.length);
}
