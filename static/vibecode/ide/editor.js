// Monaco with tabs: open, edit, save (with etag conflict handling), close.

import { ApiError } from "./api.js";
import { fileIcon } from "./icons.js";
import { choose, showError, toast } from "./ui.js";

// Monaco's AMD loader, injected when the IDE asks for the editor (after the terminal's prompt),
// then its editor core; its languages load later still, when a file of theirs opens. ``base`` is
// the URL of its ``vs`` folder (the page's data: a versioned folder, cached for good).
let monacoLoading = null;

export function loadMonaco(base) {
  if (!monacoLoading) {
    monacoLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = `${base}/loader.js`;
      script.onerror = () => reject(new Error("Monaco's loader could not be loaded."));
      script.onload = () => {
        window.require.config({ paths: { vs: base } });
        window.require(["vs/editor/editor.main"], () => resolve(window.monaco), reject);
      };
      document.head.append(script);
    });
  }
  return monacoLoading;
}

export class Editors {
  constructor({ monaco, files, host, tabsHost, emptyEl, onCursor, onRun, onStop }) {
    this.monaco = monaco;
    this.files = files;
    this.host = host;
    this.tabsHost = tabsHost;
    this.emptyEl = emptyEl;
    this.open = new Map(); // path -> {model, etag, savedVersion, viewState, tab}
    this.active = null;
    // What happens to the open files, for the language servers (lsp.js): "open" {path, model},
    // "close" {path, model} (before the model is disposed), "save" {path}, "move" {from, to}.
    this.events = new EventTarget();
    this.editor = monaco.editor.create(host, {
      automaticLayout: true,
      minimap: { enabled: false },
      fontSize: 14,
      scrollBeyondLastLine: false,
      tabSize: 4,
      theme: document.documentElement.dataset.theme === "light" ? "vs" : "vs-dark",
    });
    this.editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.KeyS, () => this.save());
    // Run and Stop from inside the editor (Monaco would otherwise take Ctrl+Enter for itself).
    if (onRun) {
      this.editor.addCommand(monaco.KeyMod.CtrlCmd | monaco.KeyCode.Enter, () => onRun());
      this.editor.addCommand(monaco.KeyCode.F5, () => onRun());
    }
    if (onStop) this.editor.addCommand(monaco.KeyMod.Shift | monaco.KeyCode.F5, () => onStop());
    this.editor.onDidChangeCursorPosition((event) => onCursor && onCursor(event.position));
    this.editor.onDidChangeModelContent(() => this.refreshTab(this.active));
    window.addEventListener("beforeunload", (event) => {
      if (this.dirtyPaths().length) { event.preventDefault(); event.returnValue = ""; }
    });
    this.showEmpty();
  }

  emit(name, detail) { this.events.dispatchEvent(new CustomEvent(name, { detail })); }

  setTheme(theme) { this.monaco.editor.setTheme(theme === "light" ? "vs" : "vs-dark"); }

  dirtyPaths() { return [...this.open.keys()].filter((path) => this.isDirty(path)); }

  isDirty(path) {
    const entry = this.open.get(path);
    return !!entry && entry.model.getAlternativeVersionId() !== entry.savedVersion;
  }

  showEmpty() {
    const empty = this.open.size === 0;
    this.emptyEl.hidden = !empty;
    // Without a model (the last tab closed) Monaco has no view and getDomNode() is null.
    const node = this.editor.getDomNode();
    if (node) node.style.visibility = empty ? "hidden" : "visible";
  }

  async openFile(path, line, column = 1) {
    if (!this.open.has(path)) {
      let file;
      try {
        file = await this.files.read(path);
      } catch (error) {
        if (error instanceof ApiError && error.code === "file_too_large") {
          toast(`${error.message}`, "error", 10000);
          window.location.assign(this.files.downloadUrl(path));
          return;
        }
        showError(error, `Could not open ${path}.`);
        return;
      }
      if (file.encoding !== "utf-8") {
        toast(`${path} is a binary file; download it to open it.`, "info");
        return;
      }
      const uri = this.monaco.Uri.parse(`file:///workspace/${path.split("/").map(encodeURIComponent).join("/")}`);
      // A model may be there already without a tab: the language servers' peek views (references)
      // read other files into models. Reuse it, with the text on disk, rather than pull it away
      // from under a view that shows it.
      // (Opened meanwhile, by a second click while this one read the file: that tab stays.)
      if (!this.open.has(path)) {
        let model = this.monaco.editor.getModel(uri);
        if (model && this.pathOfModel(model)) { model.dispose(); model = null; } // a moved tab's: as before
        if (model && model.getValue() !== file.content) model.setValue(file.content);
        if (!model) model = this.monaco.editor.createModel(file.content, undefined, uri);
        const tab = this.makeTab(path);
        this.open.set(path, { model, etag: file.etag, savedVersion: model.getAlternativeVersionId(), tab });
        this.emit("open", { path, model });
      }
    }
    this.activate(path);
    if (line) {
      this.editor.revealLineInCenter(line);
      this.editor.setPosition({ lineNumber: line, column });
    }
    this.editor.focus();
  }

  // The path of the tab that shows this model (a model keeps its first uri when its file moves).
  pathOfModel(model) {
    for (const [path, entry] of this.open) if (entry.model === model) return path;
    return null;
  }

  makeTab(path) {
    const tab = document.createElement("div");
    tab.className = "tab";
    tab.dataset.path = path;
    tab.dataset.testid = "editor-tab";
    tab.title = path;
    // A role=tab (keys in tab-keys.js): its close "button" is for the mouse only, since a tab can't
    // hold a control; the keyboard closes with Ctrl+W, Ctrl+F4, Alt+W or Delete.
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-selected", "false");
    tab.setAttribute("aria-controls", this.host.id);
    tab.tabIndex = -1;
    const label = document.createElement("span");
    label.className = "tab-label";
    label.textContent = path.split("/").pop();
    const close = document.createElement("span");
    close.className = "tab-close";
    close.title = "Close (Ctrl+W)";
    close.setAttribute("aria-hidden", "true");
    close.textContent = "×";
    close.onclick = (event) => { event.stopPropagation(); this.close(tab.dataset.path); };
    tab.append(fileIcon(label.textContent), label, close);
    tab.onclick = () => this.activate(tab.dataset.path);
    tab.onauxclick = (event) => { if (event.button === 1) this.close(tab.dataset.path); };
    this.tabsHost.append(tab);
    return tab;
  }

  refreshTab(path) {
    const entry = path && this.open.get(path);
    if (!entry) return;
    entry.tab.classList.toggle("dirty", this.isDirty(path));
    entry.tab.classList.toggle("active", path === this.active);
    entry.tab.setAttribute("aria-selected", String(path === this.active));
    entry.tab.tabIndex = path === this.active ? 0 : -1;
  }

  activate(path) {
    const previous = this.active && this.open.get(this.active);
    if (previous) previous.viewState = this.editor.saveViewState();
    const entry = this.open.get(path);
    if (!entry) return;
    this.active = path;
    this.editor.setModel(entry.model);
    if (entry.viewState) this.editor.restoreViewState(entry.viewState);
    for (const p of this.open.keys()) this.refreshTab(p);
    this.showEmpty();
    document.title = `${path.split("/").pop()} · VibeCode`;
  }

  async save(path = this.active, { force = false } = {}) {
    const entry = path && this.open.get(path);
    if (!entry) return false;
    const version = entry.model.getAlternativeVersionId();
    try {
      const saved = await this.files.save(path, entry.model.getValue(), force ? null : entry.etag);
      entry.etag = saved.etag;
      entry.savedVersion = version;
      this.refreshTab(path);
      this.emit("save", { path });
      return true;
    } catch (error) {
      if (error instanceof ApiError && error.code === "conflict") return this.resolveConflict(path);
      showError(error, `Could not save ${path}.`);
      return false;
    }
  }

  async resolveConflict(path) {
    const entry = this.open.get(path);
    const choice = await choose(
      "The file changed on disk",
      `${path} was changed since you opened it (perhaps in the terminal). Nothing was overwritten.`,
      [["Cancel", "cancel"], ["Compare…", "compare"], ["Use theirs", "theirs"], ["Overwrite with mine", "mine", "btn-danger"]],
    );
    if (choice === "mine") return this.save(path, { force: true });
    if (choice === "theirs") return this.reload(path);
    if (choice === "compare") return this.compare(path, entry);
    return false;
  }

  async reload(path) {
    const entry = this.open.get(path);
    const file = await this.files.read(path);
    entry.model.setValue(file.content);
    entry.etag = file.etag;
    entry.savedVersion = entry.model.getAlternativeVersionId();
    this.refreshTab(path);
    return true;
  }

  async compare(path, entry) {
    const theirs = await this.files.read(path);
    const overlay = document.createElement("div");
    overlay.className = "diff-overlay";
    overlay.dataset.testid = "diff-view";
    const bar = document.createElement("div");
    bar.className = "diff-bar";
    bar.innerHTML = "<strong></strong><span class='muted'>left: on disk · right: yours</span><span class='spacer'></span>";
    bar.querySelector("strong").textContent = `Compare ${path}`;
    const host = document.createElement("div");
    host.className = "diff-host";
    overlay.append(bar, host);
    document.querySelector(".editor-area").append(overlay);
    const original = this.monaco.editor.createModel(theirs.content, undefined);
    const diff = this.monaco.editor.createDiffEditor(host, { automaticLayout: true, readOnly: false });
    diff.setModel({ original, modified: entry.model });
    return new Promise((resolve) => {
      const finish = async (choice) => {
        diff.dispose();
        original.dispose();
        overlay.remove();
        if (choice === "mine") {
          entry.etag = theirs.etag;
          resolve(await this.save(path));
        } else if (choice === "theirs") {
          entry.model.setValue(theirs.content);
          entry.etag = theirs.etag;
          entry.savedVersion = entry.model.getAlternativeVersionId();
          this.refreshTab(path);
          resolve(true);
        } else resolve(false);
      };
      for (const [label, choice, cls] of [["Keep mine", "mine", "btn-primary"], ["Take theirs", "theirs", ""], ["Close", "close", ""]]) {
        const button = document.createElement("button");
        button.className = `btn ${cls}`;
        button.textContent = label;
        button.onclick = () => finish(choice);
        bar.append(button);
      }
    });
  }

  async close(path) {
    const entry = this.open.get(path);
    if (!entry) return;
    if (this.isDirty(path)) {
      const choice = await choose("Unsaved changes", `Save the changes to ${path} before closing?`,
        [["Cancel", "cancel"], ["Don't save", "discard", "btn-danger"], ["Save", "save", "btn-primary"]]);
      if (choice === "cancel" || choice === null) return;
      if (choice === "save" && !(await this.save(path))) return;
    }
    entry.tab.remove();
    this.open.delete(path);
    this.emit("close", { path, model: entry.model });
    entry.model.dispose();
    if (this.active === path) {
      this.active = null;
      const next = [...this.open.keys()].pop();
      if (next) this.activate(next);
      else { this.editor.setModel(null); document.title = "VibeCode"; }
    }
    this.showEmpty();
  }

  // The explorer moved or deleted something: keep open tabs pointing at the right files.
  pathMoved(from, to) {
    for (const [path, entry] of [...this.open.entries()]) {
      if (path === from || path.startsWith(`${from}/`)) {
        const next = to + path.slice(from.length);
        this.open.delete(path);
        this.open.set(next, entry);
        entry.tab.dataset.path = next;
        entry.tab.querySelector(".tab-label").textContent = next.split("/").pop();
        entry.tab.querySelector(".file-icon").replaceWith(fileIcon(next.split("/").pop()));
        if (this.active === path) this.active = next;
        this.emit("move", { from: path, to: next });
      }
    }
  }

  pathDeleted(target) {
    for (const path of [...this.open.keys()]) {
      if (path === target || path.startsWith(`${target}/`)) {
        const entry = this.open.get(path);
        entry.savedVersion = entry.model.getAlternativeVersionId();
        this.close(path);
      }
    }
  }
}
