// The Scheduler's week view: each event's conference menu.

import { postJson } from "./api.js";
import { attachMenu } from "./menu.js";
import { copyLink, paintTypeColours, reportFailure } from "./page.js";

function eventMenuItems(block) {
  const { eventId } = block.dataset;
  const cancelled = "cancelled" in block.dataset;
  // The event's staff and the administrators join it and hand out its links.
  const notMine =
    "notMine" in block.dataset ? "Only the event's staff and administrators can do this." : null;
  const noLinks =
    notMine ??
    (cancelled
      ? "This conference is cancelled."
      : "video" in block.dataset
        ? null
        : "This event has no video conferencing.");
  const copyFrom = (endpoint, confirmation) =>
    reportFailure(async () => {
      const { url } = await postJson(`/events/${eventId}/${endpoint}`);
      await copyLink(url, confirmation);
    });

  const items = [
    {
      label: "Join Conference",
      disabledReason: noLinks,
      run: () =>
        reportFailure(async () => {
          const { url } = await postJson(`/events/${eventId}/my-link`);
          window.location.assign(url);
        }),
    },
    {
      label: "Cancel Conference",
      disabledReason: notMine ?? (cancelled ? "This conference is cancelled already." : null),
      run: () => window.location.assign(`/events/${eventId}/cancel`),
    },
  ];
  if ("public" in block.dataset) {
    items.push({
      label: "Get Public Conference Link",
      disabledReason: noLinks,
      run: () => copyFrom("public-link", "Public Conference Link copied to clipboard"),
    });
  }
  items.push({
    label: "Get My Conference Link",
    disabledReason: noLinks,
    run: () => copyFrom("my-link", "Your Conference Link copied to clipboard"),
  });
  return items;
}

paintTypeColours();
for (const block of document.querySelectorAll(".event-block")) {
  attachMenu({
    owner: block,
    button: block.querySelector(".menu-button"),
    label: `Conference of ${block.dataset.title}`,
    items: () => eventMenuItems(block),
  });
}
