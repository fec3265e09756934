// The IDE page: wires the explorer, editors, terminals, Run, search and the status bar.
//
// The terminal comes first. This module imports only what the terminal needs (terminals, api,
// ui, workbench); a workspace still starting shows its progress and the terminal connects the
// moment it runs. Everything else (editor, explorer, language servers, assistant, agent, search,
// Run, ports) comes by import() right after, and Monaco's loader once the prompt is drawn (or
// after PROMPT_WAIT_MS at most).

import { ApiError, api, sessionApi } from "./api.js";
import { Terminals } from "./terminals.js";
import { formatBytes, showError, toast } from "./ui.js";
import { Workbench, applyPanelHeight } from "./workbench.js";

const data = JSON.parse(document.getElementById("ide-data").textContent);
const files = sessionApi(data.sessionId);
const $ = (id) => document.getElementById(id);

// --- theme ---------------------------------------------------------------------------------------
// The page's theme is static/vibecode/theme.js's (the OS's unless the user chose); Monaco and the
// terminals follow it.
const theme = () => window.vibecodeTheme.get();

// --- status bar ----------------------------------------------------------------------------------
function setConnection(state) {
  const el = $("status-connection");
  el.textContent = `terminal: ${state}`;
  el.className = state === "connected" ? "ok" : state.startsWith("reconnecting") ? "warn" : "";
}

function setSessionStatus(status) {
  $("status-session").textContent = status;
  document.body.classList.toggle("session-stopped", status !== "running");
}

// Disk used of the workspace's quota; a warning from 90 % (saves fail once it is full).
export const DISK_WARN_SHARE = 0.9;

function showDisk(stats) {
  const el = $("status-disk");
  if (stats.disk_limit_bytes == null) {
    el.textContent = "disk: no quota";
    el.className = "";
    el.title = "This workspace was made without a disk quota.";
    return;
  }
  const share = stats.disk_bytes / stats.disk_limit_bytes;
  const full = share >= DISK_WARN_SHARE;
  el.textContent = `disk ${formatBytes(stats.disk_bytes)} / ${formatBytes(stats.disk_limit_bytes)}${full ? " · almost full" : ""}`;
  el.className = full ? "warn disk-warn" : "";
  el.dataset.share = share.toFixed(3);
  el.title = full
    ? `The workspace is ${Math.round(share * 100)}% full. Saves and writes fail once it is full: delete files to free space.`
    : "Disk used in /workspace, of its quota";
}

async function pollStats() {
  try {
    const stats = await files.stats();
    $("status-meter").textContent =
      `CPU ${stats.cpu_percent.toFixed(0)}% · ${formatBytes(stats.memory_bytes)} / ${formatBytes(stats.memory_limit_bytes)} · ${stats.pids} procs`;
    showDisk(stats);
  } catch (error) {
    $("status-meter").textContent = error instanceof ApiError && error.status === 409 ? "not running" : "–";
    $("status-disk").textContent = "";
  }
}

// --- idle banner ---------------------------------------------------------------------------------
let idleDeadline = data.idleDeadline ? new Date(data.idleDeadline) : null;
const WARN_BEFORE_MS = Math.min(10, Math.max(1, data.idleTimeoutMinutes / 4)) * 60 * 1000;

function checkIdle() {
  const banner = $("idle-banner");
  if (!idleDeadline) { banner.hidden = true; return; }
  const left = idleDeadline - Date.now();
  banner.hidden = left > WARN_BEFORE_MS;
  if (!banner.hidden) {
    const minutes = Math.max(0, Math.ceil(left / 60000));
    $("idle-text").textContent =
      `This workspace has been idle and will be suspended in about ${minutes} minute(s). Its files are kept either way.`;
  }
}

async function keepWorking() {
  try {
    const session = await files.keepalive();
    idleDeadline = session.idle_deadline ? new Date(session.idle_deadline) : null;
    checkIdle();
    toast("Thanks, the workspace stays up.", "success", 3000);
  } catch (error) {
    showError(error, "Could not extend the session.");
  }
}

// --- run -----------------------------------------------------------------------------------------
function showPanel(name) {
  for (const tab of document.querySelectorAll(".panel-tab")) tab.classList.toggle("active", tab.dataset.panel === name);
  $("panel-terminals").hidden = name !== "terminals";
  $("panel-output").hidden = name !== "output";
  $("panel-ports").hidden = name !== "ports";
  $("panel-problems").hidden = name !== "problems";
  if (name === "terminals") terminals.fitAll();
}

// The Problems panel, with the keyboard in its list (Ctrl+Shift+M, as in VS Code).
function showProblems() {
  showPanel("problems");
  const first = document.querySelector("#problems-list [data-testid=problem][tabindex='0']");
  (first || $("problems-list")).focus();
}

const RUNNERS = { py: "python3", js: "node", sh: "bash" };
// The last result shown in Output: the assistant's "Fix last error" sends it along.
export const getLastRun = () => (runPanel ? runPanel.lastRun : null);

async function runCurrent() {
  const path = editors.active;
  if (!path) { toast("Open a file to run it."); return; }
  if (editors.isDirty(path) && !(await editors.save(path))) return;
  const ext = path.split(".").pop().toLowerCase();
  if ($("run-target").value === "terminal") {
    const quoted = `'${path.replace(/'/g, "'\\''")}'`;
    const command = ext === "c" ? `gcc -O2 -o /tmp/a.out ${quoted} -lm && /tmp/a.out` : `${RUNNERS[ext] || "bash"} ${quoted}`;
    showPanel("terminals");
    terminals.activeOrNew().type(`${command}\r`);
    return;
  }
  await runPanel.start(path);
}

const stopRun = () => runPanel && runPanel.stop();

// --- search --------------------------------------------------------------------------------------
function showSideView(name) {
  for (const tab of document.querySelectorAll(".side-tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("view-explorer").hidden = name !== "explorer";
  $("view-search").hidden = name !== "search";
  if (name === "search") searchPanel.focus();
}

// --- splitter ------------------------------------------------------------------------------------
function splitter() {
  const ide = $("ide");
  const saved = localStorage.getItem("vibecode.panelHeight");
  if (saved) ide.style.setProperty("--panel-height", saved);
  $("splitter").addEventListener("pointerdown", (down) => {
    down.preventDefault();
    const move = (event) => {
      const height = Math.max(80, Math.min(window.innerHeight - 200, window.innerHeight - event.clientY - 24));
      ide.style.setProperty("--panel-height", `${height}px`);
      terminals.fitAll();
    };
    const up = () => {
      localStorage.setItem("vibecode.panelHeight", ide.style.getPropertyValue("--panel-height"));
      window.removeEventListener("pointermove", move);
      window.removeEventListener("pointerup", up);
    };
    window.addEventListener("pointermove", move);
    window.addEventListener("pointerup", up);
  });
}

// --- start ---------------------------------------------------------------------------------------
let editors;
let terminals;
let explorer;
let runPanel;
let searchPanel;
let quickOpen;
let settings;
let workbench;
let lsp;

// The editor settings' theme goes through theme.js, which Monaco and xterm follow (onChange).
function applyTheme(next) {
  window.vibecodeTheme.set(next);
}

async function revealActive() {
  if (!editors.active) { toast("Open a file to reveal it in the explorer."); return; }
  showSideView("explorer");
  await workbench.revealActive();
}

// --- a workspace that starts, or is stopped ------------------------------------------------------
const STARTING = { creating: "Starting workspace…", resuming: "Resuming workspace…" };
const PROMPT_WAIT_MS = 1500;

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

function showStartup({ status, text, error = "", resumable = false }) {
  const box = $("startup");
  box.hidden = false;
  box.dataset.status = status;
  $("startup-text").textContent = text;
  $("startup-error").textContent = error;
  $("startup-error").hidden = !error;
  $("startup-resume-form").hidden = !resumable;
  $("startup-resume").disabled = false;
}

function stoppedText(status) {
  if (status === "deleting") return "This workspace is being deleted.";
  if (status === "error") return "This workspace could not start.";
  return `This workspace is ${status}.`;
}

// Resume from this page: claimed at once (202), then the page polls it as a create.
function waitForResume() {
  return new Promise((resolve) => {
    const form = $("startup-resume-form");
    form.onsubmit = async (event) => {
      event.preventDefault();
      $("startup-resume").disabled = true;
      try {
        resolve(await api("POST", `${files.base}/resume`, { json: { wait: false } }));
      } catch (error) {
        $("startup-resume").disabled = false;
        showError(error, "Could not resume the workspace.");
      }
    };
  });
}

// Until the workspace runs: progress while it starts (polling its JSON, often at first: a warm
// start takes a fraction of a second), its reason and Resume when it failed or is suspended.
// Returns the running session.
async function untilRunning() {
  let session = { status: data.status, last_error: data.lastError, idle_deadline: data.idleDeadline };
  let polls = 0;
  for (;;) {
    setSessionStatus(session.status);
    if (session.status === "running") {
      $("startup").hidden = true;
      return { session };
    }
    if (STARTING[session.status]) {
      showStartup({ status: session.status, text: STARTING[session.status] });
      await sleep(polls < 40 ? 50 : polls < 100 ? 250 : 1000);
      polls += 1;
      try {
        session = await files.session();
      } catch (error) {
        if (error instanceof ApiError && error.status === 404) {
          showStartup({ status: "gone", text: "This workspace no longer exists." });
          return new Promise(() => {});
        }
        // A passing failure (network, restart): keep polling.
      }
    } else {
      showStartup({
        status: session.status,
        text: stoppedText(session.status),
        error: session.last_error || "",
        resumable: session.status === "suspended" || session.status === "error",
      });
      if (session.status === "deleting") return new Promise(() => {});
      session = await waitForResume();
      polls = 0;
    }
  }
}

// Resolves once the terminal shows something on the cursor's line (the shell's prompt, or the
// screen a reattach replays), or after ``ms`` at most.
function promptDrawn(terminal, ms) {
  return new Promise((resolve) => {
    if (!terminal) { resolve(); return; }
    const term = terminal.term;
    let subscription = null;
    const done = () => { clearTimeout(timer); if (subscription) subscription.dispose(); resolve(); };
    const timer = setTimeout(done, ms);
    subscription = term.onWriteParsed(() => {
      const buffer = term.buffer.active;
      const line = buffer.getLine(buffer.baseY + buffer.cursorY);
      if (line && line.translateToString(true).trim()) done();
    });
  });
}

// The workspace stopped under the page (suspended by idleness, or elsewhere): offer Resume here,
// and once it runs again, reload the page onto it.
let stopping = false;

// The IDE's buttons are wired once their modules (and Monaco) are loaded, a moment after the
// prompt: a click before that is held, and replayed then, rather than lost.
const EARLY_BUTTONS = "#sidebar button, #run-button, #assistant-toggle, .panel-tab, #new-terminal, .statusbar button";
const heldClicks = [];

function holdEarlyClick(event) {
  const target = event.target instanceof Element ? event.target.closest(EARLY_BUTTONS) : null;
  if (!target) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  if (!heldClicks.includes(target)) heldClicks.push(target);
}

document.addEventListener("click", holdEarlyClick, true);

function replayEarlyClicks() {
  document.removeEventListener("click", holdEarlyClick, true);
  for (const target of heldClicks.splice(0)) target.click();
}

async function stoppedUnderUs(status) {
  if (stopping) return; // every terminal tab says so
  stopping = true;
  setSessionStatus(status);
  data.status = status;
  data.lastError = "";
  await untilRunning();
  window.location.reload();
}

async function start() {
  const saved = data.workbench;
  splitter();
  applyPanelHeight($("ide"), saved); // the saved height wins over this browser's
  const running = untilRunning();

  // 1. The terminal, drawn now and connected the moment the workspace runs. A workspace that is
  // not running yet (or was never opened in the IDE) has no terminals to list: terminal 1 opens.
  let refreshTimer = null;
  terminals = new Terminals({
    files, sessionId: data.sessionId, host: $("panel-terminals"), tabsHost: $("terminal-tabs"),
    onState: setConnection,
    // After a command in a terminal, the files may have changed: refresh the tree shortly.
    onCommand: () => {
      clearTimeout(refreshTimer);
      refreshTimer = setTimeout(() => explorer && explorer.refresh(), 1500);
    },
    onSessionStopped: (status) => { stoppedUnderUs(status); },
    ready: running,
  });
  const wasRunning = data.status === "running";
  await terminals.restore(
    { ids: saved ? saved.terminals : [], active: saved ? saved.active_terminal : null },
    { fresh: !wasRunning || !data.workbenchSaved },
  );
  const { session } = await running;
  idleDeadline = session.idle_deadline ? new Date(session.idle_deadline) : null;

  // 2. The rest of the IDE's modules, fetched while the terminal connects.
  const modules = Promise.all([
    import("./editor.js"), import("./explorer.js"), import("./lsp.js"), import("./run.js"),
    import("./agent.js"), import("./assistant.js"), import("./ports.js"), import("./tab-keys.js"),
    import("./quickopen.js"), import("./search.js"), import("./settings.js"),
  ]);

  // 3. Monaco once the prompt is drawn: its 4 MB would otherwise compete with the terminal. So
  // does listing the terminals that other pages opened.
  await promptDrawn(terminals.active, PROMPT_WAIT_MS);
  if (wasRunning) terminals.openListed();
  const [
    { Editors, loadMonaco }, { Explorer }, { LanguageIntelligence }, { RunPanel }, { Agent }, { Assistant },
    { Ports }, { bindTabKeys }, { QuickOpen }, { SearchPanel }, { EditorSettings },
  ] = await modules;
  const monaco = await loadMonaco(data.monaco);
  editors = new Editors({
    monaco, files, host: $("editor-host"), tabsHost: $("editor-tabs"), emptyEl: $("editor-empty"),
    onCursor: (position) => { $("status-cursor").textContent = `Ln ${position.lineNumber}, Col ${position.column}`; },
    onRun: runCurrent, onStop: stopRun,
  });
  runPanel = new RunPanel({
    base: files.base, onShow: () => showPanel("output"),
    els: { summary: $("output-summary"), output: $("output-text"), stop: $("run-stop"), form: $("run-input-form"), input: $("run-input"), run: $("run-button") },
  });
  // Language servers in the sandbox (lsp.js): before any tab opens, so that it sees them all.
  lsp = new LanguageIntelligence({
    monaco, editors, files, sessionId: data.sessionId, servers: data.languageServers, statusEl: $("status-lsp"),
    problems: { list: $("problems-list"), summary: $("problems-summary"), count: $("problems-count") },
    onShowProblems: showProblems,
  });
  explorer = new Explorer({ files, host: $("tree"), editors });

  const agent = new Agent({ sessionId: data.sessionId, editors, explorer });
  const assistant = new Assistant({
    sessionId: data.sessionId, editors, lastRun: getLastRun, onLayout: () => terminals.fitAll(), agent,
  });
  assistant.init();

  const ports = new Ports({ sessionId: data.sessionId, base: files.base, host: $("panel-ports"), countEl: $("ports-count") });
  ports.onOpen = () => showPanel("ports");

  $("new-file").onclick = () => explorer.newEntry("file");
  $("new-folder").onclick = () => explorer.newEntry("directory");
  $("refresh-tree").onclick = () => explorer.refresh();
  $("download-all").onclick = () => explorer.download(".");
  $("pick-files").onclick = () => $("upload-files").click();
  $("pick-folder").onclick = () => $("upload-folder").click();
  for (const input of [$("upload-files"), $("upload-folder")]) {
    input.onchange = async () => {
      const picked = [...input.files].map((file) => ({ file, relativePath: file.webkitRelativePath || file.name }));
      input.value = "";
      if (picked.length) await explorer.upload(explorer.targetDir(), picked);
    };
  }
  $("new-terminal").onclick = () => { showPanel("terminals"); terminals.create(); };
  $("run-button").onclick = runCurrent;
  $("keep-working").onclick = keepWorking;
  window.vibecodeTheme.onChange((next) => {
    editors.setTheme(next);
    terminals.setTheme(next);
  });
  bindTabKeys(editors);
  settings = new EditorSettings({
    monaco, editors, onTheme: applyTheme, languageEl: $("status-language"), indentEl: $("status-indent"),
  });
  await settings.init();
  $("settings-open").onclick = () => settings.open();
  workbench = new Workbench({
    sessionId: data.sessionId, editors, terminals, explorer, ide: $("ide"), terminalTabs: $("terminal-tabs"),
    initial: saved,
  });
  $("reveal-active").onclick = revealActive;
  editors.editor.addAction({
    id: "vibecode.revealInExplorer", label: "Reveal in Explorer", contextMenuGroupId: "navigation",
    run: () => revealActive(),
  });
  for (const tab of document.querySelectorAll(".panel-tab")) tab.onclick = () => showPanel(tab.dataset.panel);
  for (const tab of document.querySelectorAll(".side-tab")) tab.onclick = () => showSideView(tab.dataset.view);
  searchPanel = new SearchPanel({ base: files.base, editors });
  quickOpen = new QuickOpen({ base: files.base, editors });
  // Ctrl+P before Monaco and xterm see it (capture), as VS Code does, and never the print dialog.
  window.addEventListener("keydown", (event) => {
    if ((event.ctrlKey || event.metaKey) && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "p") {
      event.preventDefault();
      event.stopPropagation();
      quickOpen.open();
    }
  }, true);
  const runTarget = localStorage.getItem("vibecode.runTarget");
  if (runTarget) $("run-target").value = runTarget;
  $("run-target").onchange = () => localStorage.setItem("vibecode.runTarget", $("run-target").value);

  window.addEventListener("keydown", (event) => {
    const mod = event.ctrlKey || event.metaKey;
    if (mod && event.key === "s") { event.preventDefault(); editors.save(); }
    else if (event.key === "F5" && event.shiftKey) { event.preventDefault(); stopRun(); }
    else if ((mod && event.key === "Enter") || event.key === "F5") { event.preventDefault(); runCurrent(); }
    else if (mod && event.shiftKey && event.key.toLowerCase() === "f") { event.preventDefault(); showSideView("search"); }
    else if (mod && event.key === "`") { event.preventDefault(); showPanel("terminals"); terminals.activeOrNew().term.focus(); }
    else if (mod && event.key === ",") { event.preventDefault(); settings.open(); }
    else if (mod && event.shiftKey && event.key.toLowerCase() === "m") { event.preventDefault(); showProblems(); }
  });

  replayEarlyClicks();
  // The workbench as it was left (in this browser or another): the tree, then the tabs.
  await workbench.load();
  await explorer.refresh();
  await workbench.restoreEditors(saved);
  await runPanel.reattach();
  workbench.watch();
  pollStats();
  setInterval(pollStats, 5000);
  ports.start();
  checkIdle();
  setInterval(checkIdle, 15000);
  editors.setTheme(theme());
  terminals.setTheme(theme());
  // The whole IDE is wired (tests and tools wait for this; the terminal was usable long before).
  document.documentElement.dataset.ide = "ready";
}

start().catch((error) => showError(error, "The IDE could not start."));
