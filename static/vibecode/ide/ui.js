// Small UI pieces: toasts for messages, and promise-based dialogs (no window.prompt/confirm,
// which block the page and cannot be styled or tested reliably).

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

function openDialog(build) {
  const dialog = document.getElementById("dialog");
  dialog.replaceChildren();
  return new Promise((resolve) => {
    const done = (value) => { dialog.close(); resolve(value); };
    build(dialog, done);
    dialog.onclose = () => resolve(null);
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
    heading.textContent = title;
    const input = document.createElement("input");
    input.value = value;
    input.placeholder = placeholder;
    input.dataset.testid = "dialog-input";
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
    heading.textContent = title;
    const body = document.createElement("p");
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
