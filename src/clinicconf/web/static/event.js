// The event page: each person's join link menu, and the public link button.

import { postJson } from "./api.js";
import { attachMenu } from "./menu.js";
import { copyLink, paintTypeColours, reportFailure, showToast } from "./page.js";

const page = document.getElementById("event");
const eventId = page.dataset.eventId;
const noLinks =
  "cancelled" in page.dataset
    ? "This conference is cancelled."
    : "video" in page.dataset
      ? null
      : "This event has no video conferencing.";

function personMenuItems(row) {
  const { kind, personId, name } = row.dataset;
  const title = kind === "staff" ? "Staff" : "Patient";
  const endpoint = `/events/${eventId}/people/${kind}/${personId}`;
  const send = (channel, channelName) =>
    reportFailure(async () => {
      await postJson(`${endpoint}/send`, { channel });
      showToast(`Join link will be sent to ${name} by ${channelName}`);
    });
  return [
    {
      label: `Copy ${title} Join Link to Clipboard`,
      disabledReason: noLinks,
      run: () =>
        reportFailure(async () => {
          const { url } = await postJson(`${endpoint}/link`);
          await copyLink(url, `${title} Join Link copied to clipboard`);
        }),
    },
    {
      label: `Send ${title} Join Link by SMS`,
      disabledReason: noLinks ?? ("phone" in row.dataset ? null : "No phone number on file."),
      run: () => send("sms", "SMS"),
    },
    {
      label: `Send ${title} Join Link by Email`,
      disabledReason: noLinks ?? ("email" in row.dataset ? null : "No email address on file."),
      run: () => send("email", "email"),
    },
  ];
}

paintTypeColours();
for (const row of document.querySelectorAll(".person")) {
  attachMenu({
    owner: row,
    button: row.querySelector(".menu-button"),
    label: `Join link of ${row.dataset.name}`,
    items: () => personMenuItems(row),
  });
}

document.getElementById("public-link-button")?.addEventListener("click", () =>
  reportFailure(async () => {
    const { url } = await postJson(`/events/${eventId}/public-link`);
    await copyLink(url, "Public Conference Link copied to clipboard");
  }),
);
