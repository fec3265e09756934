// Language intelligence: completion, hover, signature help, go to definition, references, rename,
// formatting and diagnostics from real language servers in the sandbox, over the bridge of
// docs/lsp-protocol.md (one JSON-RPC message per WebSocket text frame).
//
// A small LSP client of our own rather than monaco-languageclient: that one needs the VS Code API
// shim (@codingame/monaco-vscode-api) and a bundler, and this page has neither (plain ES modules,
// Monaco through its AMD loader). Monaco 0.57's experimental monaco.lsp.MonacoLspClient takes a
// bare transport and syncs every model Monaco has (diff and peek models too); it has no place for
// the bridge's control frames and close codes (restart, re-open, idle, another tab), nor for
// saving a rename's files through our etags. What Monaco needs from a server fits in this file.
//
// * One connection per language (python, typescript...), opened when the first file of that
//   language opens; `initialize`, `initialized`, then didOpen for each open file of it. Full text
//   sync, debounced, and flushed before any request so that answers are about the current text.
// * Monaco providers translate Monaco's questions into LSP requests. A request that cannot be
//   answered (no server, a restart, a timeout) gives Monaco null: nothing is thrown at it.
// * Diagnostics become markers (owner "lsp") and the Problems panel, for open files and others.
// * A server that dies is started again with a growing pause, re-initialized, and given the open
//   files again; the close codes say when not to (docs/lsp-protocol.md).

import { ApiError } from "./api.js";
import { ProblemsView } from "./problems.js";
import { toast } from "./ui.js";

const ROOT = "/workspace";
const ROOT_URI = "file:///workspace";
const CHANGE_DEBOUNCE_MS = 150;
const RETRY_FIRST_MS = 500;
const RETRY_MAX_MS = 30000;
// A connection that was ready this long was a working one: its next failure starts the pauses over.
const STABLE_MS = 5000;
// Attempts in a row that never reached "ready" before the status says unavailable (it keeps trying).
const FAILURES_BEFORE_UNAVAILABLE = 3;
const REQUEST_TIMEOUT_MS = 20000;
const INITIALIZE_TIMEOUT_MS = 60000;
// The bridge and daphne refuse frames over 1 MiB (close 4413): a bigger document stays out of LSP.
export const MAX_DOCUMENT_BYTES = 900 * 1024;
// Files read into models for the peek views (references), kept for a while.
const PEEK_MODELS_KEPT = 40;
const PEEK_FILES_READ = 50;

// LSP's languageId for a file ending; otherwise Monaco's language id.
const LANGUAGE_IDS = {
  py: "python", pyi: "python",
  ts: "typescript", mts: "typescript", cts: "typescript", tsx: "typescriptreact",
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascriptreact",
};

// LSP CompletionItemKind (1-based) -> Monaco's enum member name.
const COMPLETION_KINDS = [
  null, "Text", "Method", "Function", "Constructor", "Field", "Variable", "Class", "Interface", "Module",
  "Property", "Unit", "Value", "Enum", "Keyword", "Snippet", "Color", "File", "Reference", "Folder",
  "EnumMember", "Constant", "Struct", "Event", "Operator", "TypeParameter",
];


const encoder = new TextEncoder();
const utf8Length = (text) => encoder.encode(text).length;

class Unavailable extends Error {}

// --- paths and positions -------------------------------------------------------------------------

const extensionOf = (path) => {
  const name = path.split("/").pop();
  const dot = name.lastIndexOf(".");
  return dot > 0 ? name.slice(dot + 1).toLowerCase() : "";
};

export function uriOfPath(path) {
  return `${ROOT_URI}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

// The workspace path of a file: URI, or null for a file outside /workspace (the standard library).
export function pathOfUri(uri) {
  const text = String(uri);
  if (!text.startsWith("file://")) return null;
  let path;
  try {
    path = decodeURIComponent(text.slice("file://".length).replace(/^\/\/[^/]*/, ""));
  } catch {
    return null;
  }
  // Windows-style drive letters never happen here; servers may send file:///workspace/./x.
  const parts = [];
  for (const part of path.split("/")) {
    if (!part || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  if (parts[0] !== ROOT.slice(1) || parts.length < 2) return null;
  return parts.slice(1).join("/");
}

const toLspPosition = (position) => ({ line: position.lineNumber - 1, character: position.column - 1 });

const toRange = (range) => ({
  startLineNumber: range.start.line + 1, startColumn: range.start.character + 1,
  endLineNumber: range.end.line + 1, endColumn: range.end.character + 1,
});

// Markdown for Monaco from LSP's MarkupContent, MarkedString or MarkedString[].
function toMarkdown(content) {
  if (content == null) return [];
  if (Array.isArray(content)) return content.flatMap(toMarkdown);
  if (typeof content === "string") return content ? [{ value: content }] : [];
  if (content.kind === "markdown") return content.value ? [{ value: content.value }] : [];
  if (content.kind === "plaintext") return content.value ? [{ value: escapeMarkdown(content.value) }] : [];
  if ("language" in content) return content.value ? [{ value: `\`\`\`${content.language}\n${content.value}\n\`\`\`` }] : [];
  return [];
}

const escapeMarkdown = (text) => text.replace(/[\\`*_{}[\]()#+\-.!<>|~]/g, "\\$&");

function toDocumentation(content) {
  if (content == null) return undefined;
  if (typeof content === "string") return content;
  if (content.kind === "markdown") return { value: content.value };
  return content.value;
}

// Apply LSP TextEdits to a string (positions in UTF-16 code units, as JavaScript strings count).
export function applyTextEdits(text, edits) {
  const starts = [0];
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (c === "\n") starts.push(i + 1);
    else if (c === "\r") {
      if (text[i + 1] === "\n") i += 1;
      starts.push(i + 1);
    }
  }
  const offset = ({ line, character }) => {
    if (line >= starts.length) return text.length;
    const lineEnd = line + 1 < starts.length ? starts[line + 1] : text.length;
    return Math.min(starts[line] + character, lineEnd);
  };
  const sorted = edits
    .map((edit, index) => ({ start: offset(edit.range.start), end: offset(edit.range.end), text: edit.newText, index }))
    .sort((a, b) => b.start - a.start || b.index - a.index);
  let result = text;
  for (const edit of sorted) result = result.slice(0, edit.start) + edit.text + result.slice(edit.end);
  return result;
}

// Run a provider; whatever goes wrong, Monaco gets `fallback` (never an exception in the console).
async function guard(work, fallback = null) {
  try {
    const result = await work();
    return result === undefined ? fallback : result;
  } catch (error) {
    if (!(error instanceof Unavailable) && error && error.name !== "Canceled") {
      console.debug("language server request failed:", error.message || error);
    }
    return fallback;
  }
}

// --- one connection: a language server in the workspace -----------------------------------------

class Connection {
  constructor(lsp, language, label) {
    this.lsp = lsp;
    this.language = language;
    this.label = label;
    this.state = "off"; // starting | ready | restarting | error | off
    this.detail = ""; // why, a sentence for the status bar's title
    this.lastError = ""; // the bridge's {"vibecode": "error"} message on this connection
    this.dormant = null; // "idle" | "replaced" | "stopped": waits for use (or, stopped, for good)
    this.ws = null;
    this.timer = null;
    this.retries = 0;
    this.failures = 0;
    this.everReady = false;
    this.readyAt = 0;
    this.nextId = 1;
    this.pending = new Map(); // id -> {resolve, reject}
    this.capabilities = {};
    this.registrations = [];
  }

  get ready() { return this.state === "ready" && !!this.ws && this.ws.readyState === WebSocket.OPEN; }

  url() {
    const proto = window.location.protocol === "https:" ? "wss:" : "ws:";
    const params = new URLSearchParams({ session_id: this.lsp.sessionId, language: this.language });
    return `${proto}//${window.location.host}/api/vibecode/ws/lsp?${params}`;
  }

  setState(state, detail = this.detail) {
    this.state = state;
    this.detail = detail;
    this.lsp.connectionChanged(this);
  }

  // Connect unless connected, connecting, waiting to retry, or waiting for use.
  start() {
    if (this.ws || this.timer || this.dormant) return;
    this.connect();
  }

  // This tab uses the language (kind: "edit", "focus", "request"): wake a dormant connection. One
  // that another tab took over (4001) wakes on an edit or the focus only, never on a hover.
  use(kind) {
    if (!this.dormant || this.dormant === "stopped") return;
    if (this.dormant === "replaced" && kind === "request") return;
    this.dormant = null;
    this.retries = 0;
    this.failures = 0;
    this.connect();
  }

  // The status bar's click: try now, whatever the pause left.
  retryNow() {
    if (this.state === "ready" || (this.ws && this.ws.readyState === WebSocket.CONNECTING)) return;
    this.dormant = null;
    this.retries = 0;
    this.failures = 0;
    if (this.ws) { const old = this.ws; this.ws = null; old.onclose = null; old.close(1000); }
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    this.lastError = "";
    const starting = this.failures >= FAILURES_BEFORE_UNAVAILABLE ? "error" : this.everReady ? "restarting" : "starting";
    this.setState(starting);
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch (error) {
      this.closed({ code: 1006, reason: String(error) });
      return;
    }
    this.ws = ws;
    ws.onmessage = (event) => { if (this.ws === ws) this.receive(event.data); };
    ws.onclose = (event) => { if (this.ws === ws) this.closed(event); };
  }

  receive(data) {
    if (typeof data !== "string") return;
    let message;
    try { message = JSON.parse(data); } catch { console.warn(`${this.label} language server: a frame that is not JSON`); return; }
    if (!message || typeof message !== "object") return;
    if ("vibecode" in message) { this.control(message); return; }
    if (typeof message.method === "string") {
      if ("id" in message && message.id !== null) this.serverRequest(message);
      else this.lsp.notification(this, message);
      return;
    }
    const waiter = this.pending.get(message.id);
    if (!waiter) return;
    this.pending.delete(message.id);
    if (message.error) waiter.reject(new Error(message.error.message || `error ${message.error.code}`));
    else waiter.resolve(message.result === undefined ? null : message.result);
  }

  control(message) {
    if (message.vibecode === "ready") this.initialize();
    else if (message.vibecode === "error") this.lastError = String(message.message || message.code || "");
  }

  async initialize() {
    const ws = this.ws;
    let result;
    try {
      result = await this.request("initialize", this.lsp.initializeParams(), { timeout: INITIALIZE_TIMEOUT_MS });
    } catch (error) {
      // No answer: drop this connection; closed() retries as for a server that died.
      if (this.ws === ws && ws) {
        this.lastError = `It did not answer "initialize" (${error.message}).`;
        ws.close(4000);
        this.closed({ code: 4500 });
      }
      return;
    }
    if (this.ws !== ws) return;
    this.capabilities = (result && result.capabilities) || {};
    this.notify("initialized", {});
    this.everReady = true;
    this.readyAt = Date.now();
    this.failures = 0;
    this.setState("ready", "");
    this.lsp.connectionReady(this);
  }

  closed(event) {
    this.ws = null;
    for (const waiter of this.pending.values()) waiter.reject(new Unavailable("closed"));
    this.pending.clear();
    this.lsp.connectionLost(this);
    const code = event.code;
    const said = this.lastError;
    if (code === 4409 || code === 4410) {
      this.dormant = "stopped";
      this.setState("error", said || "The workspace is not running.");
      return;
    }
    if (code === 4408) {
      this.dormant = "idle";
      this.setState("off", `${said || "It was stopped after a long time without edits."} It starts again when you edit, or click here.`);
      return;
    }
    // Replaced: another tab started this language's server. Taking it back by itself would make
    // the two tabs fight; this one waits until it is used again.
    if (code === 4001) {
      this.dormant = "replaced";
      this.setState("off", `${said || "Another tab of this workspace uses it."} It comes back to this tab when you edit here, or click here.`);
      return;
    }
    if (code === 4400 || code === 4413) console.warn(`${this.label} language server: the bridge refused a frame (${code})`);
    // 4502, 4500, 1006, 4429...: start again after a pause that grows while it keeps failing.
    if (this.readyAt && Date.now() - this.readyAt >= STABLE_MS) this.retries = 0;
    this.readyAt = 0;
    this.failures += 1;
    const delay = Math.min(RETRY_FIRST_MS * 2 ** this.retries, RETRY_MAX_MS);
    this.retries += 1;
    const state = this.failures >= FAILURES_BEFORE_UNAVAILABLE ? "error" : this.everReady ? "restarting" : "starting";
    this.setState(state, said || (code === 1006 ? "The connection to it could not be made or was lost." : `It ended (${code}).`));
    this.timer = setTimeout(() => { this.timer = null; this.connect(); }, delay);
  }

  send(message) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(typeof message === "string" ? message : JSON.stringify({ jsonrpc: "2.0", ...message }));
    return true;
  }

  notify(method, params) { return this.send({ method, params }); }

  request(method, params, { token = null, timeout = REQUEST_TIMEOUT_MS } = {}) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) { reject(new Unavailable("not connected")); return; }
      if (token && token.isCancellationRequested) { reject(new Unavailable("cancelled")); return; }
      const id = this.nextId;
      this.nextId += 1;
      const frame = JSON.stringify({ jsonrpc: "2.0", id, method, params });
      if (utf8Length(frame) > MAX_DOCUMENT_BYTES) { reject(new Error("request too large")); return; }
      let subscription = null;
      const finish = () => { clearTimeout(timer); if (subscription) subscription.dispose(); };
      const timer = setTimeout(() => {
        if (!this.pending.delete(id)) return;
        finish();
        this.notify("$/cancelRequest", { id });
        reject(new Error(`${method}: no answer in ${timeout / 1000} s`));
      }, timeout);
      if (token) {
        subscription = token.onCancellationRequested(() => {
          if (!this.pending.delete(id)) return;
          finish();
          this.notify("$/cancelRequest", { id });
          reject(new Unavailable("cancelled"));
        });
      }
      this.pending.set(id, {
        resolve: (value) => { finish(); resolve(value); },
        reject: (error) => { finish(); reject(error); },
      });
      this.ws.send(frame);
    });
  }

  // Requests from the server. Those we do not implement still get an answer: a server waiting for
  // one may stop answering ours.
  serverRequest({ id, method, params }) {
    let result = null;
    let error = null;
    switch (method) {
      case "workspace/configuration":
        result = ((params && params.items) || []).map(() => null);
        break;
      case "workspace/workspaceFolders":
        result = [{ uri: ROOT_URI, name: "workspace" }];
        break;
      case "client/registerCapability":
      case "client/unregisterCapability":
      case "window/workDoneProgress/create":
      case "window/showMessageRequest":
      case "window/showDocument":
        result = null;
        break;
      case "workspace/applyEdit":
        result = { applied: false, failureReason: "This editor applies edits it asked for only." };
        break;
      default:
        error = { code: -32601, message: `${method} is not handled by this client` };
    }
    this.send(error ? { id, error } : { id, result });
  }
}

// --- the whole: documents, providers, diagnostics, status -----------------------------------------

export class LanguageIntelligence {
  // servers: the page's {language: {label, extensions}} (lsp_app.servers.language_servers_for_page).
  constructor({ monaco, editors, files, sessionId, servers, statusEl, problems, onShowProblems }) {
    this.monaco = monaco;
    this.editors = editors;
    this.files = files;
    this.sessionId = sessionId;
    this.statusEl = statusEl;
    this.onShowProblems = onShowProblems || (() => {});
    this.byExtension = new Map(); // "py" -> language
    this.labels = new Map(); // language -> label
    for (const [language, server] of Object.entries(servers || {})) {
      this.labels.set(language, server.label || language);
      for (const ext of server.extensions || []) this.byExtension.set(String(ext).replace(/^\./, "").toLowerCase(), language);
    }
    this.connections = new Map(); // language -> Connection
    this.docs = new Map(); // model -> doc {model, path, uri, languageId, conn, open, sentVersion, timer, tooBig}
    this.diagnostics = new Map(); // path -> LSP diagnostics, open files or not
    this.peekModels = [];
    this.builtinsOff = new Set(); // Monaco's own TypeScript/JavaScript features turned off
    this.problems = new ProblemsView({
      ...problems, onOpen: (path, line, column) => this.editors.openFile(path, line, column),
    });
    this.problems.schedule(this.diagnostics);
    if (!this.byExtension.size) { this.renderStatus(); return; }

    editors.events.addEventListener("open", (event) => this.track(event.detail.path, event.detail.model));
    editors.events.addEventListener("close", (event) => this.untrack(event.detail.model, { closing: true }));
    editors.events.addEventListener("save", (event) => this.saved(event.detail.path));
    editors.events.addEventListener("move", (event) => this.moved(event.detail.from, event.detail.to));
    for (const [path, entry] of editors.open) this.track(path, entry.model);
    editors.editor.onDidChangeModel(() => this.renderStatus());
    editors.editor.onDidFocusEditorText(() => this.wake("focus"));
    window.addEventListener("focus", () => this.wake("focus"));
    // Markers for files that are not open come back when a model for them is made.
    monaco.editor.onDidCreateModel((model) => {
      const path = pathOfUri(model.uri.toString());
      if (path && this.diagnostics.has(path)) this.setMarkers(model, this.diagnostics.get(path));
    });
    // Go to definition into another file: open its tab at the place.
    monaco.editor.registerEditorOpener({
      openCodeEditor: (source, resource, selectionOrPosition) => this.openLocation(source, resource, selectionOrPosition),
    });
    statusEl.onclick = () => this.statusClicked();
    // Format document: Shift+Alt+F on every platform (Monaco's own key on Linux is Ctrl+Shift+I).
    editors.editor.addCommand(monaco.KeyMod.Shift | monaco.KeyMod.Alt | monaco.KeyCode.KeyF, () => {
      const action = editors.editor.getAction("editor.action.formatDocument");
      if (action) action.run();
    });
    this.renderStatus();
  }

  initializeParams() {
    return {
      processId: null,
      clientInfo: { name: "VibeCode" },
      locale: navigator.language,
      rootPath: ROOT,
      rootUri: ROOT_URI,
      workspaceFolders: [{ uri: ROOT_URI, name: "workspace" }],
      capabilities: {
        general: { positionEncodings: ["utf-16"] },
        workspace: {
          applyEdit: false,
          workspaceEdit: { documentChanges: true, resourceOperations: [] },
          configuration: true,
          workspaceFolders: true,
          didChangeWatchedFiles: { dynamicRegistration: false },
        },
        textDocument: {
          synchronization: { dynamicRegistration: false, didSave: true, willSave: false, willSaveWaitUntil: false },
          completion: {
            contextSupport: true,
            completionItem: {
              snippetSupport: true, // Monaco inserts LSP snippets itself (InsertAsSnippet)
              commitCharactersSupport: true,
              documentationFormat: ["markdown", "plaintext"],
              deprecatedSupport: true,
              preselectSupport: true,
              tagSupport: { valueSet: [1] },
              insertReplaceSupport: true,
              labelDetailsSupport: true,
              resolveSupport: { properties: ["documentation", "detail", "additionalTextEdits"] },
            },
            completionItemKind: { valueSet: COMPLETION_KINDS.map((_, i) => i).slice(1) },
            completionList: { itemDefaults: ["editRange", "insertTextFormat", "commitCharacters"] },
          },
          hover: { contentFormat: ["markdown", "plaintext"] },
          signatureHelp: {
            contextSupport: true,
            signatureInformation: {
              documentationFormat: ["markdown", "plaintext"],
              parameterInformation: { labelOffsetSupport: true },
              activeParameterSupport: true,
            },
          },
          definition: { linkSupport: true },
          references: {},
          rename: { prepareSupport: true },
          formatting: {},
          publishDiagnostics: { relatedInformation: false, versionSupport: false, tagSupport: { valueSet: [1, 2] }, codeDescriptionSupport: true },
        },
        window: { workDoneProgress: false, showMessage: {}, showDocument: { support: false } },
      },
    };
  }

  // --- connections -------------------------------------------------------------------------------

  languageOf(path) { return this.byExtension.get(extensionOf(path)) || null; }

  connection(language) {
    let conn = this.connections.get(language);
    if (!conn) {
      conn = new Connection(this, language, this.labels.get(language) || language);
      this.connections.set(language, conn);
    }
    return conn;
  }

  wake(kind) { for (const conn of this.connections.values()) conn.use(kind); }

  connectionChanged(conn) {
    // Monaco's own TypeScript features come back while the server is unavailable.
    if (conn.state === "error") this.builtins(conn, true);
    this.renderStatus();
  }

  connectionReady(conn) {
    this.register(conn);
    this.builtins(conn, false);
    // A new server knows nothing of the old one's diagnostics for files that are not open.
    const openPaths = new Set([...this.docs.values()].filter((doc) => doc.conn === conn).map((doc) => doc.path));
    for (const [path] of this.diagnostics) {
      if (this.languageOf(path) === conn.language && !openPaths.has(path)) this.publish(path, []);
    }
    for (const doc of this.docs.values()) if (doc.conn === conn) { doc.open = false; this.openDoc(doc); }
    this.renderStatus();
  }

  connectionLost(conn) {
    for (const doc of this.docs.values()) {
      if (doc.conn === conn) { doc.open = false; clearTimeout(doc.timer); doc.timer = null; }
    }
  }

  notification(conn, { method, params }) {
    if (method === "textDocument/publishDiagnostics" && params && typeof params.uri === "string") {
      const path = pathOfUri(params.uri);
      if (path) this.publish(path, Array.isArray(params.diagnostics) ? params.diagnostics : []);
    } else if (method === "$/vibecode/exited") {
      conn.lastError = `It exited${params && params.code != null ? ` with code ${params.code}` : ""}.`;
    } else if (method === "window/showMessage" && params && params.type === 1) {
      console.warn(`${conn.label} language server: ${params.message}`);
    }
  }

  // --- documents ---------------------------------------------------------------------------------

  track(path, model) {
    const language = this.languageOf(path);
    if (!language || this.docs.has(model)) return;
    const conn = this.connection(language);
    // Monaco may not know an ending the server serves (.pyi): give it the server's other files' language.
    if (model.getLanguageId() === "plaintext") {
      const like = this.monacoLanguages(language)[0];
      if (like) this.monaco.editor.setModelLanguage(model, like);
    }
    const ext = extensionOf(path);
    const doc = {
      model, path, uri: uriOfPath(path), conn, open: false, sentVersion: 0, timer: null, tooBig: false,
      languageId: LANGUAGE_IDS[ext] || model.getLanguageId(),
    };
    doc.listener = model.onDidChangeContent(() => this.changed(doc));
    this.docs.set(model, doc);
    if (this.diagnostics.has(path)) this.setMarkers(model, this.diagnostics.get(path));
    conn.start();
    if (conn.ready) {
      this.openDoc(doc);
      this.register(conn); // a language Monaco had not seen for this server yet
    }
    this.renderStatus();
  }

  untrack(model, { closing = false } = {}) {
    const doc = this.docs.get(model);
    if (!doc) return;
    this.docs.delete(model);
    clearTimeout(doc.timer);
    doc.listener.dispose();
    if (doc.open) doc.conn.notify("textDocument/didClose", { textDocument: { uri: doc.uri } });
    doc.open = false;
    if (closing) this.monaco.editor.setModelMarkers(model, "lsp", []);
  }

  docByPath(path) {
    for (const doc of this.docs.values()) if (doc.path === path) return doc;
    return null;
  }

  // The whole frame, as it would be sent, or null when it is too big for the bridge.
  frameFor(doc, method, textDocument) {
    if (doc.model.getValueLength() > MAX_DOCUMENT_BYTES) return null;
    const text = doc.model.getValue();
    const params = method === "textDocument/didOpen"
      ? { textDocument: { ...textDocument, text } }
      : { textDocument, contentChanges: [{ text }] };
    const frame = JSON.stringify({ jsonrpc: "2.0", method, params });
    return utf8Length(frame) > MAX_DOCUMENT_BYTES ? null : frame;
  }

  openDoc(doc) {
    if (doc.open || !doc.conn.ready) return;
    const version = doc.model.getVersionId();
    const frame = this.frameFor(doc, "textDocument/didOpen", { uri: doc.uri, languageId: doc.languageId, version });
    this.setTooBig(doc, !frame);
    if (!frame) return;
    doc.conn.send(frame);
    doc.open = true;
    doc.sentVersion = version;
  }

  setTooBig(doc, tooBig) {
    if (doc.tooBig === tooBig) return;
    doc.tooBig = tooBig;
    if (tooBig) this.monaco.editor.setModelMarkers(doc.model, "lsp", []);
    this.renderStatus();
  }

  changed(doc) {
    doc.conn.use("edit");
    clearTimeout(doc.timer);
    doc.timer = setTimeout(() => this.flushDoc(doc), CHANGE_DEBOUNCE_MS);
  }

  flushDoc(doc) {
    clearTimeout(doc.timer);
    doc.timer = null;
    if (!doc.conn.ready) return;
    if (!doc.open) { this.openDoc(doc); return; } // it may fit again
    const version = doc.model.getVersionId();
    if (version === doc.sentVersion) return;
    const frame = this.frameFor(doc, "textDocument/didChange", { uri: doc.uri, version });
    if (!frame) {
      // Grown past what the bridge carries: the server forgets it until it is small again.
      doc.conn.notify("textDocument/didClose", { textDocument: { uri: doc.uri } });
      doc.open = false;
      this.setTooBig(doc, true);
      return;
    }
    doc.conn.send(frame);
    doc.sentVersion = version;
  }

  // Before a request: the server must have the text the user sees.
  flush(conn) { for (const doc of this.docs.values()) if (doc.conn === conn && doc.timer) this.flushDoc(doc); }

  saved(path) {
    const doc = this.docByPath(path);
    if (!doc) return;
    this.flushDoc(doc);
    if (!doc.open) return;
    const sync = doc.conn.capabilities.textDocumentSync;
    const save = sync && typeof sync === "object" ? sync.save : null;
    if (!save) return;
    const params = { textDocument: { uri: doc.uri } };
    if (typeof save === "object" && save.includeText) params.text = doc.model.getValue();
    doc.conn.notify("textDocument/didSave", params);
  }

  moved(from, to) {
    const doc = this.docByPath(from);
    if (this.diagnostics.has(from)) this.publish(from, []);
    if (!doc) {
      const entry = this.editors.open.get(to);
      if (entry) this.track(to, entry.model);
      return;
    }
    const model = doc.model;
    this.untrack(model);
    this.monaco.editor.setModelMarkers(model, "lsp", []);
    this.track(to, model);
  }

  // The tracked document of a model, if its server is ready and has it.
  docFor(model) {
    const doc = this.docs.get(model);
    if (!doc) return null;
    doc.conn.use("request");
    if (!doc.conn.ready) return null;
    this.flush(doc.conn);
    return doc.open ? doc : null;
  }

  // --- Monaco providers --------------------------------------------------------------------------

  // Monaco's language ids for the files a server serves (from their endings).
  monacoLanguages(language) {
    const ids = new Set();
    const known = this.monaco.languages.getLanguages();
    for (const [ext, lang] of this.byExtension) {
      if (lang !== language) continue;
      const found = known.find((item) => (item.extensions || []).some((e) => e.toLowerCase() === `.${ext}`));
      if (found) ids.add(found.id);
    }
    for (const doc of this.docs.values()) if (doc.conn.language === language) ids.add(doc.model.getLanguageId());
    ids.delete("plaintext");
    return [...ids];
  }

  // (Re-)register Monaco's providers for a server: after each initialize, since trigger characters
  // come from its capabilities, and when a file brings a language Monaco had not had for it.
  register(conn) {
    const selector = this.monacoLanguages(conn.language);
    const key = `${conn.readyAt}|${selector.join(",")}`;
    if (conn.registeredKey === key) return;
    conn.registeredKey = key;
    for (const registration of conn.registrations) registration.dispose();
    conn.registrations = [];
    if (!selector.length) return;
    const caps = conn.capabilities;
    const languages = this.monaco.languages;
    const add = (registration) => conn.registrations.push(registration);
    const position = (model, pos) => ({ textDocument: { uri: this.docs.get(model).uri }, position: toLspPosition(pos) });

    if (caps.completionProvider) {
      const resolve = !!caps.completionProvider.resolveProvider;
      add(languages.registerCompletionItemProvider(selector, {
        triggerCharacters: caps.completionProvider.triggerCharacters || [],
        provideCompletionItems: (model, pos, context, token) => guard(async () => {
          if (!this.docFor(model)) return null;
          const result = await conn.request("textDocument/completion", {
            ...position(model, pos),
            context: { triggerKind: context.triggerKind + 1, triggerCharacter: context.triggerCharacter },
          }, { token });
          return this.toCompletions(model, pos, result);
        }),
        resolveCompletionItem: resolve ? (item, token) => guard(async () => {
          if (!item.lspItem || !conn.ready) return item;
          const resolved = await conn.request("completionItem/resolve", item.lspItem, { token });
          if (!resolved) return item;
          if (resolved.documentation != null) item.documentation = toDocumentation(resolved.documentation);
          if (resolved.detail) item.detail = resolved.detail;
          if (resolved.additionalTextEdits) item.additionalTextEdits = resolved.additionalTextEdits.map((e) => ({ range: toRange(e.range), text: e.newText }));
          return item;
        }, item) : undefined,
      }));
    }
    if (caps.hoverProvider) {
      add(languages.registerHoverProvider(selector, {
        provideHover: (model, pos, token) => guard(async () => {
          if (!this.docFor(model)) return null;
          const result = await conn.request("textDocument/hover", position(model, pos), { token });
          const contents = result ? toMarkdown(result.contents).filter((part) => part.value.trim()) : [];
          if (!contents.length) return null;
          return { contents, range: result.range ? toRange(result.range) : undefined };
        }),
      }));
    }
    if (caps.signatureHelpProvider) {
      add(languages.registerSignatureHelpProvider(selector, {
        signatureHelpTriggerCharacters: caps.signatureHelpProvider.triggerCharacters || [],
        signatureHelpRetriggerCharacters: caps.signatureHelpProvider.retriggerCharacters || [],
        provideSignatureHelp: (model, pos, token, context) => guard(async () => {
          if (!this.docFor(model)) return null;
          const result = await conn.request("textDocument/signatureHelp", {
            ...position(model, pos),
            context: { triggerKind: context.triggerKind, triggerCharacter: context.triggerCharacter, isRetrigger: context.isRetrigger },
          }, { token });
          if (!result || !Array.isArray(result.signatures) || !result.signatures.length) return null;
          return {
            value: {
              signatures: result.signatures.map((signature) => ({
                label: signature.label,
                documentation: toDocumentation(signature.documentation),
                parameters: (signature.parameters || []).map((parameter) => ({
                  label: parameter.label, documentation: toDocumentation(parameter.documentation),
                })),
                activeParameter: signature.activeParameter,
              })),
              activeSignature: result.activeSignature || 0,
              activeParameter: result.activeParameter || 0,
            },
            dispose() {},
          };
        }),
      }));
    }
    if (caps.definitionProvider) {
      add(languages.registerDefinitionProvider(selector, {
        provideDefinition: (model, pos, token) => guard(async () => {
          if (!this.docFor(model)) return null;
          const result = await conn.request("textDocument/definition", position(model, pos), { token });
          const locations = this.toLocations(result, "Its definition");
          // Several answers show in a peek view, which needs models of the files they are in.
          if (locations.length > 1) return this.withModels(locations);
          return locations;
        }),
      }));
    }
    if (caps.referencesProvider) {
      add(languages.registerReferenceProvider(selector, {
        provideReferences: (model, pos, context, token) => guard(async () => {
          if (!this.docFor(model)) return null;
          const result = await conn.request("textDocument/references", {
            ...position(model, pos), context: { includeDeclaration: !!context.includeDeclaration },
          }, { token });
          return this.withModels(this.toLocations(result, "Its references"));
        }),
      }));
    }
    if (caps.renameProvider) {
      const prepare = typeof caps.renameProvider === "object" && caps.renameProvider.prepareProvider;
      add(languages.registerRenameProvider(selector, {
        provideRenameEdits: (model, pos, newName, token) => this.rename(conn, model, pos, newName, token),
        resolveRenameLocation: prepare ? (model, pos, token) => guard(async () => {
          if (!this.docFor(model)) return undefined;
          const result = await conn.request("textDocument/prepareRename", position(model, pos), { token });
          if (!result) {
            const word = model.getWordAtPosition(pos);
            const column = word ? word.startColumn : pos.column;
            return {
              range: { startLineNumber: pos.lineNumber, startColumn: column, endLineNumber: pos.lineNumber, endColumn: word ? word.endColumn : column },
              text: word ? word.word : "",
              rejectReason: "This element can't be renamed.",
            };
          }
          if (result.defaultBehavior) return undefined;
          const range = toRange(result.range || result);
          return { range, text: result.placeholder || model.getValueInRange(range) };
        }, undefined) : undefined,
      }));
    }
    if (caps.documentFormattingProvider) {
      add(languages.registerDocumentFormattingEditProvider(selector, {
        displayName: `${conn.label} language server`,
        provideDocumentFormattingEdits: (model, _options, token) => guard(async () => {
          const doc = this.docFor(model);
          if (!doc) return null;
          const { tabSize, insertSpaces } = model.getOptions();
          const edits = await conn.request("textDocument/formatting", {
            textDocument: { uri: doc.uri }, options: { tabSize, insertSpaces },
          }, { token, timeout: 30000 });
          return (edits || []).map((edit) => ({ range: toRange(edit.range), text: edit.newText }));
        }),
      }));
    }
  }

  toCompletions(model, pos, result) {
    if (!result) return null;
    const items = Array.isArray(result) ? result : result.items || [];
    const defaults = (!Array.isArray(result) && result.itemDefaults) || {};
    const word = model.getWordUntilPosition(pos);
    const around = model.getWordAtPosition(pos);
    const insert = { startLineNumber: pos.lineNumber, startColumn: word.startColumn, endLineNumber: pos.lineNumber, endColumn: pos.column };
    const replace = { ...insert, endColumn: around ? Math.max(around.endColumn, pos.column) : pos.column };
    const rangeOf = (edit) => {
      if (!edit) return { insert, replace };
      if (edit.insert && edit.replace) return { insert: toRange(edit.insert), replace: toRange(edit.replace) };
      return toRange(edit.range || edit);
    };
    const kinds = this.monaco.languages.CompletionItemKind;
    const snippet = this.monaco.languages.CompletionItemInsertTextRule.InsertAsSnippet;
    const suggestions = items.map((item) => {
      const edit = item.textEdit;
      const format = item.insertTextFormat || defaults.insertTextFormat;
      const suggestion = {
        label: item.labelDetails ? { label: item.label, detail: item.labelDetails.detail, description: item.labelDetails.description } : item.label,
        kind: kinds[COMPLETION_KINDS[item.kind] || "Text"] ?? kinds.Text,
        detail: item.detail,
        documentation: toDocumentation(item.documentation),
        sortText: item.sortText,
        filterText: item.filterText,
        preselect: item.preselect,
        insertText: edit ? edit.newText : item.insertText != null ? item.insertText : item.label,
        insertTextRules: format === 2 ? snippet : undefined,
        range: rangeOf(edit || defaults.editRange),
        commitCharacters: item.commitCharacters || defaults.commitCharacters,
        tags: item.deprecated || (item.tags || []).includes(1) ? [this.monaco.languages.CompletionItemTag.Deprecated] : undefined,
        additionalTextEdits: item.additionalTextEdits
          ? item.additionalTextEdits.map((e) => ({ range: toRange(e.range), text: e.newText }))
          : undefined,
        lspItem: item,
      };
      return suggestion;
    });
    return { suggestions, incomplete: !Array.isArray(result) && !!result.isIncomplete };
  }

  // LSP Location | Location[] | LocationLink[] -> Monaco locations, in the workspace only.
  toLocations(result, what) {
    if (!result) return [];
    const list = Array.isArray(result) ? result : [result];
    const locations = [];
    const outside = [];
    for (const item of list) {
      const uri = item.targetUri || item.uri;
      const range = item.targetSelectionRange || item.targetRange || item.range;
      if (!uri || !range) continue;
      const path = pathOfUri(uri);
      if (!path) { outside.push(uri.replace(/^file:\/\//, "")); continue; }
      const location = { uri: this.modelUri(path), range: toRange(range) };
      if (item.originSelectionRange) location.originSelectionRange = toRange(item.originSelectionRange);
      if (item.targetRange) location.targetSelectionRange = toRange(item.targetSelectionRange || item.targetRange);
      locations.push(location);
    }
    if (!locations.length && outside.length) {
      toast(`${what} ${outside.length === 1 ? "is" : "are"} outside the workspace: ${decodeURIComponent(outside[0])}${outside.length > 1 ? " …" : ""}`, "info");
    }
    return locations;
  }

  // The URI Monaco knows a workspace file by: its tab's model's (which keeps the URI it was
  // opened with when the file moves), else file:///workspace/<path>.
  modelUri(path) {
    const entry = this.editors.open.get(path);
    return entry ? entry.model.uri : this.monaco.Uri.parse(uriOfPath(path));
  }

  modelOfPath(path) {
    const entry = this.editors.open.get(path);
    return entry ? entry.model : this.monaco.editor.getModel(this.monaco.Uri.parse(uriOfPath(path)));
  }

  pathOfMonacoUri(uri) {
    for (const [path, entry] of this.editors.open) if (entry.model.uri.toString() === uri.toString()) return path;
    return pathOfUri(uri.toString());
  }

  // Peek views show other files from their models: read the ones that have none (a few).
  async withModels(locations) {
    const missing = [...new Set(locations.map((l) => l.uri.toString()))]
      .filter((uri) => !this.monaco.editor.getModel(this.monaco.Uri.parse(uri)));
    const unreadable = new Set();
    await Promise.all(missing.slice(0, PEEK_FILES_READ).map(async (uri) => {
      const parsed = this.monaco.Uri.parse(uri);
      try {
        const file = await this.files.read(pathOfUri(uri));
        if (file.encoding !== "utf-8") throw new Error("binary");
        if (!this.monaco.editor.getModel(parsed)) this.peekModels.push(this.monaco.editor.createModel(file.content, undefined, parsed));
      } catch {
        unreadable.add(uri);
      }
    }));
    for (const uri of missing.slice(PEEK_FILES_READ)) unreadable.add(uri);
    this.trimPeekModels();
    return locations.filter((l) => !unreadable.has(l.uri.toString()));
  }

  trimPeekModels() {
    this.peekModels = this.peekModels.filter((model) => !model.isDisposed());
    while (this.peekModels.length > PEEK_MODELS_KEPT) {
      const index = this.peekModels.findIndex((model) => !model.isAttachedToEditor() && !this.editors.pathOfModel(model));
      if (index < 0) break;
      const [model] = this.peekModels.splice(index, 1);
      model.dispose();
    }
  }

  // Monaco opens another file (go to definition, a peek's "open"): through the tabs.
  async openLocation(source, resource, selectionOrPosition) {
    // Within the file shown, Monaco moves by itself.
    if (source && source.getModel() && source.getModel().uri.toString() === resource.toString()) return false;
    const path = this.pathOfMonacoUri(resource);
    if (!path) return false;
    const range = selectionOrPosition && "startLineNumber" in selectionOrPosition ? selectionOrPosition : null;
    const line = range ? range.startLineNumber : selectionOrPosition ? selectionOrPosition.lineNumber : undefined;
    const column = range ? range.startColumn : selectionOrPosition ? selectionOrPosition.column : 1;
    await this.editors.openFile(path, line, column);
    if (this.editors.active !== path) return false;
    if (range) {
      this.editors.editor.setSelection(range);
      this.editors.editor.revealRangeInCenterIfOutsideViewport(range);
    }
    return true;
  }

  // --- rename: a WorkspaceEdit applied and saved through the etag path ---------------------------

  async rename(conn, model, pos, newName, token) {
    try {
      if (!this.docFor(model)) return { edits: [], rejectReason: `The ${conn.label} language server is not ready.` };
      // The open files' text as the server has it: one edited meanwhile is not touched.
      const versions = new Map([...this.editors.open].map(([path, entry]) => [path, entry.model.getVersionId()]));
      const edit = await conn.request("textDocument/rename", {
        textDocument: { uri: this.docs.get(model).uri }, position: toLspPosition(pos), newName,
      }, { token, timeout: 30000 });
      if (!edit) return { edits: [], rejectReason: "Nothing to rename here." };
      await this.applyWorkspaceEdit(edit, `Renamed to ${newName}`, versions);
      return { edits: [] };
    } catch (error) {
      return { edits: [], rejectReason: `Rename failed: ${error.message || error}` };
    }
  }

  // Open files: edited in their models (one undo step) and saved through Editors.save, so a file
  // changed on disk meanwhile gets the conflict dialog. Other files: read with their etag, edited,
  // and saved with that etag: a file changed since is reported, never overwritten.
  async applyWorkspaceEdit(edit, summary, versions = new Map()) {
    const byUri = new Map();
    const add = (uri, edits) => { if (!byUri.has(uri)) byUri.set(uri, []); byUri.get(uri).push(...(edits || [])); };
    let skipped = 0;
    if (Array.isArray(edit.documentChanges)) {
      for (const change of edit.documentChanges) {
        if (change.kind) skipped += 1; // create/rename/delete file: not asked for
        else if (change.textDocument) add(change.textDocument.uri, change.edits);
      }
    } else if (edit.changes) {
      for (const [uri, edits] of Object.entries(edit.changes)) add(uri, edits);
    }
    const changed = [];
    const conflicts = [];
    const failed = [];
    for (const [uri, edits] of byUri) {
      const path = pathOfUri(uri);
      if (!path) { failed.push(`${uri.replace(/^file:\/\//, "")} (outside the workspace)`); continue; }
      if (!edits.length) continue;
      const entry = this.editors.open.get(path);
      if (entry) {
        const model = entry.model;
        if (versions.has(path) && versions.get(path) !== model.getVersionId()) { conflicts.push(path); continue; }
        model.pushStackElement();
        model.pushEditOperations([], edits.map((e) => ({ range: toRange(e.range), text: e.newText })), () => null);
        model.pushStackElement();
        if (await this.editors.save(path)) changed.push(path);
        else failed.push(`${path} (edited, not saved)`);
        continue;
      }
      try {
        const file = await this.files.read(path);
        await this.files.save(path, applyTextEdits(file.content, edits), file.etag);
        changed.push(path);
      } catch (error) {
        if (error instanceof ApiError && error.code === "conflict") conflicts.push(path);
        else failed.push(`${path} (${error.message})`);
      }
    }
    let text = `${summary} in ${changed.length} file${changed.length === 1 ? "" : "s"}.`;
    if (conflicts.length) text += ` Changed meanwhile, not touched: ${conflicts.join(", ")}.`;
    if (failed.length) text += ` Not done: ${failed.join(", ")}.`;
    if (skipped) text += ` ${skipped} file operation(s) skipped.`;
    toast(text, conflicts.length || failed.length ? "error" : "success", conflicts.length || failed.length ? 10000 : 4000);
    return { changed, conflicts, failed };
  }

  // --- diagnostics -------------------------------------------------------------------------------

  publish(path, diagnostics) {
    if (diagnostics.length) this.diagnostics.set(path, diagnostics);
    else this.diagnostics.delete(path);
    const model = this.modelOfPath(path);
    const doc = model && this.docs.get(model);
    if (model && !(doc && doc.tooBig)) this.setMarkers(model, diagnostics);
    this.problems.schedule(this.diagnostics);
  }

  setMarkers(model, diagnostics) {
    const { MarkerSeverity, MarkerTag } = this.monaco;
    const severity = { 1: MarkerSeverity.Error, 2: MarkerSeverity.Warning, 3: MarkerSeverity.Info, 4: MarkerSeverity.Hint };
    const markers = diagnostics.filter((d) => d && d.range).map((d) => {
      let code;
      if (d.code != null) {
        const value = String(typeof d.code === "object" ? d.code.value : d.code);
        code = d.codeDescription && d.codeDescription.href ? { value, target: this.monaco.Uri.parse(d.codeDescription.href) } : value;
      }
      const tags = (d.tags || []).map((tag) => (tag === 1 ? MarkerTag.Unnecessary : tag === 2 ? MarkerTag.Deprecated : null)).filter(Boolean);
      return {
        severity: severity[d.severity] || MarkerSeverity.Error,
        message: String(d.message || ""),
        source: d.source,
        code,
        tags: tags.length ? tags : undefined,
        ...toRange(d.range),
      };
    });
    this.monaco.editor.setModelMarkers(model, "lsp", markers);
  }

  // --- Monaco's own TypeScript/JavaScript features -----------------------------------------------

  // Monaco's TypeScript worker has completion, hover, diagnostics... of its own, which would
  // duplicate (and, without the project's node_modules, contradict) the server's: off while the
  // server works, on again when it is unavailable.
  builtins(conn, on) {
    const ts = this.monaco.typescript || (this.monaco.languages && this.monaco.languages.typescript);
    if (!ts) return;
    for (const [language, defaults] of [["typescript", ts.typescriptDefaults], ["javascript", ts.javascriptDefaults]]) {
      if (!defaults || !this.monacoLanguages(conn.language).includes(language)) continue;
      if (on === !this.builtinsOff.has(language)) continue;
      if (on) this.builtinsOff.delete(language);
      else this.builtinsOff.add(language);
      if (typeof defaults.setModeConfiguration === "function") {
        defaults.setModeConfiguration({
          completionItems: on, hovers: on, documentSymbols: true, definitions: on, references: on,
          documentHighlights: true, rename: on, diagnostics: on, documentRangeFormattingEdits: on,
          signatureHelp: on, onTypeFormattingEdits: on, codeActions: on, inlayHints: on,
        });
      }
      if (!on) for (const model of this.monaco.editor.getModels()) this.monaco.editor.setModelMarkers(model, language, []);
    }
    // A validation the worker had started before still lands its markers: take those away too.
    if (this.builtinsOff.size && !this.markerWatch) {
      this.markerWatch = this.monaco.editor.onDidChangeMarkers((uris) => {
        for (const owner of this.builtinsOff) {
          for (const uri of uris) {
            const model = this.monaco.editor.getModel(uri);
            if (model && this.monaco.editor.getModelMarkers({ owner, resource: uri }).length) {
              this.monaco.editor.setModelMarkers(model, owner, []);
            }
          }
        }
      });
    }
  }

  // --- status bar --------------------------------------------------------------------------------

  activeConnection() {
    const model = this.editors.editor.getModel();
    const doc = model && this.docs.get(model);
    return { doc, conn: doc ? doc.conn : null };
  }

  renderStatus() {
    const el = this.statusEl;
    if (!el) return;
    const { doc, conn } = this.activeConnection();
    if (!conn) {
      el.hidden = true;
      el.dataset.state = "off";
      return;
    }
    const label = conn.label;
    const detail = conn.detail ? ` ${conn.detail}` : "";
    let text;
    let title;
    switch (conn.state) {
      case "ready":
        text = `${label} ✓`;
        title = `The ${label} language server runs in the workspace: completion, hover, go to definition (F12), references (Shift+F12), rename (F2), formatting (Shift+Alt+F) and the Problems panel. Click for the Problems panel.`;
        break;
      case "starting":
        text = `${label}: starting…`;
        title = `Starting the ${label} language server in the workspace.${detail}`;
        break;
      case "restarting":
        text = `${label}: restarting…`;
        title = `The ${label} language server stopped; starting it again.${detail}`;
        break;
      case "error":
        text = `${label}: unavailable`;
        title = conn.dormant === "stopped"
          ? `No ${label} language server.${detail}`
          : `The ${label} language server is unavailable.${detail} VibeCode keeps trying; click to try now. The editor works without it meanwhile.`;
        break;
      default:
        text = conn.dormant === "replaced" ? `${label}: in another tab` : `${label}: idle`;
        title = `The ${label} language server is not connected.${detail}`;
    }
    if (doc && doc.tooBig) title += ` ${doc.path} is larger than ${Math.round(MAX_DOCUMENT_BYTES / 1024)} KB: language features are off for it.`;
    el.hidden = false;
    el.textContent = text;
    el.title = title;
    el.dataset.state = conn.state;
    el.dataset.language = conn.language;
    el.classList.toggle("warn", conn.state === "error");
  }

  statusClicked() {
    const { conn } = this.activeConnection();
    if (!conn) return;
    if (conn.state === "ready") this.onShowProblems();
    else conn.retryNow();
  }
}
