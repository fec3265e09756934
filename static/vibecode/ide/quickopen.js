// Quick open (Ctrl+P): every file name of the workspace, fetched once per opening (and kept a few
// seconds), matched fuzzily in the browser. Arrows and Enter open, Esc closes. ":42" jumps to
// line 42 of the active file; "name:42" opens the best match at line 42.

import { api } from "./api.js";
import { showError } from "./ui.js";

const CACHE_MS = 10000;
const SHOWN = 50;

// A subsequence match of the query in the path, scored: characters in the file name, at the
// start of a word, and in runs count more; a shorter path breaks ties. null when no match.
export function fuzzyScore(query, path) {
  const q = query.toLowerCase();
  const p = path.toLowerCase();
  const nameStart = p.lastIndexOf("/") + 1;
  let score = 0;
  let at = 0;
  let run = 0;
  let previous = -2;
  for (const char of q) {
    if (char === " ") continue;
    const found = p.indexOf(char, at);
    if (found < 0) return null;
    run = found === previous + 1 ? run + 1 : 0;
    score += 1 + run * 3;
    if (found >= nameStart) score += 2;
    if (found === nameStart || found === 0 || "/._-".includes(p[found - 1])) score += 4;
    previous = found;
    at = found + 1;
  }
  // Prefer the whole query inside the file name, or at least all of it in order there.
  const name = p.slice(nameStart);
  if (name.includes(q)) score += 20;
  else if (isSubsequence(q.replaceAll(" ", ""), name)) score += 10;
  return score - path.length / 100;
}

function isSubsequence(query, text) {
  let at = 0;
  for (const char of query) {
    at = text.indexOf(char, at) + 1;
    if (!at) return false;
  }
  return true;
}

export function rank(query, paths, limit = SHOWN) {
  if (!query) return paths.slice(0, limit);
  const scored = [];
  for (const path of paths) {
    const score = fuzzyScore(query, path);
    if (score !== null) scored.push([score, path]);
  }
  scored.sort((a, b) => b[0] - a[0] || (a[1] < b[1] ? -1 : 1));
  return scored.slice(0, limit).map(([, path]) => path);
}

export class QuickOpen {
  constructor({ base, editors }) {
    this.base = base;
    this.editors = editors;
    this.files = null;
    this.fetchedAt = 0;
    this.selected = 0;
    this.shown = [];
    this.build();
  }

  build() {
    const overlay = document.createElement("div");
    overlay.className = "quick-open";
    overlay.dataset.testid = "quick-open";
    overlay.hidden = true;
    const box = document.createElement("div");
    box.className = "quick-open-box";
    box.setAttribute("role", "dialog");
    box.setAttribute("aria-label", "Go to file");
    const input = document.createElement("input");
    input.className = "quick-open-input";
    input.dataset.testid = "quick-open-input";
    input.placeholder = "Go to file (name, name:line, or :line)";
    input.setAttribute("aria-label", "File name");
    input.autocomplete = "off";
    input.spellcheck = false;
    const status = document.createElement("div");
    status.className = "quick-open-status muted";
    status.dataset.testid = "quick-open-status";
    const list = document.createElement("ul");
    list.className = "quick-open-list";
    list.setAttribute("role", "listbox");
    box.append(input, status, list);
    overlay.append(box);
    document.body.append(overlay);
    overlay.addEventListener("mousedown", (event) => { if (event.target === overlay) this.close(); });
    input.addEventListener("input", () => { this.selected = 0; this.update(); });
    input.addEventListener("keydown", (event) => this.onKey(event));
    Object.assign(this, { overlay, input, status, list });
  }

  get isOpen() { return !this.overlay.hidden; }

  async open() {
    this.returnFocus = document.activeElement;
    this.overlay.hidden = false;
    this.input.value = "";
    this.selected = 0;
    this.input.focus();
    if (!this.files || Date.now() - this.fetchedAt > CACHE_MS) {
      this.files = null;
      this.update();
      try {
        const found = await api("GET", `${this.base}/search/files`);
        this.files = found.files;
        this.truncated = found.truncated;
        this.fetchedAt = Date.now();
      } catch (error) {
        this.close();
        showError(error, "Could not list the files.");
        return;
      }
    }
    this.update();
  }

  close() {
    this.overlay.hidden = true;
    if (this.returnFocus && this.returnFocus.focus) this.returnFocus.focus();
  }

  parse() {
    const match = this.input.value.trim().match(/^(.*?):(\d+)$/);
    return match ? { name: match[1].trim(), line: Number(match[2]) } : { name: this.input.value.trim(), line: null };
  }

  update() {
    const { name, line } = this.parse();
    this.list.replaceChildren();
    if (!name && line) {
      this.status.textContent = this.editors.active ? `Go to line ${line} of ${this.editors.active}` : "Open a file first to go to a line.";
      this.shown = [];
      return;
    }
    if (!this.files) { this.status.textContent = "Listing files…"; this.shown = []; return; }
    this.shown = rank(name, this.files);
    this.selected = Math.min(this.selected, Math.max(0, this.shown.length - 1));
    this.status.textContent = this.shown.length
      ? (this.truncated ? "Only part of a very large workspace is listed." : "")
      : "No matching file.";
    this.shown.forEach((path, index) => {
      const item = document.createElement("li");
      item.className = "quick-open-item";
      item.dataset.testid = "quick-open-item";
      item.dataset.path = path;
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", String(index === this.selected));
      const slash = path.lastIndexOf("/");
      const file = document.createElement("span");
      file.className = "quick-open-name";
      file.textContent = path.slice(slash + 1);
      const folder = document.createElement("span");
      folder.className = "quick-open-folder muted";
      folder.textContent = slash >= 0 ? path.slice(0, slash) : "";
      item.append(file, folder);
      item.addEventListener("mousedown", (event) => { event.preventDefault(); this.selected = index; this.accept(); });
      this.list.append(item);
    });
  }

  onKey(event) {
    if (event.key === "Escape") { event.preventDefault(); this.close(); }
    else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      if (!this.shown.length) return;
      const step = event.key === "ArrowDown" ? 1 : -1;
      this.selected = (this.selected + step + this.shown.length) % this.shown.length;
      for (const [index, item] of [...this.list.children].entries()) {
        item.setAttribute("aria-selected", String(index === this.selected));
        if (index === this.selected) item.scrollIntoView({ block: "nearest" });
      }
    } else if (event.key === "Enter") { event.preventDefault(); this.accept(); }
  }

  accept() {
    const { name, line } = this.parse();
    if (!name && line) {
      if (!this.editors.active) return;
      this.overlay.hidden = true;
      this.editors.openFile(this.editors.active, line);
      return;
    }
    const path = this.shown[this.selected];
    if (!path) return;
    this.overlay.hidden = true;
    this.editors.openFile(path, line || undefined);
  }
}
