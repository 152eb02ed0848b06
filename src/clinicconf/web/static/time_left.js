// "Time Left", counted on the server's clock: a computer whose clock is off by
// minutes still shows the right figure.

const SECOND_MS = 1000;
const MINUTE_MS = 60 * SECOND_MS;
// Closer than this, the start is said as "in N min"; further, as a time of day.
const SOON_MS = 60 * MINUTE_MS;

/** The server's clock, as measured from the messages that carry server_time. */
export class ServerClock {
  #offset = 0;

  sync(serverTime) {
    this.#offset = serverTime - Date.now();
  }

  now() {
    return Date.now() + this.#offset;
  }
}

/** Keeps an element saying how long the event has left, once a second. */
export class TimeLeft {
  #element;
  #clock;
  #timeOfDay;
  #event = null;
  #timer;

  constructor(element, clock, timeZone) {
    this.#element = element;
    this.#clock = clock;
    this.#timeOfDay = new Intl.DateTimeFormat(undefined, {
      hour: "numeric",
      minute: "2-digit",
      timeZone,
    });
  }

  /** event: {starts_at, ends_at} in milliseconds since the epoch. */
  show(event) {
    this.#event = event;
    this.#element.hidden = false;
    this.#tick();
  }

  stop() {
    clearTimeout(this.#timer);
    this.#element.hidden = true;
  }

  #tick() {
    clearTimeout(this.#timer);
    const now = this.#clock.now();
    this.#element.textContent = this.#describe(now);
    // Just after the next whole second, when the figure changes.
    this.#timer = setTimeout(() => this.#tick(), SECOND_MS - (now % SECOND_MS) + 20);
  }

  #describe(now) {
    const { starts_at: startsAt, ends_at: endsAt } = this.#event;
    if (now < startsAt) {
      return startsAt - now <= SOON_MS
        ? `Starts in ${Math.ceil((startsAt - now) / MINUTE_MS)} min`
        : `Starts at ${this.#timeOfDay.format(startsAt)}`;
    }
    if (now >= endsAt) return "The time is over";
    return `Time Left: ${formatDuration(endsAt - now)}`;
  }
}

/** "1 h 05 min 09 s", "7 min 09 s": rounded up, so that 0 s is the very end. */
function formatDuration(milliseconds) {
  const seconds = Math.ceil(milliseconds / SECOND_MS);
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const pad = (number) => String(number).padStart(2, "0");
  const secondsText = `${pad(seconds % 60)} s`;
  return hours > 0
    ? `${hours} h ${pad(minutes)} min ${secondsText}`
    : `${minutes} min ${secondsText}`;
}
