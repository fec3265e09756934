// Agent mode in the assistant panel: the user states a goal, the server's agent works on it in
// steps (assistant_app/agent/), and this panel shows the steps as they happen and takes the user's
// decisions: Accept / Reject a file change (shown in Monaco's diff editor), Run / Skip a command,
// answer a question. Stop, Undo and the auto-apply / auto-run switches sit in its toolbar.
//
// Everything lives on the server: the page follows a turn's event stream (EventSource; the browser
// resumes it with Last-Event-ID after a drop) and, on load, lists the conversation's turns, shows
// their step logs and reattaches to the one still active. Rendering is idempotent by step index
// and version, so an event seen twice (a resume, a reload racing the stream) changes nothing.

import { api } from "./api.js";
import { markdownElement } from "./assistant.js";
import { toast } from "./ui.js";

const ACTIVE = new Set(["running", "waiting"]);
const CHANGES = new Set(["write_file", "edit_file"]);
const READERS = new Set(["list_files", "read_file", "search"]);
const OUTPUT_SHOWN = 4000; // characters of a command's output shown (its start and end)
const DIFF_LINE_HEIGHT = 19;
const DIFF_MAX_LINES = 16;

// What a turn's error code means, in words a user can act on (the server's detail is kept for
// the rest).
const TURN_ERRORS = {
  agent_needs_tools: "This model can't call tools, so it can't work as an agent. Configure a model with tool calling (OpenAI, Anthropic, or a llama.cpp / vLLM / Ollama model that supports tools); chat still works.",
  no_tool_calls: "The model answered in words without using any tool, so nothing was changed. Agent mode needs a model that can call tools; chat still works.",
  step_limit: "The agent reached its step limit for this turn.",
  token_limit: "The agent reached its token limit for this turn.",
  time_limit: "The agent reached its working-time limit for this turn.",
  review_timeout: "Nobody reviewed the agent's step in time, so the turn ended.",
  worker_lost: "The server working on this turn restarted. Start the turn again.",
  stopped: "Stopped.",
};
const LIMITS = new Set(["step_limit", "token_limit", "time_limit"]);

const STATUS_LABEL = {
  pending: "waiting for you", accepted: "accepted", rejected: "rejected", applied: "applied",
  conflict: "not applied: conflict", skipped: "skipped", running: "running", ran: "ran",
  answered: "answered", done: "done", failed: "failed",
};
const TURN_LABEL = { running: "Working…", waiting: "Waiting for you", done: "Done", failed: "Failed", stopped: "Stopped", undone: "Undone" };

function el(tag, { cls, text, testid, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  if (testid) node.dataset.testid = testid;
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function button(label, { cls = "btn", testid, title, onclick } = {}) {
  const node = el("button", { cls, text: label, testid, attrs: { type: "button" } });
  if (title) node.title = title;
  node.onclick = onclick;
  return node;
}

// The two sides of a unified diff, hunk by hunk: what the file had and what it will have around
// each change (context lines included). Hunks are separated by a "⋯" line on both sides, which
// the diff editor sees as unchanged. A new file (from /dev/null) has an empty left side.
export function diffSides(diff) {
  const original = [];
  const modified = [];
  let inHunk = false;
  let hunks = 0;
  for (const line of diff.split("\n")) {
    if (line.startsWith("@@")) {
      if (hunks++) { original.push("⋯"); modified.push("⋯"); }
      inHunk = true;
    } else if (!inHunk || line.startsWith("\\")) {
      continue;
    } else if (line.startsWith("-")) original.push(line.slice(1));
    else if (line.startsWith("+")) modified.push(line.slice(1));
    else if (line.startsWith(" ")) { original.push(line.slice(1)); modified.push(line.slice(1)); }
  }
  // Both end with a newline: a new file's empty left side then lines up with the right's last
  // (empty) line, instead of showing as a deleted empty line.
  const text = (lines) => (lines.length ? `${lines.join("\n")}\n` : "");
  return { original: text(original), modified: text(modified) };
}

// Monaco's language for a path, by its extension (plaintext if unknown).
function languageFor(monaco, path) {
  const dot = path.lastIndexOf(".");
  const ext = dot >= 0 ? path.slice(dot).toLowerCase() : "";
  const found = monaco.languages.getLanguages().find((language) => (language.extensions || []).includes(ext));
  return found ? found.id : "plaintext";
}

function trimOutput(text) {
  if (text.length <= OUTPUT_SHOWN) return text;
  const head = Math.floor(OUTPUT_SHOWN / 3);
  return `${text.slice(0, head)}\n[… ${text.length - OUTPUT_SHOWN} characters cut …]\n${text.slice(-(OUTPUT_SHOWN - head))}`;
}

function readerLine(step) {
  const args = step.arguments || {};
  if (step.kind === "list_files") return `Listed ${args.path || "the workspace root"}`;
  if (step.kind === "read_file") return `Read ${args.path || "a file"}`;
  return `Searched for “${args.query || ""}”${args.path ? ` in ${args.path}` : ""}`;
}

export class Agent {
  constructor({ sessionId, editors, explorer }) {
    this.base = `/api/vibecode/sessions/${encodeURIComponent(sessionId)}/assistant/agent`;
    this.editors = editors;
    this.explorer = explorer;
    this.turns = new Map(); // id -> {turn, node, steps: Map(index -> {step, node, diff})}
    this.current = null; // the id of the latest turn
    this.source = null; // the EventSource of the active turn
    this.settings = { auto_apply: false, auto_run: false, auto_allowed: true };
    this.ready = false;
    this.refreshTimer = null;
    const $ = (id) => document.getElementById(id);
    this.el = {
      panel: $("assistant"), chat: $("assistant-chat"), pane: $("agent"), clear: $("assistant-clear"),
      tabs: [$("assistant-mode-chat"), $("assistant-mode-agent")],
      log: $("agent-log"), announce: $("agent-announce"), error: $("agent-error"), form: $("agent-form"),
      goal: $("agent-goal"), start: $("agent-start"), stop: $("agent-stop"),
      undo: $("agent-undo"), autoApply: $("agent-auto-apply"), autoRun: $("agent-auto-run"),
      autoApplyLabel: $("agent-auto-apply-label"), autoRunLabel: $("agent-auto-run-label"),
    };
    for (const tab of this.el.tabs) {
      tab.onclick = () => this.setMode(tab.dataset.mode);
      tab.addEventListener("keydown", (event) => this.tabKey(event));
    }
    this.el.form.onsubmit = (event) => { event.preventDefault(); this.startTurn(); };
    this.el.goal.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); this.startTurn(); }
    });
    this.el.stop.onclick = () => this.stop();
    this.el.undo.onclick = () => this.undo(this.current);
    this.el.autoApply.onchange = () => this.saveSettings({ auto_apply: this.el.autoApply.checked });
    this.el.autoRun.onchange = () => this.saveSettings({ auto_run: this.el.autoRun.checked });
    this.setMode(localStorage.getItem("vibecode.assistantMode") === "agent" ? "agent" : "chat", { remember: false, focus: false });
  }

  // --- the Chat / Agent switch (a tab list: arrows move between the two) --------------------------
  get mode() { return this.el.pane.hidden ? "chat" : "agent"; }

  setMode(mode, { remember = true, focus = true } = {}) {
    const agent = mode === "agent";
    this.el.pane.hidden = !agent;
    this.el.chat.hidden = agent;
    this.el.clear.hidden = agent;
    this.el.panel.dataset.mode = mode;
    for (const tab of this.el.tabs) {
      const selected = tab.dataset.mode === mode;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
    }
    if (remember) localStorage.setItem("vibecode.assistantMode", mode);
    if (agent) for (const entry of this.allSteps()) entry.diff?.layout();
    if (focus && agent && !this.el.goal.disabled) this.el.goal.focus();
  }

  tabKey(event) {
    const keys = { ArrowLeft: -1, ArrowRight: 1, Home: "first", End: "last" };
    if (!(event.key in keys)) return;
    event.preventDefault();
    const index = this.el.tabs.indexOf(event.currentTarget);
    const move = keys[event.key];
    const next = move === "first" ? 0 : move === "last" ? this.el.tabs.length - 1
      : (index + move + this.el.tabs.length) % this.el.tabs.length;
    this.setMode(this.el.tabs[next].dataset.mode, { focus: false });
    this.el.tabs[next].focus();
  }

  // --- loading ------------------------------------------------------------------------------------
  async init({ configured }) {
    this.ready = configured;
    this.el.goal.disabled = !configured;
    this.el.start.disabled = !configured;
    try {
      this.settings = await api("GET", `${this.base}/settings`);
      this.showSettings();
      const { turns } = await api("GET", `${this.base}/turns`);
      this.el.log.replaceChildren();
      const last = turns[turns.length - 1];
      this.current = last ? last.id : null;
      for (const turn of turns) this.renderTurn(turn);
      if (last && ACTIVE.has(last.status)) this.follow(last.id, last.version);
      this.showEmpty();
      this.updateToolbar();
      this.el.pane.dataset.loaded = "true";
      this.scrollDown();
    } catch (error) {
      this.showError(`Agent mode could not load: ${error.message}`);
    }
  }

  showEmpty() {
    this.el.log.querySelector(".agent-empty")?.remove();
    if (this.turns.size) return;
    this.el.log.append(el("div", { cls: "agent-empty", testid: "agent-empty" },
      el("strong", { text: "Give the agent a goal." }),
      el("p", { text: "It reads your files, proposes changes and commands, and fixes what fails. Nothing is written or run until you accept it, unless you turn on auto-apply or auto-run; Undo puts a turn's files back." })));
  }

  showSettings() {
    const { auto_apply: apply, auto_run: run, auto_allowed: allowed } = this.settings;
    this.el.autoApply.checked = apply;
    this.el.autoRun.checked = run;
    for (const [input, label, what] of [[this.el.autoApply, this.el.autoApplyLabel, "Apply the agent's file changes without asking"],
      [this.el.autoRun, this.el.autoRunLabel, "Run the agent's commands without asking"]]) {
      input.disabled = !allowed;
      label.classList.toggle("disabled", !allowed);
      label.title = allowed ? what : "Turned off on this server (VIBECODE_AGENT_ALLOW_AUTO=false): every change and command is reviewed.";
    }
  }

  async saveSettings(change) {
    try {
      this.settings = await api("PUT", `${this.base}/settings`, { json: change });
    } catch (error) {
      this.showError(error.message);
    }
    this.showSettings();
  }

  // --- a turn -------------------------------------------------------------------------------------
  async startTurn() {
    const goal = this.el.goal.value.trim();
    if (!goal || !this.ready || this.el.start.disabled) return;
    this.clearError();
    this.el.start.disabled = true;
    try {
      const turn = await api("POST", `${this.base}/turns`, { json: { goal } });
      this.el.goal.value = "";
      this.current = turn.id;
      this.renderTurn(turn);
      this.showEmpty();
      this.follow(turn.id, 0);
      this.announce("The agent started.");
      this.scrollDown();
    } catch (error) {
      const hints = {
        turn_busy: "The agent is still working on a turn here. Wait for it, or stop it.",
        assistant_not_configured: error.message,
        session_not_running: error.message,
      };
      this.showError(hints[error.code] || error.message);
    } finally {
      this.updateToolbar();
    }
  }

  // Follow a turn's events from version ``after`` on. The browser reconnects by itself after a
  // drop (sending Last-Event-ID); after ``end`` the stream is closed so that it does not.
  follow(turnId, after) {
    this.closeStream();
    const source = new EventSource(`${this.base}/turns/${turnId}/events?after=${after}`);
    this.source = source;
    source.addEventListener("step", (event) => this.onStep(turnId, JSON.parse(event.data)));
    source.addEventListener("turn", (event) => this.onTurn(JSON.parse(event.data)));
    source.addEventListener("end", () => { this.closeStream(source); this.reload(turnId); });
    source.onerror = () => {
      // CLOSED: an error answer (404, the session stopped...); the browser will not retry.
      if (source.readyState === EventSource.CLOSED && this.source === source) {
        this.closeStream(source);
        this.reload(turnId, { refollow: true });
      }
    };
  }

  closeStream(source = this.source) {
    if (!source) return;
    source.close();
    if (this.source === source) this.source = null;
  }

  // The turn as the server has it now (after its end: the summary; after a failed stream: go on).
  async reload(turnId, { refollow = false } = {}) {
    try {
      const turn = await api("GET", `${this.base}/turns/${turnId}`);
      this.renderTurn(turn);
      if (refollow && ACTIVE.has(turn.status)) setTimeout(() => { if (!this.source) this.follow(turnId, turn.version); }, 1000);
    } catch (error) {
      if (refollow) this.showError(`Lost the agent's progress: ${error.message}`);
    }
    this.updateToolbar();
  }

  onStep(turnId, step) {
    const entry = this.turns.get(turnId);
    if (!entry) return;
    this.renderStep(entry, step);
    this.updateToolbar();
  }

  onTurn(data) {
    const entry = this.turns.get(data.id);
    if (!entry) return;
    if (data.version < entry.turn.version) return;
    entry.turn = { ...entry.turn, ...data };
    this.renderTurnState(entry);
    this.updateToolbar();
  }

  renderTurn(turn) {
    let entry = this.turns.get(turn.id);
    if (!entry) {
      const node = el("section", { cls: "agent-turn", testid: "agent-turn", attrs: { "aria-label": `Agent turn: ${turn.goal}` } });
      node.dataset.turn = String(turn.id);
      const goal = el("div", { cls: "agent-goal", testid: "agent-goal-text" }, el("span", { cls: "agent-goal-mark", text: "◆", attrs: { "aria-hidden": "true" } }), el("span", { text: turn.goal }));
      const steps = el("div", { cls: "agent-steps" });
      const foot = el("div", { cls: "agent-turn-foot" });
      node.append(goal, steps, foot);
      this.el.log.append(node);
      entry = { turn, node, stepsNode: steps, foot, steps: new Map() };
      this.turns.set(turn.id, entry);
    } else if (turn.version >= entry.turn.version) {
      entry.turn = { ...entry.turn, ...turn };
    }
    for (const step of turn.steps || []) this.renderStep(entry, step);
    this.renderTurnState(entry);
    return entry;
  }

  renderTurnState(entry) {
    const { turn, node, foot } = entry;
    node.dataset.status = turn.status;
    const status = el("div", { cls: "agent-turn-status", testid: "agent-turn-status" });
    status.dataset.status = turn.status;
    const label = TURN_LABEL[turn.status] || turn.status;
    status.append(el("span", { cls: "agent-dot", attrs: { "aria-hidden": "true" } }), el("span", { text: label }));
    if (turn.steps_used) status.append(el("span", { cls: "muted", text: ` · ${turn.steps_used} model step${turn.steps_used === 1 ? "" : "s"}` }));
    const parts = [status];
    // The final summary (the model's last words): markdown, shown once, at the foot.
    const done = !ACTIVE.has(turn.status);
    for (const step of entry.steps.values()) {
      step.node.hidden = done && step.step.kind === "message" && !!turn.summary && step.step.result.trim() === turn.summary.trim();
    }
    if (done && turn.summary) {
      const summary = markdownElement(turn.summary);
      summary.classList.add("agent-summary");
      summary.dataset.testid = "agent-summary";
      parts.push(summary);
    }
    if (turn.error_code && turn.error_code !== "stopped") {
      const known = TURN_ERRORS[turn.error_code];
      const text = LIMITS.has(turn.error_code) ? `${known} ${turn.error_detail || ""} Start another turn to go on.`.replace(/\s+/g, " ")
        : known || turn.error_detail || `The turn failed (${turn.error_code}).`;
      const error = el("div", { cls: turn.error_code === "no_tool_calls" ? "agent-notice" : "agent-turn-error", testid: "agent-turn-error", text });
      error.dataset.code = turn.error_code;
      parts.push(error);
    }
    const undo = entry.undo;
    if (undo) parts.push(undo);
    foot.replaceChildren(...parts);
    if (turn.status !== entry.announced) {
      entry.announced = turn.status;
      if (!ACTIVE.has(turn.status) && this.current === turn.id) this.announce(`Agent turn ${label.toLowerCase()}.`);
    }
  }

  // --- steps --------------------------------------------------------------------------------------
  renderStep(entry, step) {
    let item = entry.steps.get(step.index);
    if (item && item.step.version >= step.version) return;
    const fresh = !item;
    if (!item) {
      const node = el("div", { cls: "agent-step", testid: "agent-step" });
      node.dataset.index = String(step.index);
      node.dataset.kind = step.kind;
      // Steps arrive in version order, not index order: keep the log in index order.
      const after = [...entry.steps.values()].filter((other) => other.step.index > step.index).sort((a, b) => a.step.index - b.step.index)[0];
      if (after) entry.stepsNode.insertBefore(node, after.node);
      else entry.stepsNode.append(node);
      item = { step, node, diff: null };
      entry.steps.set(step.index, item);
    }
    const before = item.step;
    item.step = step;
    item.node.dataset.status = step.status;
    const hadFocus = item.node.contains(document.activeElement);
    if (CHANGES.has(step.kind)) this.renderChange(entry, item, before.diff !== step.diff);
    else if (step.kind === "run") this.renderRun(entry, item);
    else if (READERS.has(step.kind)) this.renderReader(item);
    else if (step.kind === "ask_user") this.renderAsk(entry, item);
    else if (step.kind === "message") this.renderMessage(item);
    else this.renderInvalid(item);
    if (step.status === "pending" && (fresh || before.status !== "pending")) {
      this.announce(this.pendingText(step));
      this.focusPending(item, hadFocus);
    } else if (fresh && step.kind !== "message" && this.stepText(step)) {
      this.announce(this.stepText(step));
    }
    if (!fresh && before.status !== step.status) this.afterChange(step);
    this.scrollDown();
  }

  pendingText(step) {
    if (CHANGES.has(step.kind)) return `The agent wants to ${step.kind === "write_file" ? "write" : "edit"} ${step.path}: accept or reject.`;
    if (step.kind === "run") return `The agent wants to run ${(step.command || []).join(" ")}: run or skip.`;
    return `The agent asks: ${(step.arguments || {}).question || ""}`;
  }

  stepText(step) {
    if (READERS.has(step.kind)) return `${readerLine(step)}.`;
    if (CHANGES.has(step.kind)) return `The agent prepares a change to ${step.path || (step.arguments || {}).path || "a file"}.`;
    if (step.kind === "run") return "The agent prepares a command.";
    return step.status === "failed" ? `A step failed: ${step.result}` : "";
  }

  // A step that now waits for the user takes the focus only when the focus was in the agent's
  // log (on the button just pressed, which is gone now) or nowhere: never out of the editor.
  focusPending(item, hadFocus) {
    const active = document.activeElement;
    const idle = active === document.body || active === null || (active === this.el.goal && !this.el.goal.value);
    if (!(hadFocus || idle || this.el.log.contains(active))) return;
    const target = item.node.querySelector("[data-primary]");
    if (target) target.focus({ preventScroll: false });
  }

  // What a decided step changes in the rest of the IDE: open tabs and the explorer.
  afterChange(step) {
    if (CHANGES.has(step.kind) && step.status === "applied") {
      this.fileChanged(step.path);
      this.refreshTree();
    } else if (step.kind === "run" && step.status === "ran") {
      this.refreshTree();
    }
  }

  async fileChanged(path, { deleted = false } = {}) {
    if (!this.editors.open.has(path)) return;
    if (this.editors.isDirty(path)) {
      toast(`The agent changed ${path} on disk; your unsaved edits are kept (saving will ask which to keep).`, "info", 8000);
      return;
    }
    try {
      if (deleted) this.editors.pathDeleted(path);
      else await this.editors.reload(path);
    } catch (error) {
      if (error.status === 404) this.editors.pathDeleted(path);
    }
  }

  refreshTree() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.explorer && this.explorer.refresh(), 200);
  }

  header(item, icon, title, { path = "" } = {}) {
    const { step } = item;
    const head = el("div", { cls: "agent-step-head" });
    head.append(el("span", { cls: "agent-icon", text: icon, attrs: { "aria-hidden": "true" } }));
    const name = el("span", { cls: "agent-step-title", text: title });
    if (path) name.append(" ", el("code", { text: path }));
    head.append(name, el("span", { cls: "spacer" }));
    const badge = el("span", { cls: "agent-badge", testid: "agent-step-status", text: STATUS_LABEL[step.status] || step.status });
    badge.dataset.status = step.status;
    head.append(badge);
    return head;
  }

  actions(buttons) {
    const row = el("div", { cls: "agent-actions" });
    row.append(...buttons);
    return row;
  }

  async decide(entry, item, decision, answer = "") {
    const { turn } = entry;
    for (const control of item.node.querySelectorAll(".agent-actions button, .agent-actions textarea")) control.disabled = true;
    this.clearError();
    try {
      const step = await api("POST", `${this.base}/turns/${turn.id}/steps/${item.step.index}/decision`, { json: { decision, answer } });
      this.renderStep(entry, step);
    } catch (error) {
      this.showError(error.code === "step_not_pending" ? "That step is not waiting any more (it was decided elsewhere, or the turn ended)." : error.message);
      this.reload(turn.id);
    }
  }

  renderChange(entry, item, rebuild) {
    const { step } = item;
    const created = step.kind === "write_file" && step.diff.startsWith("--- /dev/null");
    const verb = step.status === "running" && !step.diff ? "Preparing a change to" : created ? "Create" : "Edit";
    const parts = [this.header(item, "±", verb, { path: step.path || (step.arguments || {}).path || "" })];
    if (step.diff) {
      const counts = step.diff.split("\n").reduce((acc, line) => {
        if (line.startsWith("+") && !line.startsWith("+++")) acc.add += 1;
        else if (line.startsWith("-") && !line.startsWith("---")) acc.del += 1;
        return acc;
      }, { add: 0, del: 0 });
      parts[0].querySelector(".agent-step-title").append(" ", el("span", { cls: "agent-add", text: `+${counts.add}` }), " ", el("span", { cls: "agent-del", text: `−${counts.del}` }));
      if (!item.diffHost || rebuild) {
        this.disposeDiff(item);
        item.diffHost = el("div", { cls: "agent-diff", testid: "agent-diff" });
        // Past turns' diffs wait for a click: a long history must not make dozens of editors.
        if (this.isLive(entry) || step.status === "pending") this.mountDiff(item);
      }
      if (!item.diff) {
        const show = button("Show the diff", { cls: "btn agent-quiet agent-show-diff", testid: "agent-show-diff", onclick: () => {
          show.remove();
          this.mountDiff(item);
        } });
        item.diffHost.replaceChildren(show);
        item.diffHost.style.height = "";
      }
      parts.push(item.diffHost);
    }
    if (step.status === "pending") {
      const accept = button("Accept", { cls: "btn btn-primary", testid: "agent-accept", title: "Write this change", onclick: () => this.decide(entry, item, "accept") });
      accept.dataset.primary = "true";
      const buttons = [accept, button("Reject", { testid: "agent-reject", title: "Don't write it; the agent is told", onclick: () => this.decide(entry, item, "reject") })];
      // This change and every later one in this turn (the agent proposes them one at a time).
      buttons.push(button("Accept all", { cls: "btn agent-quiet", testid: "agent-accept-all", title: "Accept this change and the turn's next ones without asking", onclick: () => this.decide(entry, item, "accept_all") }));
      parts.push(this.actions(buttons));
    } else if (step.status === "conflict") {
      parts.push(el("div", { cls: "agent-step-error", testid: "agent-step-error", text: `Not applied: ${step.path} changed since the agent made this diff (it was edited meanwhile). The agent is told to read it again.` }));
    } else if (step.status === "failed" && step.result) {
      parts.push(el("div", { cls: "agent-step-error", testid: "agent-step-error", text: step.result }));
    }
    this.fill(item, "agent-card agent-change", parts);
  }

  // The latest turn, or one still active: its diffs are shown at once.
  isLive(entry) {
    return ACTIVE.has(entry.turn.status) || entry.turn.id === this.current;
  }

  // Monaco's diff editor, read-only, inline, as high as the change (up to a cap).
  mountDiff(item) {
    const monaco = this.editors.monaco;
    const { step } = item;
    const sides = diffSides(step.diff);
    // A first guess at the height (the lines of both sides, as the inline view shows them); the
    // editor's own content height (wrapped lines, deleted lines' zones) sets it once laid out.
    const lines = sides.original.split("\n").length + sides.modified.split("\n").length;
    const cap = DIFF_MAX_LINES * DIFF_LINE_HEIGHT;
    item.diffHost.style.height = `${Math.min(Math.max(lines, 3) * DIFF_LINE_HEIGHT, cap) + 2}px`;
    const language = languageFor(monaco, step.path);
    const host = item.diffHost;
    const options = {
      automaticLayout: true, readOnly: true, minimap: { enabled: false }, scrollBeyondLastLine: false,
      lineNumbers: "off", folding: false, glyphMargin: false, renderOverviewRuler: false,
      overviewRulerLanes: 0, fontSize: 12, lineHeight: DIFF_LINE_HEIGHT, wordWrap: "on", contextmenu: false,
      scrollbar: { alwaysConsumeMouseWheel: false, verticalScrollbarSize: 8, horizontalScrollbarSize: 8 },
      ariaLabel: `Proposed change to ${step.path}`,
    };
    const fit = (editor) => editor.onDidContentSizeChange((event) => {
      if (event.contentHeightChanged) host.style.height = `${Math.min(event.contentHeight, cap) + 2}px`;
    });
    if (!sides.original) {
      const modified = monaco.editor.createModel(sides.modified.replace(/\n$/, ""), language);
      // Nothing before (a new file): every line is added. Monaco's diff editor shows an empty
      // left side as one deleted empty line, so this is a plain read-only editor with the
      // diff's "inserted" look instead.
      const editor = monaco.editor.create(host, { ...options, model: modified, lineDecorationsWidth: 14, renderLineHighlight: "none" });
      editor.createDecorationsCollection([{
        range: modified.getFullModelRange(),
        options: { isWholeLine: true, className: "agent-inserted-line", linesDecorationsClassName: "agent-inserted-mark" },
      }]);
      fit(editor);
      item.diff = { editor, original: null, modified, layout: () => editor.layout() };
      return;
    }
    const original = monaco.editor.createModel(sides.original, language);
    const modified = monaco.editor.createModel(sides.modified, language);
    const diff = monaco.editor.createDiffEditor(host, {
      ...options, originalEditable: false, renderSideBySide: false, diffWordWrap: "on",
      renderMarginRevertIcon: false, renderIndicators: true,
    });
    diff.setModel({ original, modified });
    fit(diff.getModifiedEditor());
    item.diff = { editor: diff, original, modified, layout: () => diff.layout() };
  }

  disposeDiff(item) {
    if (!item.diff) return;
    item.diff.editor.dispose();
    item.diff.original?.dispose();
    item.diff.modified.dispose();
    item.diff = null;
  }

  renderRun(entry, item) {
    const { step } = item;
    const command = (step.command && step.command.length ? step.command : [(step.arguments || {}).command || (step.arguments || {}).path || ""]).join(" ");
    const head = this.header(item, "›_", "Run");
    const parts = [head, el("pre", { cls: "agent-command", testid: "agent-command", text: `$ ${command}` })];
    if (step.status === "pending") {
      const run = button("Run", { cls: "btn btn-primary", testid: "agent-run", title: "Run this command in the workspace", onclick: () => this.decide(entry, item, "run") });
      run.dataset.primary = "true";
      parts.push(this.actions([run, button("Skip", { testid: "agent-skip", title: "Don't run it; the agent is told", onclick: () => this.decide(entry, item, "skip") })]));
    } else if (step.status === "running" || step.status === "accepted") {
      parts.push(el("div", { cls: "agent-running muted", text: step.status === "accepted" ? "Starting…" : "Running… (Stop kills it)" }));
    } else if (step.status === "ran") {
      const code = step.exit_code;
      const exit = el("span", { cls: "agent-exit", testid: "agent-exit", text: code === null ? "no exit code" : `exit ${code}` });
      exit.dataset.ok = String(code === 0);
      head.insertBefore(exit, head.querySelector(".agent-badge"));
      // The output as the model saw it, without the "$ command" line the card already shows.
      const output = (step.result || "").replace(/^\$ [^\n]*\n/, "").replace(/\n?\[(exited with code -?\d+|timed out[^\]]*|was stopped by the user)\]\s*$/, "");
      parts.push(el("pre", { cls: "agent-output", testid: "agent-output", text: trimOutput(output) || "(no output)" }));
    } else if (step.status === "failed") {
      parts.push(el("div", { cls: "agent-step-error", testid: "agent-step-error", text: step.result || "The command could not run." }));
    }
    this.fill(item, "agent-card agent-run", parts);
  }

  renderReader(item) {
    const { step } = item;
    const details = item.node.querySelector("details") || el("details", { cls: "agent-line" });
    const open = details.open;
    const summary = el("summary", { testid: "agent-line" });
    summary.append(el("span", { cls: "agent-icon", text: step.kind === "search" ? "⌕" : step.kind === "list_files" ? "☰" : "◧", attrs: { "aria-hidden": "true" } }), el("span", { text: readerLine(step) }));
    if (step.status === "failed") summary.append(el("span", { cls: "agent-line-failed", text: " · failed" }));
    else if (step.status === "running") summary.append(el("span", { cls: "muted", text: " …" }));
    details.replaceChildren(summary, el("pre", { cls: "agent-output", text: trimOutput(step.result || "") }));
    details.open = open;
    if (!details.isConnected) item.node.replaceChildren(details);
    item.node.className = "agent-step agent-step-line";
  }

  renderAsk(entry, item) {
    const { step } = item;
    const parts = [this.header(item, "?", "The agent asks"), markdownElement((step.arguments || {}).question || "")];
    if (step.status === "pending") {
      const input = el("textarea", { cls: "agent-answer-input", testid: "agent-answer-input", attrs: { rows: "2", "aria-label": "Your answer" } });
      input.dataset.primary = "true";
      const send = button("Answer", { cls: "btn btn-primary", testid: "agent-answer", onclick: () => {
        if (!input.value.trim()) { input.focus(); return; }
        this.decide(entry, item, "answer", input.value);
      } });
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send.click(); }
      });
      const row = this.actions([input, send]);
      row.classList.add("agent-answer");
      parts.push(row);
    } else if (step.answer) {
      parts.push(el("div", { cls: "agent-answer-given", testid: "agent-answer-given", text: step.answer }));
    }
    this.fill(item, "agent-card agent-ask", parts);
  }

  renderMessage(item) {
    const text = markdownElement(item.step.result || "");
    text.classList.add("agent-message");
    item.node.replaceChildren(text);
    item.node.className = "agent-step agent-step-message";
  }

  renderInvalid(item) {
    const { step } = item;
    item.node.replaceChildren(el("div", { cls: "agent-line agent-line-failed", text: `⚠ ${step.result || "An invalid tool call."}` }));
    item.node.className = "agent-step agent-step-line";
  }

  // Replace a card's content, keeping its diff editor's host (the editor lives on inside it).
  fill(item, cls, parts) {
    item.node.className = `agent-step ${cls}`;
    item.node.replaceChildren(...parts);
  }

  allSteps() {
    return [...this.turns.values()].flatMap((entry) => [...entry.steps.values()]);
  }

  // --- Stop, Undo ---------------------------------------------------------------------------------
  updateToolbar() {
    const entry = this.current && this.turns.get(this.current);
    const active = !!entry && ACTIVE.has(entry.turn.status);
    this.el.stop.hidden = !active;
    this.el.start.disabled = active || !this.ready;
    this.el.start.textContent = active ? "Working…" : "Start";
    const changed = !!entry && [...entry.steps.values()].some((item) => CHANGES.has(item.step.kind) && item.step.status === "applied");
    this.el.undo.disabled = !entry || active || !changed || entry.turn.status === "undone";
    this.el.undo.title = entry && entry.turn.status === "undone" ? "This turn is undone already."
      : changed || active ? "Undo this turn: put back every file it changed" : "This turn changed no file.";
    this.el.pane.dataset.turnStatus = entry ? entry.turn.status : "";
  }

  async stop() {
    if (!this.current) return;
    this.el.stop.disabled = true;
    try {
      const turn = await api("POST", `${this.base}/turns/${this.current}/stop`);
      this.renderTurn(turn);
    } catch (error) {
      this.showError(error.message);
    } finally {
      this.el.stop.disabled = false;
      this.updateToolbar();
    }
  }

  async undo(turnId, { force = false } = {}) {
    const entry = turnId && this.turns.get(turnId);
    if (!entry) return;
    this.el.undo.disabled = true;
    this.clearError();
    try {
      const result = await api("POST", `${this.base}/turns/${turnId}/undo`, { json: { force } });
      for (const path of result.restored) {
        const deleted = entry.steps && [...entry.steps.values()].some((item) => item.step.path === path && item.step.diff.startsWith("--- /dev/null"));
        this.fileChanged(path, { deleted });
      }
      this.refreshTree();
      entry.undo = this.undoReport(entry, result);
      this.renderTurn(result.turn);
      this.announce(result.conflicts.length ? `${result.conflicts.length} file(s) were edited since: not restored.` : "The turn is undone.");
      if (result.conflicts.length) entry.undo.querySelector("[data-testid=agent-undo-force]")?.focus();
    } catch (error) {
      this.showError(error.message);
    } finally {
      this.updateToolbar();
    }
  }

  undoReport(entry, { restored, conflicts }) {
    const box = el("div", { cls: conflicts.length ? "agent-undo-report conflict" : "agent-undo-report", testid: "agent-undo-report" });
    if (restored.length) box.append(el("div", { text: `Restored: ${restored.join(", ")}` }));
    if (conflicts.length) {
      box.append(el("div", { testid: "agent-undo-conflicts", text: `Edited since the agent changed them, so left alone: ${conflicts.join(", ")}.` }));
      box.append(this.actions([button("Restore anyway", { cls: "btn btn-danger", testid: "agent-undo-force", title: "Overwrite those files with their content from before the turn", onclick: () => this.undo(entry.turn.id, { force: true }) })]));
    }
    return box;
  }

  // --- messages -----------------------------------------------------------------------------------
  showError(message) {
    this.el.error.textContent = message;
    this.el.error.hidden = false;
  }

  clearError() {
    this.el.error.hidden = true;
    this.el.error.textContent = "";
  }

  announce(text) {
    // Cleared first so that the same words twice are read twice.
    this.el.announce.textContent = "";
    requestAnimationFrame(() => { this.el.announce.textContent = text; });
  }

  scrollDown() {
    const log = this.el.log;
    log.scrollTop = log.scrollHeight;
  }
}
