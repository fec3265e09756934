// Workbench state: the open tabs with their cursors and scroll, the active tab, the panel's height
// and the open terminals, kept on the server per workspace (GET/PUT .../workbench) so that a
// reload, or another browser, finds the IDE as it was left.
//
// It watches the editor and the page rather than being told of changes, so editor.js,
// terminals.js and main.js need no calls into it beyond start-up.

import { api, csrfToken } from "./api.js";

const IDLE_MS = 1500; // save this long after the last change...
const MAX_WAIT_MS = 8000; // ...or at the latest this long after the first unsaved one
const MAX_TABS = 200; // the API's caps (sessions_app.api.serializers)
const MAX_TERMINALS = 64;

// The saved panel height, before the terminal is first fitted (main.js, before the Workbench).
export function applyPanelHeight(ide, state) {
  if (state && state.panel_height) ide.style.setProperty("--panel-height", `${state.panel_height}px`);
}

export class Workbench {
  // ``initial``: the state the IDE page came with (its data), read instead of a GET.
  constructor({ sessionId, editors, terminals, explorer, ide, terminalTabs, initial = null }) {
    this.url = `/api/vibecode/sessions/${encodeURIComponent(sessionId)}/workbench`;
    this.initial = initial;
    this.editors = editors;
    this.terminals = terminals;
    this.explorer = explorer;
    this.ide = ide;
    this.terminalTabs = terminalTabs;
    this.lastSaved = null; // JSON of what the server has
    this.idleTimer = null;
    this.maxTimer = null;
    this.saving = null;
    this.watching = false;
  }

  // The saved state, or null when it cannot be read (then nothing is saved either, so a
  // passing network failure never overwrites a good state with an empty one).
  async load() {
    if (this.initial) {
      const state = { ...this.initial };
      delete state.updated_at;
      this.loaded = state;
      return state;
    }
    try {
      const state = await api("GET", this.url);
      delete state.updated_at;
      this.loaded = state;
      return state;
    } catch {
      return null;
    }
  }

  applyPanel(state) { applyPanelHeight(this.ide, state); }

  // Reopen the saved tabs in their order, each with its cursor and scroll, then the active one.
  async restoreEditors(state) {
    if (!state) return;
    const editor = this.editors.editor;
    for (const tab of state.tabs) {
      await this.editors.openFile(tab.path);
      if (this.editors.active !== tab.path) continue; // gone or unreadable: openFile said so
      editor.setPosition({ lineNumber: tab.line, column: tab.column });
      editor.setScrollTop(tab.scroll_top);
      editor.setScrollLeft(tab.scroll_left);
    }
    if (state.active && this.editors.open.has(state.active)) this.editors.activate(state.active);
  }

  snapshot() {
    const editor = this.editors.editor;
    const tabs = [];
    for (const [path, entry] of this.editors.open) {
      let position = null;
      let scrollTop = 0;
      let scrollLeft = 0;
      if (path === this.editors.active) {
        position = editor.getPosition();
        scrollTop = editor.getScrollTop();
        scrollLeft = editor.getScrollLeft();
      } else if (entry.viewState) {
        position = entry.viewState.cursorState?.[0]?.position || null;
        scrollTop = entry.viewState.viewState?.scrollTop || 0;
        scrollLeft = entry.viewState.viewState?.scrollLeft || 0;
      }
      tabs.push({
        path,
        line: position ? position.lineNumber : 1,
        column: position ? position.column : 1,
        scroll_top: Math.max(0, Math.round(scrollTop)),
        scroll_left: Math.max(0, Math.round(scrollLeft)),
      });
    }
    const kept = tabs.slice(0, MAX_TABS);
    const active = kept.some((tab) => tab.path === this.editors.active) ? this.editors.active : null;
    const terminals = this.terminals.snapshot();
    const ids = terminals.ids.slice(0, MAX_TERMINALS);
    const height = Number.parseInt(this.ide.style.getPropertyValue("--panel-height"), 10);
    return {
      tabs: kept,
      active,
      panel_height: Number.isFinite(height) && height > 0 ? height : null,
      terminals: ids,
      active_terminal: ids.includes(terminals.active) ? terminals.active : null,
    };
  }

  // From now on, changes are saved: call after restoring, so a half-restored state is never saved.
  watch() {
    if (this.loaded === undefined || this.loaded === null || this.watching) return;
    this.watching = true;
    this.lastSaved = JSON.stringify(this.snapshot());
    const changed = () => this.changed();
    const editor = this.editors.editor;
    editor.onDidChangeCursorPosition(changed);
    editor.onDidScrollChange(changed);
    editor.onDidChangeModel(changed);
    // Tabs opened, closed, or renamed with their file (data-path).
    new MutationObserver(changed).observe(this.editors.tabsHost, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["data-path"],
    });
    new MutationObserver(changed).observe(this.terminalTabs, {
      childList: true, subtree: true, attributes: true, attributeFilter: ["class"],
    });
    new MutationObserver(changed).observe(this.ide, { attributes: true, attributeFilter: ["style"] });
    // Leaving the page: send what is unsaved on a request that outlives it.
    window.addEventListener("pagehide", () => this.flush({ leaving: true }));
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") this.flush({ leaving: true });
    });
    // The first state may already differ from the loaded one (a file that is gone).
    this.changed();
  }

  changed() {
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.flush(), IDLE_MS);
    if (!this.maxTimer) this.maxTimer = setTimeout(() => this.flush(), MAX_WAIT_MS);
  }

  async flush({ leaving = false } = {}) {
    clearTimeout(this.idleTimer);
    clearTimeout(this.maxTimer);
    this.idleTimer = null;
    this.maxTimer = null;
    if (!this.watching) return;
    const body = JSON.stringify(this.snapshot());
    if (body === this.lastSaved) return;
    if (leaving) {
      // keepalive: the browser finishes the request after the page is gone (sendBeacon cannot
      // send the CSRF header, nor PUT).
      this.lastSaved = body;
      fetch(this.url, {
        method: "PUT", body, keepalive: true, credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      }).catch(() => {});
      return;
    }
    if (this.saving) { this.changed(); return; } // one at a time; try again after this one
    this.saving = api("PUT", this.url, { json: JSON.parse(body) })
      .then(() => { this.lastSaved = body; })
      .catch((error) => {
        // Refused (too large, invalid): wait for the next change. Else a passing failure: retry.
        if (error.status >= 400 && error.status < 500 && error.status !== 429) this.lastSaved = body;
        else this.changed();
      })
      .finally(() => { this.saving = null; });
    await this.saving;
  }

  // "Reveal in Explorer": open the folders down to the active file and select it.
  async revealActive() {
    const path = this.editors.active;
    if (path) await this.explorer.reveal(path);
  }
}
