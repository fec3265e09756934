// Editor settings per user (GET/PUT /api/vibecode/settings/editor): tab size, spaces, word wrap,
// minimap, font size, theme and autosave, applied live to the open editors; the settings dialog;
// and the status bar's language mode and indentation ("Spaces: 4", which opens the dialog).

import { api } from "./api.js";
import { showError } from "./ui.js";

const URL = "/api/vibecode/settings/editor";
export const DEFAULTS = {
  tab_size: 4, insert_spaces: true, word_wrap: false, minimap: false, font_size: 14,
  theme: "system", autosave: "off", autosave_delay_ms: 1000,
};

// The dialog's fields: [setting, label, kind, extra].
const FIELDS = [
  ["tab_size", "Tab size", "number", { min: 1, max: 8 }],
  ["insert_spaces", "Insert spaces when pressing Tab", "checkbox"],
  ["word_wrap", "Word wrap", "checkbox"],
  ["minimap", "Minimap", "checkbox"],
  ["font_size", "Font size", "number", { min: 8, max: 32 }],
  ["theme", "Theme", "select", [["system", "Follow the OS"], ["light", "Light"], ["dark", "Dark"]]],
  ["autosave", "Auto save", "select", [["off", "Off"], ["afterDelay", "After a delay"], ["onFocusChange", "When the editor loses focus"]]],
  ["autosave_delay_ms", "Auto save delay (ms)", "number", { min: 200, max: 60000, step: 100 }],
];

const systemTheme = () => (window.matchMedia("(prefers-color-scheme: light)").matches ? "light" : "dark");

export class EditorSettings {
  constructor({ monaco, editors, onTheme, languageEl, indentEl }) {
    this.monaco = monaco;
    this.editors = editors;
    this.onTheme = onTheme;
    this.languageEl = languageEl;
    this.indentEl = indentEl;
    this.values = { ...DEFAULTS };
    this.saved = false; // has the user ever saved settings? (then their theme rules the page)
    this.timers = new Map(); // path -> autosave timer
    this.autosaving = new Set();
    this.dialog = null;
  }

  async init() {
    const editor = this.editors.editor;
    editor.onDidChangeModel(() => { this.applyToModels(); this.showStatus(); });
    editor.onDidChangeModelLanguage(() => this.showStatus());
    editor.onDidChangeModelOptions(() => this.showStatus());
    // Autosave: after a delay since the last edit, and when the editor or the window loses focus.
    editor.onDidChangeModelContent(() => this.editedSoon(this.editors.active));
    editor.onDidBlurEditorText(() => this.focusLost());
    window.addEventListener("blur", () => this.focusLost());
    window.matchMedia("(prefers-color-scheme: light)").addEventListener("change", () => {
      if (this.values.theme === "system" && this.saved) this.onTheme(systemTheme());
    });
    this.indentEl.onclick = () => this.open();
    try {
      const values = await api("GET", URL);
      this.saved = values.updated_at != null;
      this.apply(values);
    } catch (error) {
      showError(error, "Could not load your editor settings.");
      this.apply(this.values);
    }
  }

  apply(values) {
    for (const key of Object.keys(DEFAULTS)) if (key in values) this.values[key] = values[key];
    const v = this.values;
    this.editors.editor.updateOptions({
      fontSize: v.font_size, minimap: { enabled: v.minimap }, wordWrap: v.word_wrap ? "on" : "off",
      tabSize: v.tab_size, insertSpaces: v.insert_spaces, detectIndentation: false,
    });
    this.applyToModels();
    // Until the user saves settings, the page keeps the theme it has (◐ or the browser's memory).
    if (this.saved) this.onTheme(v.theme === "system" ? systemTheme() : v.theme);
    if (v.autosave !== "afterDelay") { for (const timer of this.timers.values()) clearTimeout(timer); this.timers.clear(); }
    this.showStatus();
    if (this.dialog) this.fillDialog();
  }

  // Indentation is a model option in Monaco: set it on every open file.
  applyToModels() {
    for (const { model } of this.editors.open.values()) {
      const options = model.getOptions();
      if (options.tabSize !== this.values.tab_size || options.insertSpaces !== this.values.insert_spaces) {
        model.updateOptions({ tabSize: this.values.tab_size, indentSize: this.values.tab_size, insertSpaces: this.values.insert_spaces });
      }
    }
  }

  async update(changes) {
    this.saved = true;
    this.apply(changes); // live, before the server answers
    // Only the latest answer is applied: an earlier one would undo a later change.
    const seq = (this.seq = (this.seq || 0) + 1);
    let answer;
    try {
      answer = await api("PUT", URL, { json: changes });
    } catch (error) {
      showError(error, "Could not save the setting.");
      try { answer = await api("GET", URL); } catch { return; }
    }
    if (seq === this.seq) this.apply(answer);
  }

  showStatus() {
    const model = this.editors.editor.getModel();
    this.languageEl.hidden = !model;
    this.indentEl.hidden = !model;
    if (!model) return;
    const id = model.getLanguageId();
    const language = this.monaco.languages.getLanguages().find((item) => item.id === id);
    this.languageEl.textContent = (language && language.aliases && language.aliases[0]) || id;
    const options = model.getOptions();
    this.indentEl.textContent = options.insertSpaces ? `Spaces: ${options.tabSize}` : `Tab Size: ${options.tabSize}`;
  }

  // --- autosave ----------------------------------------------------------------------------------
  editedSoon(path) {
    if (!path || this.values.autosave !== "afterDelay") return;
    clearTimeout(this.timers.get(path));
    this.timers.set(path, setTimeout(() => { this.timers.delete(path); this.autosave(path); }, this.values.autosave_delay_ms));
  }

  focusLost() {
    if (this.values.autosave === "off") return;
    for (const path of this.editors.dirtyPaths()) this.autosave(path);
  }

  async autosave(path) {
    // Never while a dialog asks something (a save conflict among them), nor twice at once.
    if (!this.editors.isDirty(path) || this.autosaving.has(path) || document.querySelector("dialog[open]")) return;
    this.autosaving.add(path);
    try { await this.editors.save(path); } finally { this.autosaving.delete(path); }
  }

  // --- the dialog --------------------------------------------------------------------------------
  open() {
    if (this.dialog) return;
    const opener = document.activeElement;
    const dialog = document.createElement("dialog");
    dialog.className = "dialog settings-dialog";
    dialog.dataset.testid = "settings-dialog";
    dialog.setAttribute("aria-labelledby", "settings-title");
    const heading = document.createElement("h3");
    heading.id = "settings-title";
    heading.textContent = "Editor settings";
    const form = document.createElement("form");
    form.className = "settings-form";
    form.onsubmit = (event) => event.preventDefault();
    for (const [key, label, kind, extra] of FIELDS) {
      const row = document.createElement("label");
      row.className = `settings-row settings-${kind}`;
      const text = document.createElement("span");
      text.textContent = label;
      let input;
      if (kind === "select") {
        input = document.createElement("select");
        for (const [value, name] of extra) input.append(new Option(name, value));
      } else {
        input = document.createElement("input");
        input.type = kind;
        Object.assign(input, extra || {});
      }
      input.name = key;
      input.dataset.testid = `setting-${key}`;
      input.onchange = () => this.fieldChanged(key, kind, input);
      if (kind === "checkbox") row.append(input, text);
      else row.append(text, input);
      form.append(row);
    }
    const buttons = document.createElement("div");
    buttons.className = "dialog-buttons";
    const close = document.createElement("button");
    close.type = "button";
    close.className = "btn btn-primary";
    close.textContent = "Close";
    close.dataset.testid = "settings-close";
    close.onclick = () => dialog.close();
    buttons.append(close);
    dialog.append(heading, form, buttons);
    document.body.append(dialog);
    this.dialog = dialog;
    this.fillDialog();
    // Esc closes a modal <dialog> by itself; either way, focus goes back where it was.
    dialog.addEventListener("close", () => {
      dialog.remove();
      this.dialog = null;
      if (opener && opener.isConnected) opener.focus();
    });
    dialog.showModal();
    form.querySelector("input, select").focus();
  }

  fillDialog() {
    for (const [key, , kind] of FIELDS) {
      const input = this.dialog.querySelector(`[name=${key}]`);
      if (kind === "checkbox") input.checked = !!this.values[key];
      else input.value = String(this.values[key]);
    }
    this.dialog.querySelector("[name=autosave_delay_ms]").disabled = this.values.autosave !== "afterDelay";
  }

  fieldChanged(key, kind, input) {
    let value;
    if (kind === "checkbox") value = input.checked;
    else if (kind === "number") {
      value = Number.parseInt(input.value, 10);
      if (!Number.isFinite(value) || value < input.min || value > input.max) {
        input.setCustomValidity(`Between ${input.min} and ${input.max}.`);
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
    } else value = input.value;
    this.update({ [key]: value });
  }
}
