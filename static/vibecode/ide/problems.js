// The Problems panel: the language servers' diagnostics (lsp.js keeps them, by file), as a list
// of entries with severity, message, source and file:line:col. A click or Enter opens the file at
// the problem; the list is one tab stop (arrows, Home and End move in it); the summary above it
// is a live region. Hints are the editor's (faded code), not the list's.

// At most this many entries are on the page; the summary says how many there are.
export const PROBLEMS_SHOWN = 1000;

const SEVERITY_NAMES = { 1: "error", 2: "warning", 3: "info", 4: "hint" };
const SEVERITY_LABELS = { 1: "Error", 2: "Warning", 3: "Info", 4: "Hint" };
const SEVERITY_ICONS = { 1: "⊗", 2: "⚠", 3: "ⓘ", 4: "…" };

export class ProblemsView {
  constructor({ list, summary, count, onOpen }) {
    this.list = list;
    this.summary = summary;
    this.count = count;
    this.onOpen = onOpen;
    this.timer = null;
    list.addEventListener("keydown", (event) => this.keys(event));
    list.addEventListener("click", (event) => {
      const item = event.target instanceof Element ? event.target.closest("[data-testid=problem]") : null;
      if (item) this.open(item);
    });
  }

  open(item) {
    this.onOpen(item.dataset.path, Number(item.dataset.line), Number(item.dataset.column));
  }

  // The list is one tab stop: arrows move between entries, Enter (a button's own) opens one.
  keys(event) {
    const items = [...this.list.querySelectorAll("[data-testid=problem]")];
    const at = items.indexOf(document.activeElement);
    if (at < 0) return;
    let next = null;
    if (event.key === "ArrowDown") next = items[Math.min(at + 1, items.length - 1)];
    else if (event.key === "ArrowUp") next = items[Math.max(at - 1, 0)];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    if (!next) return;
    event.preventDefault();
    this.focusItem(next);
  }

  focusItem(item) {
    for (const other of this.list.querySelectorAll("[data-testid=problem][tabindex='0']")) other.tabIndex = -1;
    item.tabIndex = 0;
    item.focus();
  }

  schedule(problems) {
    this.problems = problems;
    if (this.timer) return;
    this.timer = setTimeout(() => { this.timer = null; this.render(); }, 40);
  }

  render() {
    const rows = [];
    for (const [path, diagnostics] of this.problems) {
      for (const diagnostic of diagnostics) {
        const severity = diagnostic.severity || 1;
        if (severity > 3) continue; // hints are for the editor (faded code), not a list
        rows.push({ path, diagnostic, severity });
      }
    }
    rows.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)
      || a.diagnostic.range.start.line - b.diagnostic.range.start.line
      || a.diagnostic.range.start.character - b.diagnostic.range.start.character
      || a.severity - b.severity);
    const counts = { 1: 0, 2: 0, 3: 0 };
    for (const row of rows) counts[row.severity] += 1;
    const total = rows.length;
    this.count.textContent = total ? String(total) : "";
    this.count.dataset.severity = counts[1] ? "error" : counts[2] ? "warning" : "info";
    const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
    let text = total
      ? [plural(counts[1], "error"), plural(counts[2], "warning"), counts[3] ? plural(counts[3], "info") : null].filter(Boolean).join(", ")
      : "No problems found.";
    if (total > PROBLEMS_SHOWN) text += `. The first ${PROBLEMS_SHOWN} are listed.`;
    if (this.summary.textContent !== text) this.summary.textContent = text;

    const focused = this.list.contains(document.activeElement) ? document.activeElement.dataset.key : null;
    const fragment = document.createDocumentFragment();
    let focusTarget = null;
    for (const { path, diagnostic, severity } of rows.slice(0, PROBLEMS_SHOWN)) {
      const line = diagnostic.range.start.line + 1;
      const column = diagnostic.range.start.character + 1;
      const li = document.createElement("li");
      const item = document.createElement("button");
      item.type = "button";
      item.className = `problem sev-${SEVERITY_NAMES[severity]}`;
      item.dataset.testid = "problem";
      item.dataset.path = path;
      item.dataset.line = String(line);
      item.dataset.column = String(column);
      item.dataset.severity = SEVERITY_NAMES[severity];
      item.dataset.key = `${path}:${line}:${column}:${diagnostic.message}`;
      item.tabIndex = -1;
      const icon = document.createElement("span");
      icon.className = "problem-icon";
      icon.setAttribute("aria-hidden", "true");
      icon.textContent = SEVERITY_ICONS[severity];
      const label = document.createElement("span");
      label.className = "sr-only";
      label.textContent = `${SEVERITY_LABELS[severity]}: `;
      const message = document.createElement("span");
      message.className = "problem-message";
      message.textContent = diagnostic.message;
      const source = document.createElement("span");
      source.className = "problem-source";
      const code = diagnostic.code != null ? (typeof diagnostic.code === "object" ? diagnostic.code.value : diagnostic.code) : null;
      source.textContent = [diagnostic.source, code != null ? `(${code})` : null].filter(Boolean).join(" ");
      const where = document.createElement("span");
      where.className = "problem-where";
      where.textContent = `${path}:${line}:${column}`;
      item.append(icon, label, message, source, where);
      li.append(item);
      fragment.append(li);
      if (item.dataset.key === focused) focusTarget = item;
    }
    this.list.replaceChildren(fragment);
    const first = focusTarget || this.list.querySelector("[data-testid=problem]");
    if (first) first.tabIndex = 0;
    if (focusTarget) focusTarget.focus();
  }
}
