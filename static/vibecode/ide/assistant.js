// The AI assistant panel: "Explain selection", "Fix last error" and free chat about the open file.
// Answers stream in as the model writes them (fetch + a ReadableStream reader over NDJSON lines).
// Answers are markdown: marked renders it, raw HTML in it is shown as text, and DOMPurify sanitizes
// the result before it reaches the page (no scripts, no event handlers, no javascript: links, no
// images loaded from anywhere). Code blocks are built from DOM nodes and highlighted by Monaco's
// colorize. The user's own messages stay plain text.

import DOMPurify from "dompurify";
import { Marked } from "marked";

import { api } from "./api.js";
import { confirmDialog, showError, toast } from "./ui.js";

const escapeHtml = (text) => text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

const markdown = new Marked({
  gfm: true,
  breaks: true, // models write single newlines meaning line breaks
  renderer: {
    // Raw HTML in an answer is shown as the text it is, never parsed.
    html: ({ text }) => escapeHtml(text),
    // No image is fetched (from the model's choice of address): it becomes a link to open.
    image: ({ href, text }) => `<a href="${escapeHtml(href || "")}">${escapeHtml(text || href || "image")}</a>`,
  },
});

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ["img", "style", "form", "input", "button", "textarea", "select", "iframe", "svg", "math", "video", "audio", "source"],
  FORBID_ATTR: ["style", "id", "class", "srcset"],
};

// An answer's markdown (no top-level code fences: those are code blocks) as sanitized DOM.
export function markdownElement(text) {
  const div = document.createElement("div");
  div.className = "assistant-md";
  div.append(DOMPurify.sanitize(markdown.parse(text), PURIFY));
  for (const link of div.querySelectorAll("a")) {
    if (!link.getAttribute("href")) continue; // a javascript: href was removed: plain text
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  return div;
}

// Monaco's language id for a fence's info string (py, python, js, sh...); plaintext if unknown.
function languageId(monaco, lang) {
  const wanted = (lang || "").toLowerCase();
  if (!monaco || !wanted) return "plaintext";
  for (const language of monaco.languages.getLanguages()) {
    if (language.id === wanted || (language.aliases || []).some((alias) => alias.toLowerCase() === wanted)
      || (language.extensions || []).includes(`.${wanted}`)) return language.id;
  }
  const shells = { sh: "shell", bash: "shell", zsh: "shell", console: "shell" };
  return shells[wanted] || "plaintext";
}

function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

const CUT_SHORT = {
  provider_disconnected: "The answer was cut short: the model provider dropped the connection.",
  provider_timeout: "The answer was cut short: the model provider stopped answering.",
  client_disconnected: "The answer was stopped before it was complete.",
};

// Split an answer into text and fenced code blocks. An unclosed fence (still streaming) is code.
export function segments(text) {
  const parts = [];
  const lines = text.split("\n");
  let buffer = [];
  let fence = null; // {ticks, lang}
  const flush = (type, extra = {}) => {
    if (type === "code" || buffer.length) parts.push({ type, text: buffer.join("\n"), ...extra });
    buffer = [];
  };
  for (const line of lines) {
    if (fence === null) {
      const open = line.match(/^\s*(`{3,})\s*([\w+#.-]*)\s*$/);
      if (open) {
        flush("text");
        fence = { ticks: open[1].length, lang: open[2] };
      } else buffer.push(line);
    } else {
      const close = line.match(/^\s*(`{3,})\s*$/);
      if (close && close[1].length >= fence.ticks) {
        flush("code", { lang: fence.lang, closed: true });
        fence = null;
      } else buffer.push(line);
    }
  }
  if (fence !== null) flush("code", { lang: fence.lang, closed: false });
  else flush("text");
  return parts.filter((part) => part.type === "code" || part.text.trim() !== "");
}

// Text with `inline code`, built from text nodes and <code> elements.
function textElement(text) {
  const p = document.createElement("p");
  p.className = "assistant-text";
  text.replace(/^\n+|\n+$/g, "").split(/(`[^`\n]+`)/).forEach((piece, index) => {
    if (index % 2 === 1) {
      const code = document.createElement("code");
      code.textContent = piece.slice(1, -1);
      p.append(code);
    } else if (piece) p.append(document.createTextNode(piece));
  });
  return p;
}

export class Assistant {
  constructor({ sessionId, editors, lastRun, onLayout, agent }) {
    this.agent = agent || null; // agent mode (agent.js), beside this chat
    this.base = `/api/vibecode/sessions/${encodeURIComponent(sessionId)}/assistant`;
    this.editors = editors;
    this.lastRun = lastRun;
    this.onLayout = onLayout || (() => {});
    this.ready = false;
    this.busy = false;
    this.controller = null;
    const $ = (id) => document.getElementById(id);
    this.el = {
      ide: $("ide"), panel: $("assistant"), toggle: $("assistant-toggle"), close: $("assistant-close"),
      clear: $("assistant-clear"), hint: $("assistant-hint"), model: $("assistant-model"),
      explain: $("assistant-explain"), fix: $("assistant-fix"), messages: $("assistant-messages"),
      form: $("assistant-form"), input: $("assistant-input"), send: $("assistant-send"), stop: $("assistant-stop"),
    };
    this.el.toggle.onclick = () => this.setOpen(this.el.panel.hidden);
    this.el.close.onclick = () => this.setOpen(false);
    this.el.clear.onclick = () => this.clear();
    this.el.explain.onclick = () => this.explainSelection();
    this.el.fix.onclick = () => this.fixLastError();
    this.el.stop.onclick = () => this.controller && this.controller.abort();
    this.el.form.onsubmit = (event) => { event.preventDefault(); this.chat(); };
    this.el.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); this.chat(); }
    });
    this.setOpen(localStorage.getItem("vibecode.assistantOpen") === "1", { remember: false });
  }

  async init() {
    try {
      const status = await api("GET", "/api/vibecode/assistant/status");
      this.ready = status.configured;
      this.el.model.textContent = status.configured ? `${status.provider} · ${status.model}` : "";
      this.el.hint.textContent = status.hint;
      this.el.hint.hidden = status.configured;
    } catch (error) {
      this.ready = false;
      this.el.hint.textContent = `The assistant's status could not be read: ${error.message}`;
      this.el.hint.hidden = false;
    }
    this.el.panel.classList.toggle("ready", this.ready);
    for (const control of [this.el.explain, this.el.fix, this.el.input, this.el.send]) control.disabled = !this.ready;
    await Promise.all([this.load(), this.agent ? this.agent.init({ configured: this.ready }) : null]);
  }

  setOpen(open, { remember = true } = {}) {
    this.el.panel.hidden = !open;
    this.el.ide.classList.toggle("assistant-open", open);
    this.el.toggle.setAttribute("aria-expanded", String(open));
    if (remember) localStorage.setItem("vibecode.assistantOpen", open ? "1" : "0");
    this.onLayout();
    if (open && this.ready) (this.agent && this.agent.mode === "agent" ? this.agent.el.goal : this.el.input).focus();
  }

  async load() {
    try {
      const { messages } = await api("GET", `${this.base}/messages`);
      this.el.messages.replaceChildren();
      for (const message of messages) {
        const item = this.addMessage(message.role, message.content);
        if (message.incomplete) this.note(item, CUT_SHORT[message.error_code] || "This answer was cut short.");
      }
      this.showEmpty();
    } catch (error) {
      showError(error, "Could not load the conversation.");
    }
  }

  showEmpty() {
    if (this.el.messages.children.length || !this.ready) return;
    const empty = document.createElement("p");
    empty.className = "assistant-empty";
    empty.dataset.testid = "assistant-empty";
    empty.textContent = "Select code and ask for an explanation, fix the last run's error, or ask anything about your code.";
    this.el.messages.append(empty);
  }

  async clear() {
    if (!(await confirmDialog("Clear the conversation?", "The assistant forgets this session's conversation.", "Clear", true))) return;
    try {
      await api("DELETE", `${this.base}/messages`);
      this.el.messages.replaceChildren();
      this.showEmpty();
    } catch (error) {
      showError(error, "Could not clear the conversation.");
    }
  }

  // --- what the model is told about the editor --------------------------------------------------
  context() {
    const { editor, active } = this.editors;
    const model = active ? editor.getModel() : null;
    const selection = model ? editor.getSelection() : null;
    return {
      path: active || "",
      file_content: model ? model.getValue() : "",
      selection: model && selection && !selection.isEmpty() ? model.getValueInRange(selection) : "",
    };
  }

  explainSelection() {
    const context = this.context();
    if (!context.selection.trim()) { toast("Select some code in the editor first, then ask for an explanation."); return; }
    this.ask({ action: "explain", ...context });
  }

  fixLastError() {
    const run = this.lastRun();
    if (!run) { toast("Run the file first (▶ Run): there is no error to fix yet."); return; }
    if (run.exit_code === 0 && !run.timed_out && !run.stderr.trim()) { toast("The last run succeeded: there is no error to fix."); return; }
    this.ask({ action: "fix", ...this.context(), last_run: run });
  }

  chat() {
    const message = this.el.input.value.trim();
    if (!message || this.busy || !this.ready) return;
    this.el.input.value = "";
    const run = this.lastRun();
    this.ask({ action: "chat", message, ...this.context(), ...(run ? { last_run: run } : {}) });
  }

  // --- one question, its streamed answer ----------------------------------------------------------
  async ask(body) {
    if (this.busy || !this.ready) return;
    this.setBusy(true);
    this.el.messages.querySelector(".assistant-empty")?.remove();
    const question = this.addMessage("user", body.action === "chat" ? body.message : this.describe(body));
    const answer = this.addMessage("assistant", "");
    answer.dataset.state = "streaming";
    let text = "";
    let finished = false;
    let frame = 0;
    const paint = () => { frame = 0; this.renderAnswer(answer, text); this.scrollDown(); };
    this.controller = new AbortController();
    try {
      const response = await fetch(`${this.base}/chat`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/x-ndjson, application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body),
        signal: this.controller.signal,
      });
      if (!response.ok) {
        let data = null;
        try { data = await response.json(); } catch { data = null; }
        const retry = response.headers.get("Retry-After");
        const detail = (data && data.detail) || `The server answered ${response.status}.`;
        throw new Error(response.status === 429 && retry ? `${detail} (retry in ${retry} s)` : detail);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let pending = "";
      const handle = (line) => {
        if (!line.trim()) return;
        const event = JSON.parse(line);
        if (event.type === "delta") {
          text += event.text;
          if (!frame) frame = requestAnimationFrame(paint);
        } else if (event.type === "done") {
          finished = true;
        } else if (event.type === "error") {
          finished = true;
          this.renderAnswer(answer, text);
          this.fail(answer, event.message || "The model provider failed.", event.code);
        }
      };
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        pending += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = pending.indexOf("\n")) >= 0) {
          handle(pending.slice(0, newline));
          pending = pending.slice(newline + 1);
        }
      }
      handle(pending + decoder.decode());
      if (!finished) this.fail(answer, "The connection to VibeCode dropped before the answer was complete.", "network");
    } catch (error) {
      if (error.name === "AbortError") this.note(answer, "Stopped. What arrived so far is kept.");
      else if (error instanceof TypeError) this.fail(answer, "VibeCode cannot be reached. Check your connection.", "network");
      else {
        this.fail(answer, error.message, "error");
        if (!text) question.dataset.state = "failed";
      }
    } finally {
      if (frame) cancelAnimationFrame(frame);
      this.renderAnswer(answer, text);
      if (answer.dataset.state === "streaming") answer.dataset.state = "done";
      this.controller = null;
      this.setBusy(false);
      this.scrollDown();
    }
  }

  describe(body) {
    const where = body.path ? ` in ${body.path}` : "";
    if (body.action === "explain") return `Explain the selected code${where}:\n\`\`\`\n${body.selection}\n\`\`\``;
    return `Fix the error from the last run${body.last_run && body.last_run.path ? ` of ${body.last_run.path}` : where}.`;
  }

  setBusy(busy) {
    this.busy = busy;
    this.el.send.disabled = busy || !this.ready;
    this.el.explain.disabled = busy || !this.ready;
    this.el.fix.disabled = busy || !this.ready;
    this.el.stop.hidden = !busy;
  }

  scrollDown() { this.el.messages.scrollTop = this.el.messages.scrollHeight; }

  addMessage(role, content) {
    const item = document.createElement("div");
    item.className = `assistant-msg ${role}`;
    item.dataset.testid = "assistant-message";
    item.dataset.role = role;
    item.dataset.state = "done";
    const body = document.createElement("div");
    body.className = "assistant-body";
    item.append(body);
    this.el.messages.append(item);
    this.renderAnswer(item, content);
    this.scrollDown();
    return item;
  }

  // Re-rendered on every animation frame while an answer streams, so it keeps what has not
  // changed: a part's node is replaced only if its text changed, and a code block is updated in
  // place (its buttons stay the same elements, so a click during streaming is never lost).
  renderAnswer(item, text) {
    const body = item.querySelector(".assistant-body");
    const isAnswer = item.dataset.role === "assistant";
    const parts = segments(text);
    const shown = item.renderedParts || [];
    const next = [];
    parts.forEach((part, index) => {
      const old = shown[index];
      if (old && old.part.type === part.type && old.part.text === part.text && old.part.closed === part.closed
        && old.part.lang === part.lang) {
        next.push(old);
        return;
      }
      let node;
      if (part.type === "code" && old && old.part.type === "code" && old.part.lang === part.lang) {
        node = old.node;
        this.updateCode(node, part);
      } else {
        node = part.type === "code" ? this.codeBlock(part, isAnswer)
          : isAnswer ? markdownElement(part.text) : textElement(part.text);
        if (old) old.node.replaceWith(node);
        else body.append(node);
      }
      next.push({ part, node });
    });
    for (const extra of shown.slice(parts.length)) extra.node.remove();
    item.renderedParts = next;
  }

  fail(item, message, code) {
    item.dataset.state = "error";
    const error = document.createElement("div");
    error.className = "assistant-error";
    error.dataset.testid = "assistant-error";
    error.dataset.code = code || "";
    error.setAttribute("role", "alert");
    error.textContent = message;
    item.append(error);
  }

  note(item, message) {
    const note = document.createElement("div");
    note.className = "assistant-note";
    note.textContent = message;
    item.append(note);
  }

  codeBlock(part, withActions) {
    const block = document.createElement("div");
    block.className = "assistant-code";
    block.dataset.testid = "assistant-code";
    const pre = document.createElement("pre");
    const code = document.createElement("code");
    pre.append(code);
    if (withActions) {
      const bar = document.createElement("div");
      bar.className = "assistant-code-bar";
      const lang = document.createElement("span");
      lang.className = "lang";
      lang.textContent = part.lang || "code";
      bar.append(lang);
      // The actions read the block's code when clicked: it may have grown since the button was made.
      for (const [label, testid, action] of [
        ["Insert at cursor", "assistant-insert", () => this.insertAtCursor(block.codeText)],
        ["Replace selection", "assistant-replace", () => this.replaceSelection(block.codeText)],
        ["Apply to file", "assistant-apply", () => this.applyToFile(block.codeText)],
      ]) {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = label;
        button.dataset.testid = testid;
        button.onclick = action;
        bar.append(button);
      }
      block.append(bar);
    }
    block.append(pre);
    this.updateCode(block, part);
    return block;
  }

  // Plain text while the block is still streaming; Monaco's colorize once it is closed.
  updateCode(block, part) {
    const code = block.querySelector("code");
    block.codeText = part.text;
    block.dataset.lang = part.lang || "";
    code.textContent = part.text;
    delete block.dataset.highlighted;
    const monaco = this.editors && this.editors.monaco;
    if (!part.closed || !monaco || !part.text) return;
    const text = part.text;
    monaco.editor.colorize(text, languageId(monaco, part.lang), { tabSize: 4 }).then((html) => {
      if (block.codeText !== text) return; // changed since: a newer colorize is on its way
      // colorize writes spaces as no-break spaces; the <pre> keeps plain ones, and copying gives
      // back the code as it was.
      const spaced = html.replace(/&nbsp;|&#160;|\u00a0/g, " ");
      code.replaceChildren(DOMPurify.sanitize(spaced, { RETURN_DOM_FRAGMENT: true, ALLOWED_TAGS: ["span", "br"], ALLOWED_ATTR: ["class"] }));
      block.dataset.highlighted = "true";
    }, () => {});
  }

  // --- putting code into the editor ---------------------------------------------------------------
  activeEditor() {
    if (!this.editors.active) { toast("Open a file in the editor first."); return null; }
    return this.editors.editor;
  }

  edit(range, text) {
    const editor = this.editors.editor;
    editor.pushUndoStop();
    editor.executeEdits("assistant", [{ range, text, forceMoveMarkers: true }]);
    editor.pushUndoStop();
    editor.focus();
  }

  insertAtCursor(text) {
    const editor = this.activeEditor();
    if (!editor) return;
    const { lineNumber, column } = editor.getPosition();
    this.edit(new this.editors.monaco.Range(lineNumber, column, lineNumber, column), text);
  }

  replaceSelection(text) {
    const editor = this.activeEditor();
    if (!editor) return;
    const selection = editor.getSelection();
    if (!selection || selection.isEmpty()) { toast("Select the code to replace in the editor first."); return; }
    this.edit(selection, text);
  }

  // Monaco's diff view: left the file as it is, right with the code (still editable). Nothing in
  // the file changes until "Accept"; then it is one undoable edit, saved like any other change.
  applyToFile(text) {
    const path = this.editors.active;
    const entry = path && this.editors.open.get(path);
    if (!entry) { toast("Open the file to apply the code to."); return; }
    const monaco = this.editors.monaco;
    document.querySelector("[data-testid=assistant-diff]")?.remove();
    const overlay = document.createElement("div");
    overlay.className = "diff-overlay";
    overlay.dataset.testid = "assistant-diff";
    const bar = document.createElement("div");
    bar.className = "diff-bar";
    const title = document.createElement("strong");
    title.textContent = `Apply to ${path}`;
    const legend = document.createElement("span");
    legend.className = "muted";
    legend.textContent = "left: the file now · right: with the assistant's code (you can edit it)";
    const spacer = document.createElement("span");
    spacer.className = "spacer";
    bar.append(title, legend, spacer);
    const host = document.createElement("div");
    host.className = "diff-host";
    overlay.append(bar, host);
    document.querySelector(".editor-area").append(overlay);
    const language = entry.model.getLanguageId();
    const original = monaco.editor.createModel(entry.model.getValue(), language);
    const modified = monaco.editor.createModel(text.endsWith("\n") ? text : `${text}\n`, language);
    const diff = monaco.editor.createDiffEditor(host, { automaticLayout: true, originalEditable: false, readOnly: false });
    diff.setModel({ original, modified });
    const finish = (accept) => {
      if (accept && this.editors.open.get(path) === entry) {
        entry.model.pushStackElement(); // its own undo step, apart from the typing before it
        entry.model.pushEditOperations([], [{ range: entry.model.getFullModelRange(), text: modified.getValue() }], () => null);
        entry.model.pushStackElement();
        this.editors.activate(path);
        this.editors.refreshTab(path);
        toast(`Applied to ${path}. Save with Ctrl+S; undo with Ctrl+Z.`, "success", 4000);
      }
      diff.dispose();
      original.dispose();
      modified.dispose();
      overlay.remove();
      this.editors.editor.focus();
    };
    for (const [label, testid, accept, cls] of [["Accept", "assistant-diff-accept", true, "btn-primary"], ["Cancel", "assistant-diff-cancel", false, ""]]) {
      const button = document.createElement("button");
      button.className = `btn ${cls}`;
      button.textContent = label;
      button.dataset.testid = testid;
      button.onclick = () => finish(accept);
      bar.append(button);
    }
  }
}
