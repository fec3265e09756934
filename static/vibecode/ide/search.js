// Search and replace in files (Ctrl+Shift+F): ripgrep in the sandbox, results grouped by file,
// a click opens the file at the line. Replace all shows every change first, then applies it
// through the editor's save path: a file changed since the preview is reported, never overwritten.

import { ApiError, api } from "./api.js";
import { showError, toast } from "./ui.js";

const REASONS = {
  matches: "Only the first matches are shown; narrow the search.",
  per_file: "Some files have more matching lines than are shown.",
  time: "The search stopped at its time limit; results are incomplete.",
  long_lines: "Very long lines (minified files) were skipped.",
  interrupted: "The search was interrupted; results may be incomplete.",
};

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function globs(value) {
  return value.split(",").map((glob) => glob.trim()).filter(Boolean);
}

// A line of text with its matches marked (built from text nodes: nothing is parsed as HTML).
function marked(text, ranges) {
  const line = el("span", "line");
  let at = 0;
  for (const [start, end] of ranges || []) {
    if (start < at) continue;
    line.append(document.createTextNode(text.slice(at, start)));
    line.append(el("mark", "search-mark", text.slice(start, end)));
    at = end;
  }
  line.append(document.createTextNode(text.slice(at)));
  return line;
}

export class SearchPanel {
  constructor({ base, editors }) {
    this.base = base;
    this.editors = editors;
    const $ = (id) => document.getElementById(id);
    this.form = $("search-form");
    this.input = $("search-input");
    this.replaceInput = $("replace-input");
    this.include = $("search-include");
    this.exclude = $("search-exclude");
    this.summary = $("search-summary");
    this.results = $("search-results");
    this.toggles = { match_case: $("search-case"), whole_word: $("search-word"), regex: $("search-regex") };
    this.last = null; // {options, matches}
    this.form.onsubmit = (event) => { event.preventDefault(); this.run(); };
    for (const input of [this.include, this.exclude]) {
      input.onkeydown = (event) => { if (event.key === "Enter") { event.preventDefault(); this.run(); } };
    }
    for (const button of Object.values(this.toggles)) {
      button.onclick = () => {
        button.setAttribute("aria-pressed", String(button.getAttribute("aria-pressed") !== "true"));
        if (this.input.value) this.run();
      };
    }
    $("replace-all").onclick = () => this.preview();
  }

  focus() { this.input.focus(); this.input.select(); }

  options() {
    const options = { query: this.input.value };
    for (const [name, button] of Object.entries(this.toggles)) options[name] = button.getAttribute("aria-pressed") === "true";
    return options;
  }

  setSummary(text, kind = "") {
    this.summary.textContent = text;
    this.summary.className = `search-summary ${kind}`;
  }

  async run() {
    const options = this.options();
    this.results.replaceChildren();
    this.last = null;
    if (!options.query) { this.setSummary(""); return; }
    this.setSummary("Searching…");
    const body = { ...options, include: globs(this.include.value), exclude: globs(this.exclude.value) };
    let found;
    try {
      found = await api("POST", `${this.base}/search`, { json: body });
    } catch (error) {
      this.setSummary(error.message, "error");
      if (!(error instanceof ApiError) || error.status >= 500) showError(error, "Search failed.");
      return;
    }
    this.last = { options, matches: found.matches, etags: found.etags || {} };
    this.render(found);
  }

  render(found) {
    const byFile = new Map();
    for (const match of found.matches) {
      if (!byFile.has(match.path)) byFile.set(match.path, []);
      byFile.get(match.path).push(match);
    }
    const count = found.matches.length;
    let text = count ? `${count} result${count === 1 ? "" : "s"} in ${byFile.size} file${byFile.size === 1 ? "" : "s"}` : "No results.";
    if (found.truncated) text += ` ${REASONS[found.reason] || "Results are incomplete."}`;
    this.setSummary(text, found.truncated ? "warn" : "");
    this.summary.dataset.truncated = String(found.truncated);
    for (const [path, matches] of byFile) {
      const group = el("div", "search-file");
      group.dataset.testid = "search-file";
      group.dataset.path = path;
      const header = el("div", "search-file-name");
      header.append(el("span", "", path), el("span", "search-count", String(matches.length)));
      group.append(header);
      for (const match of matches) {
        const hit = el("button", "search-hit");
        hit.type = "button";
        hit.dataset.testid = "search-hit";
        hit.title = `${path}:${match.line}`;
        hit.append(el("span", "where", String(match.line)), marked(match.text, match.ranges));
        hit.onclick = () => this.editors.openFile(path, match.line);
        group.append(hit);
      }
      this.results.append(group);
    }
  }

  // --- replace all ------------------------------------------------------------------------------
  async preview() {
    if (!this.last || !this.last.matches.length) { toast("Search first; Replace all changes what the search found.", "info"); return; }
    const { options } = this.last;
    const paths = [...new Set(this.last.matches.map((m) => m.path))];
    // Each file with the etag the search saw: one changed since is a conflict, never overwritten.
    const files = paths.map((path) => ({ path, etag: this.last.etags[path] || "" }));
    const body = { ...options, replace: this.replaceInput.value, files };
    let preview;
    try {
      preview = await api("POST", `${this.base}/replace`, { json: body });
    } catch (error) { showError(error, "Could not preview the replacement."); return; }
    this.results.replaceChildren();
    this.setSummary(`Replace ${preview.lines} line${preview.lines === 1 ? "" : "s"} in ${preview.files.filter((f) => f.status === 200 && f.lines).length} file(s)? Nothing changes until you apply.`);
    const box = el("div", "replace-preview");
    box.dataset.testid = "replace-preview";
    for (const file of preview.files) {
      const group = el("div", "search-file");
      group.dataset.path = file.path;
      group.append(el("div", "search-file-name", file.path));
      if (file.status !== 200) group.append(el("div", "replace-error", file.detail));
      for (const change of file.changes || []) {
        const row = el("div", "replace-change");
        row.append(el("span", "where", String(change.line)), el("del", "", change.before), el("ins", "", change.after));
        group.append(row);
      }
      box.append(group);
    }
    const bar = el("div", "replace-actions");
    const apply = el("button", "btn btn-primary", "Apply");
    apply.type = "button";
    apply.dataset.testid = "replace-apply";
    const cancel = el("button", "btn", "Cancel");
    cancel.type = "button";
    cancel.onclick = () => this.run();
    const chosen = preview.files.filter((f) => f.status === 200 && f.lines).map((f) => ({ path: f.path, etag: f.etag }));
    const refused = preview.files.filter((f) => f.status !== 200);
    apply.disabled = !chosen.length;
    apply.onclick = () => { apply.disabled = true; this.apply({ ...body, files: chosen, apply: true }, refused); };
    bar.append(apply, cancel);
    this.results.append(bar, box);
  }

  async apply(body, refused = []) {
    let done;
    try {
      done = await api("POST", `${this.base}/replace`, { json: body });
    } catch (error) { showError(error, "Replace failed."); return; }
    this.results.replaceChildren();
    const changed = done.files.filter((f) => f.status === 200 && f.lines);
    const failed = [...refused, ...done.files.filter((f) => f.status !== 200)];
    const conflicts = failed.filter((f) => f.status === 409).length;
    let text = `Replaced ${done.lines} line${done.lines === 1 ? "" : "s"} in ${changed.length} file(s).`;
    if (conflicts) text += ` ${conflicts} file(s) changed since the search and were not touched.`;
    this.setSummary(text, failed.length ? "warn" : "");
    const report = el("div", "replace-report");
    report.dataset.testid = "replace-report";
    for (const file of failed) {
      const row = el("div", "replace-error", `${file.path}: ${file.detail}`);
      row.dataset.testid = file.status === 409 ? "replace-conflict" : "replace-failed";
      row.dataset.path = file.path;
      report.append(row);
    }
    this.results.append(report);
    for (const file of changed) await this.refreshTab(file.path);
  }

  // An open tab of a replaced file: reload it when it has no unsaved changes; otherwise keep the
  // user's text, and the next save shows the conflict (its etag is now stale).
  async refreshTab(path) {
    if (!this.editors.open.has(path)) return;
    if (this.editors.isDirty(path)) {
      toast(`${path} has unsaved changes and was replaced on disk; saving it will let you compare.`, "info", 10000);
      return;
    }
    try { await this.editors.reload(path); } catch (error) { showError(error, `Could not reload ${path}.`); }
  }
}
