// Terminal tabs: xterm.js over the terminal WebSocket (docs/terminal-protocol.md). Each tab is a
// PTY that the sandbox's PTY host keeps, so a reload or a dropped network reattaches to the same
// shell.
//
// xterm.js keeps the scrollback itself: the output comes as the programs wrote it, so the wheel,
// the scrollbar and find (Ctrl+F) work on xterm.js's own buffer with no round trip. Every
// (re)attach starts from a clean terminal and gets the terminal's last MiB of output replayed
// first, which rebuilds the screen and the scrollback (terminal_app/services.py).

import { Terminal } from "@xterm/xterm";
import { FitAddon } from "@xterm/addon-fit";
import { WebLinksAddon } from "@xterm/addon-web-links";
import { SearchAddon } from "@xterm/addon-search";
import { showError, toast } from "./ui.js";

const ACK_EVERY = 64 * 1024;
const FIND_COLOURS = {
  dark: { matchBackground: "#6b5a26", activeMatchBackground: "#b5651d" },
  light: { matchBackground: "#f8e3a1", activeMatchBackground: "#f0a94b" },
};
const THEMES = {
  dark: { background: "#1e1e1e", foreground: "#d4d4d4", cursor: "#d4d4d4", selectionBackground: "#264f78" },
  light: { background: "#ffffff", foreground: "#1e1e1e", cursor: "#1e1e1e", selectionBackground: "#add6ff" },
};

class TerminalTab {
  constructor(manager, id) {
    this.manager = manager;
    this.id = id;
    this.processed = 0;
    this.acked = 0;
    this.retries = 0;
    this.stopped = false;
    this.element = document.createElement("div");
    this.element.className = "terminal-host";
    this.element.dataset.testid = "terminal";
    this.element.dataset.terminalId = id;
    manager.host.append(this.element);
    this.term = new Terminal({
      cursorBlink: true, fontSize: 13, scrollback: 10000, allowProposedApi: true,
      fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
      theme: THEMES[document.documentElement.dataset.theme === "light" ? "light" : "dark"],
    });
    this.fit = new FitAddon();
    this.search = new SearchAddon();
    this.term.loadAddon(this.fit);
    this.term.loadAddon(this.search);
    this.term.loadAddon(new WebLinksAddon((event, uri) => window.open(uri, "_blank", "noopener")));
    this.term.open(this.element);
    // For tests and the console: the xterm.js Terminal behind this tab.
    this.element.__vibecodeTerminal = this.term;
    this.term.attachCustomKeyEventHandler((event) => this.keys(event));
    this.search.onDidChangeResults((results) => manager.findResults(this, results));
    this.term.onData((data) => this.type(data));
    this.term.onResize(({ cols, rows }) => this.send({ type: "resize", cols, rows }));
    new ResizeObserver(() => { if (this.element.offsetParent) this.safeFit(); }).observe(this.element);
    this.tab = manager.makeTab(this);
    this.safeFit();
    // Drawn at once; connected once the workspace runs (the IDE's ``ready``).
    manager.ready.then(() => { if (!this.disposed) this.connect(); }, () => {});
  }

  keys(event) {
    if (event.type !== "keydown") return true;
    const mod = event.ctrlKey || event.metaKey;
    // Copy: Ctrl+Shift+C always, Ctrl+C when there is a selection (else it is SIGINT).
    if (mod && event.key.toLowerCase() === "c" && (event.shiftKey || this.term.hasSelection())) {
      navigator.clipboard?.writeText(this.term.getSelection()).catch(() => {});
      this.term.clearSelection();
      return false;
    }
    // Paste: let the browser deliver the paste event to xterm's textarea.
    if (mod && event.key.toLowerCase() === "v") return false;
    // Find in the terminal (instead of the page's find, and of readline's forward-char).
    if (mod && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "f") {
      event.preventDefault();
      this.manager.openFind();
      return false;
    }
    if (event.key === "Enter") this.manager.onCommand();
    return true;
  }

  safeFit() {
    try { this.fit.fit(); } catch { /* not visible yet */ }
  }

  url() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({
      session_id: this.manager.sessionId, terminal_id: this.id,
      cols: String(this.term.cols), rows: String(this.term.rows),
    });
    return `${proto}//${window.location.host}/api/vibecode/ws/terminal?${params}`;
  }

  connect() {
    this.processed = 0;
    this.acked = 0;
    const ws = new WebSocket(this.url());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      this.retries = 0;
      // A full reset (RIS), in order with the output: the attach replays the terminal's output
      // (scrollback and screen) again, so nothing of the previous connection's may stay.
      this.search.clearDecorations();
      this.term.write("\x1bc");
      this.manager.setState(this, "connected");
    };
    ws.onmessage = (message) => this.receive(message.data);
    ws.onclose = (event) => this.closed(event);
  }

  receive(data) {
    if (typeof data !== "string") {
      const bytes = new Uint8Array(data);
      this.term.write(bytes, () => {
        this.processed += bytes.length;
        if (this.processed - this.acked >= ACK_EVERY) {
          this.acked = this.processed;
          this.send({ type: "ack", bytes: this.processed });
        }
      });
      return;
    }
    let message;
    try { message = JSON.parse(data); } catch { return; }
    if (message.type === "status" && message.status !== "connected") {
      this.stopped = true;
      this.term.write(`\r\n\x1b[33m[${message.message}]\x1b[0m\r\n`);
      this.manager.sessionStopped(message.status);
    } else if (message.type === "exit") {
      this.stopped = true;
      this.term.write(`\r\n\x1b[90m[The shell ended${message.code != null ? ` with code ${message.code}` : ""}.]\x1b[0m\r\n`);
    } else if (message.type === "error") {
      this.term.write(`\r\n\x1b[31m[${message.message}]\x1b[0m\r\n`);
    }
  }

  closed(event) {
    if (this.disposed) return;
    // 4403: the user's terminal limit; retrying would only be refused again.
    if (this.stopped || [1000, 4403, 4409, 4410].includes(event.code)) {
      this.manager.setState(this, "disconnected");
      return;
    }
    // A dropped network or a restarting server: reconnect by ourselves, with a growing pause.
    this.manager.setState(this, "reconnecting…");
    const delay = Math.min(500 * 2 ** this.retries, 8000);
    this.retries += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  // The server closes the socket (4413) on a message over 64 KB: a long paste goes in pieces
  // (8192 UTF-16 units are at most 48 KB of JSON, escapes included).
  type(text) {
    for (let i = 0; i < text.length;) {
      let end = Math.min(i + 8192, text.length);
      // Never split a surrogate pair between two messages.
      if (end < text.length && /[\uD800-\uDBFF]/.test(text[end - 1])) end -= 1;
      this.send({ type: "input", data: text.slice(i, end) });
      i = end;
    }
  }

  setTheme(theme) { this.term.options.theme = THEMES[theme]; }

  find(text, { backwards = false, incremental = false } = {}) {
    if (!text) {
      this.search.clearDecorations();
      this.term.clearSelection();
      return false;
    }
    const palette = FIND_COLOURS[document.documentElement.dataset.theme === "light" ? "light" : "dark"];
    const options = {
      incremental,
      decorations: {
        ...palette,
        matchOverviewRuler: palette.matchBackground,
        activeMatchColorOverviewRuler: palette.activeMatchBackground,
      },
    };
    return backwards ? this.search.findPrevious(text, options) : this.search.findNext(text, options);
  }

  show(visible) {
    this.element.hidden = !visible;
    this.tab.classList.toggle("active", visible);
    if (visible) { this.safeFit(); this.term.focus(); }
  }

  dispose({ kill }) {
    this.disposed = true;
    clearTimeout(this.timer);
    if (kill) this.send({ type: "close" });
    setTimeout(() => this.ws && this.ws.close(), kill ? 300 : 0);
    this.term.dispose();
    this.element.remove();
    this.tab.remove();
  }
}

export class Terminals {
  constructor({ files, sessionId, host, tabsHost, onState, onCommand, onSessionStopped, ready }) {
    this.files = files;
    this.ready = ready || Promise.resolve();
    this.sessionId = sessionId;
    this.host = host;
    this.tabsHost = tabsHost;
    this.tabs = [];
    this.active = null;
    this.onStateChange = onState;
    this.onCommand = onCommand || (() => {});
    this.onSessionStopped = onSessionStopped || (() => {});
    this.storageKey = `vibecode.terminals.${sessionId}`;
    this.findBox = host.querySelector("[data-testid=terminal-find]");
    if (this.findBox) this.wireFind();
  }

  // --- find in the active terminal (the box in the terminal panel) ---

  wireFind() {
    const input = this.findBox.querySelector("input");
    this.findInput = input;
    this.findCount = this.findBox.querySelector("[data-testid=terminal-find-count]");
    input.addEventListener("input", () => this.findStep({ incremental: true }));
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter") { event.preventDefault(); this.findStep({ backwards: event.shiftKey }); }
      else if (event.key === "Escape") { event.preventDefault(); this.closeFind(); }
    });
    this.findBox.addEventListener("submit", (event) => event.preventDefault());
    this.findBox.querySelector("[data-find=next]").onclick = () => this.findStep({});
    this.findBox.querySelector("[data-find=prev]").onclick = () => this.findStep({ backwards: true });
    this.findBox.querySelector("[data-find=close]").onclick = () => this.closeFind();
  }

  openFind() {
    if (!this.findBox) return;
    this.findBox.hidden = false;
    const selection = this.active?.term.getSelection();
    if (selection && !selection.includes("\n")) this.findInput.value = selection;
    this.findInput.focus();
    this.findInput.select();
    if (this.findInput.value) this.findStep({ incremental: true });
  }

  closeFind() {
    if (!this.findBox || this.findBox.hidden) return;
    this.findBox.hidden = true;
    this.findCount.textContent = "";
    for (const tab of this.tabs) tab.search.clearDecorations();
    this.active?.term.focus();
  }

  findStep({ backwards = false, incremental = false }) {
    const tab = this.active;
    if (!tab) return;
    const text = this.findInput.value;
    const found = tab.find(text, { backwards, incremental });
    this.findBox.classList.toggle("no-match", Boolean(text) && !found);
    if (!text) this.findCount.textContent = "";
    else if (!found) this.findCount.textContent = "No results";
  }

  findResults(terminal, { resultIndex, resultCount }) {
    if (terminal !== this.active || !this.findBox || this.findBox.hidden || !this.findInput.value) return;
    this.findCount.textContent = resultCount
      ? `${resultIndex >= 0 ? resultIndex + 1 : "?"} of ${resultCount}`
      : "No results";
  }

  // Reattach to the terminals that exist (this tab's and any the server knows), or open one.
  // ``saved`` is the workbench's {ids, active}: those first, in their order, the active one shown.
  // With none known the server's list is waited for, unless ``fresh`` (a workspace just made or
  // started, or never opened in the IDE: terminal 1 opens at once). The IDE adds the server's
  // other terminals later (openListed), so that listing never slows the first attach.
  async restore(saved = { ids: [], active: null }, { fresh = false } = {}) {
    let ids = [...saved.ids];
    try {
      for (const id of JSON.parse(localStorage.getItem(this.storageKey) || "[]")) if (!ids.includes(id)) ids.push(id);
    } catch { /* a damaged entry: ignore it */ }
    if (!ids.length && !fresh) ids = await this.listed();
    if (!ids.length) ids = ["1"];
    for (const id of ids) this.open(id);
    this.activate(this.tabs.find((tab) => tab.id === saved.active) || this.tabs[0]);
  }

  async listed() {
    try {
      return (await this.files.terminals()).map((terminal) => terminal.terminal_id);
    } catch (error) {
      showError(error, "Could not list the terminals.");
      return [];
    }
  }

  // The terminals the server has and this page does not show yet (opened elsewhere), behind.
  async openListed() {
    for (const id of await this.listed()) if (!this.tabs.some((tab) => tab.id === id)) this.open(id).show(false);
  }

  // For the workbench state: the open terminals' ids in order, and the active one's.
  snapshot() { return { ids: this.tabs.map((tab) => tab.id), active: this.active ? this.active.id : null }; }

  remember() {
    localStorage.setItem(this.storageKey, JSON.stringify(this.tabs.map((tab) => tab.id)));
  }

  open(id) {
    const tab = new TerminalTab(this, id);
    this.tabs.push(tab);
    this.remember();
    return tab;
  }

  create() {
    const numbers = this.tabs.map((tab) => Number.parseInt(tab.id, 10)).filter(Number.isFinite);
    const tab = this.open(String(numbers.length ? Math.max(...numbers) + 1 : 1));
    this.activate(tab);
    return tab;
  }

  makeTab(terminal) {
    const tab = document.createElement("span");
    tab.className = "terminal-tab";
    tab.dataset.testid = "terminal-tab";
    tab.textContent = `bash ${terminal.id}`;
    const close = document.createElement("button");
    close.className = "tab-close";
    close.title = "Close this terminal (ends its shell)";
    close.textContent = "×";
    close.onclick = (event) => { event.stopPropagation(); this.close(terminal); };
    tab.append(close);
    tab.onclick = () => this.activate(terminal);
    this.tabsHost.append(tab);
    return tab;
  }

  activate(terminal) {
    if (!terminal) return;
    if (this.active && this.active !== terminal) this.active.search.clearDecorations();
    this.active = terminal;
    for (const tab of this.tabs) tab.show(tab === terminal);
    this.onStateChange(terminal.state || "connecting…");
  }

  close(terminal) {
    terminal.dispose({ kill: true });
    this.tabs = this.tabs.filter((tab) => tab !== terminal);
    this.remember();
    if (this.active === terminal) this.activate(this.tabs[this.tabs.length - 1] || null);
    if (!this.tabs.length) toast("All terminals are closed. Open a new one with +.");
  }

  setState(terminal, state) {
    terminal.state = state;
    if (terminal === this.active) this.onStateChange(state);
  }

  sessionStopped(status) { this.onSessionStopped(status); }

  fitAll() { for (const tab of this.tabs) if (!tab.element.hidden) tab.safeFit(); }

  setTheme(theme) { for (const tab of this.tabs) tab.setTheme(theme); }

  activeOrNew() { return this.active || this.create(); }
}
