// Small UI pieces: toasts for messages, and promise-based dialogs (no window.prompt/confirm,
// which block the page and cannot be styled or tested reliably). A dialog is modal
// (role=dialog, aria-modal), named by its heading, closes on Esc (resolving null), and gives the
// focus back to whatever had it when it opened.

export function toast(message, kind = "info", timeout = 6000) {
  const host = document.getElementById("toasts");
  const item = document.createElement("div");
  item.className = `toast toast-${kind}`;
  item.setAttribute("role", kind === "error" ? "alert" : "status");
  item.textContent = message;
  const close = document.createElement("button");
  close.className = "toast-close";
  close.textContent = "×";
  close.title = "Dismiss";
  close.setAttribute("aria-label", "Dismiss");
  close.onclick = () => item.remove();
  item.append(close);
  host.append(item);
  if (timeout) setTimeout(() => item.remove(), timeout);
  return item;
}

export function showError(error, prefix = "") {
  const text = error && error.message ? error.message : String(error);
  toast(prefix ? `${prefix} ${text}` : text, "error", 10000);
}

const TITLE_ID = "dialog-title";
const TEXT_ID = "dialog-text";

function openDialog(build) {
  const dialog = document.getElementById("dialog");
  const opener = document.activeElement;
  dialog.replaceChildren();
  dialog.setAttribute("role", "dialog");
  dialog.setAttribute("aria-modal", "true");
  dialog.setAttribute("aria-labelledby", TITLE_ID);
  return new Promise((resolve) => {
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      if (dialog.open) dialog.close();
      // Back to the opener before the caller goes on, so that what it does next can move the
      // focus on from there (a rename focuses the renamed entry, for one).
      if (opener && opener !== document.body && opener.isConnected) opener.focus();
      resolve(value);
    };
    build(dialog, done);
    if (dialog.querySelector(`#${TEXT_ID}`)) dialog.setAttribute("aria-describedby", TEXT_ID);
    else dialog.removeAttribute("aria-describedby");
    // Esc (the browser's cancel) closes it as Cancel. The close event comes a task later: by then
    // the next dialog may be open in the same element, and that one must stay open.
    dialog.onclose = () => { if (!dialog.open) done(null); };
    dialog.showModal();
  });
}

function buttons(dialog, choices, done) {
  const row = document.createElement("div");
  row.className = "dialog-buttons";
  for (const [label, value, cls] of choices) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `btn ${cls || ""}`;
    button.textContent = label;
    button.dataset.choice = String(value);
    button.onclick = () => done(value);
    row.append(button);
  }
  dialog.append(row);
  return row;
}

export function ask(title, { value = "", placeholder = "", okLabel = "OK" } = {}) {
  return openDialog((dialog, done) => {
    const form = document.createElement("form");
    form.method = "dialog";
    const heading = document.createElement("h3");
    heading.id = TITLE_ID;
    heading.textContent = title;
    const input = document.createElement("input");
    input.value = value;
    input.placeholder = placeholder;
    input.dataset.testid = "dialog-input";
    input.setAttribute("aria-labelledby", TITLE_ID);
    form.append(heading, input);
    form.onsubmit = (event) => { event.preventDefault(); done(input.value.trim() || null); };
    dialog.append(form);
    buttons(dialog, [["Cancel", null], [okLabel, "ok", "btn-primary"]], (choice) =>
      done(choice === "ok" ? input.value.trim() || null : null));
    setTimeout(() => { input.focus(); input.select(); }, 0);
  });
}

export function choose(title, text, choices) {
  return openDialog((dialog, done) => {
    const heading = document.createElement("h3");
    heading.id = TITLE_ID;
    heading.textContent = title;
    const body = document.createElement("p");
    body.id = TEXT_ID;
    body.textContent = text;
    dialog.append(heading, body);
    const row = buttons(dialog, choices, done);
    setTimeout(() => row.lastChild.focus(), 0);
  });
}

export const confirmDialog = (title, text, okLabel = "OK", danger = false) =>
  choose(title, text, [["Cancel", false], [okLabel, true, danger ? "btn-danger" : "btn-primary"]]);

export function formatBytes(bytes) {
  if (bytes == null) return "–";
  const units = ["B", "KB", "MB", "GB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value.toFixed(value < 10 && unit ? 1 : 0)} ${units[unit]}`;
}
