// Small helpers the page scripts share: the toast, copying a link, type colours.

import { ApiError } from "./api.js";

const TOAST_MILLISECONDS = 6000;
let toastTimer; // the page has one toast; a new message restarts its clock

/** A short message in the page's #toast status region; it hides by itself. */
export function showToast(message, { error = false } = {}) {
  const toast = document.getElementById("toast");
  toast.hidden = false;
  toast.classList.toggle("error", error);
  toast.textContent = message;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    toast.hidden = true;
  }, TOAST_MILLISECONDS);
}

/** Run a user's action; a failure becomes an error toast instead of going unnoticed. */
export async function reportFailure(action) {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof ApiError)) console.error(error);
    const message = error instanceof ApiError ? error.message : "Something went wrong. Please try again.";
    showToast(message, { error: true });
  }
}

/** Copy a link and confirm it; where the browser refuses, show the link to copy by hand. */
export async function copyLink(url, confirmation) {
  try {
    // navigator.clipboard is undefined outside a secure context: that throws here too.
    await navigator.clipboard.writeText(url);
  } catch {
    showLinkDialog(url);
    return;
  }
  showToast(confirmation);
}

function showLinkDialog(url) {
  const dialog = document.createElement("dialog");
  dialog.className = "link-dialog";
  const heading = document.createElement("h2");
  heading.id = "link-dialog-heading";
  heading.textContent = "Copy this link";
  dialog.setAttribute("aria-labelledby", heading.id);
  const help = document.createElement("p");
  help.textContent = "This browser did not let the page copy it. Select the link and copy it yourself.";
  const field = document.createElement("input");
  field.type = "text";
  field.readOnly = true;
  field.value = url;
  field.setAttribute("aria-label", "Link");
  const close = document.createElement("button");
  close.type = "button";
  close.textContent = "Close";
  close.addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => dialog.remove());
  dialog.append(heading, help, field, close);
  document.body.append(dialog);
  dialog.showModal();
  field.select();
}

/** Event type colours come as data-colour: inline styles are barred by the page's CSP. */
export function paintTypeColours(root = document) {
  for (const element of root.querySelectorAll("[data-colour]")) {
    element.style.setProperty("--type-colour", element.dataset.colour);
  }
}

/** A small label ("You", "Staff", "Not on screen") beside a name. */
export function tag(text) {
  const element = document.createElement("span");
  element.className = "tag";
  element.textContent = text;
  return element;
}
