// The Output panel's Run: a streaming run owned by the sandbox's helper. Output arrives as
// server-sent events while the program runs; Stop kills it; the input line feeds its stdin.
// After a reload the panel reattaches to a run still going and replays its buffered output
// (EventSource resumes from the last byte offset by itself when a connection drops).

import { api } from "./api.js";
import { formatBytes } from "./ui.js";

// Characters of output kept on screen; older output is removed from the page (the run keeps
// going, and its last MiB stays readable on the server).
const SHOWN_CHARS = 2_000_000;
// The tail of the output handed to the assistant's "Fix last error".
const LAST_RUN_CHARS = 20_000;

export class RunPanel {
  constructor({ base, els, onShow }) {
    this.base = `${base}/runs`;
    this.els = els; // {summary, output, stop, form, input, run}
    this.onShow = onShow || (() => {});
    this.current = null; // {run_id, label}
    this.source = null;
    this.starting = false;
    this.shown = 0;
    this.tail = "";
    this.lastRun = null;
    els.stop.onclick = () => this.stop();
    els.form.onsubmit = (event) => { event.preventDefault(); this.send(); };
    this.setRunning(false);
  }

  get running() { return !!this.current; }

  setRunning(running) {
    this.els.stop.hidden = !running;
    this.els.form.hidden = !running;
    this.els.run.dataset.running = running ? "true" : "false";
  }

  setSummary(text, state) {
    this.els.summary.textContent = text;
    this.els.summary.className = `output-summary ${state}`;
  }

  clear() {
    this.els.output.replaceChildren();
    this.shown = 0;
    this.tail = "";
  }

  append(text, className) {
    const out = this.els.output;
    const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 40;
    const node = document.createElement("span");
    if (className) node.className = className;
    node.textContent = text;
    out.append(node);
    this.shown += text.length;
    while (this.shown > SHOWN_CHARS && out.firstChild && out.firstChild !== node) {
      this.shown -= out.firstChild.textContent.length;
      out.firstChild.remove();
    }
    if (!className) this.tail = (this.tail + text).slice(-LAST_RUN_CHARS);
    if (atBottom) out.scrollTop = out.scrollHeight;
  }

  // Run a file (saved already by the caller). A run still going is stopped first.
  async start(path) {
    if (this.starting) return;
    this.starting = true;
    this.els.run.disabled = true;
    try {
      if (this.current) await this.stop();
      this.onShow();
      this.clear();
      this.setSummary(`Running ${path}…`, "running");
      let info;
      try {
        info = await api("POST", this.base, { json: { path } });
      } catch (error) {
        this.setSummary(`Could not run ${path}: ${error.message}`, "failed");
        return;
      }
      this.attach(info, 0);
    } finally {
      this.starting = false;
      this.els.run.disabled = false;
    }
  }

  // Read a run's output from a byte offset until it ends.
  attach(info, offset) {
    this.detach();
    this.current = { run_id: info.run_id, label: info.label };
    this.setRunning(true);
    this.setSummary(`Running ${info.label}…`, "running");
    const source = new EventSource(`${this.base}/${encodeURIComponent(info.run_id)}/events?offset=${offset}`);
    this.source = source;
    source.addEventListener("output", (event) => this.append(JSON.parse(event.data).text));
    source.addEventListener("dropped", (event) => {
      const { bytes } = JSON.parse(event.data);
      this.append(`[… ${formatBytes(bytes)} of output not shown: it came faster than it was read …]\n`, "note");
    });
    source.addEventListener("end", (event) => this.finish(JSON.parse(event.data)));
    source.addEventListener("lost", (event) => this.lose(JSON.parse(event.data).detail));
    // A dropped connection reconnects by itself (from the last offset); a refused one is final.
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED && this.source === source) this.lose("The run's output can no longer be read.");
    };
  }

  detach() {
    if (this.source) this.source.close();
    this.source = null;
  }

  finish(end) {
    const label = this.current ? this.current.label : end.label;
    this.detach();
    this.current = null;
    this.setRunning(false);
    const parts = [
      end.stopped ? "stopped" : end.timed_out ? "timed out" : `exit code ${end.exit_code}`,
      `${(end.duration_ms / 1000).toFixed(2)} s`,
      end.max_rss_kb ? `${formatBytes(end.max_rss_kb * 1024)} peak memory` : null,
      end.oom_killed ? "killed: out of memory" : null,
    ].filter(Boolean);
    this.setSummary(`${label}: ${parts.join(" · ")}`, end.exit_code === 0 ? "ok" : "failed");
    const failed = end.exit_code !== 0;
    this.lastRun = {
      path: label, stdout: failed ? "" : this.tail, stderr: failed ? this.tail : "",
      exit_code: end.exit_code, timed_out: !!end.timed_out,
    };
  }

  lose(detail) {
    const label = this.current ? this.current.label : "";
    this.detach();
    this.current = null;
    this.setRunning(false);
    this.setSummary(`${label}: ${detail}`, "failed");
  }

  async stop() {
    if (!this.current) return;
    const { run_id: runId } = this.current;
    this.els.stop.disabled = true;
    try {
      const info = await api("POST", `${this.base}/${encodeURIComponent(runId)}/stop`);
      // The stream's "end" event follows; finish now in case it was already past.
      if (this.current && this.current.run_id === runId && !info.running) this.finish(info);
    } catch (error) {
      this.setSummary(`Could not stop the run: ${error.message}`, "failed");
    } finally {
      this.els.stop.disabled = false;
    }
  }

  async send() {
    if (!this.current) return;
    const text = `${this.els.input.value}\n`;
    this.els.input.value = "";
    this.append(text, "stdin"); // echoed as a terminal would
    try {
      await api("POST", `${this.base}/${encodeURIComponent(this.current.run_id)}/input`, { json: { text } });
    } catch (error) {
      this.append(`[input not sent: ${error.message}]\n`, "note");
    }
  }

  // After a reload: reattach to the newest run still going, replaying what the helper kept.
  async reattach() {
    let listed;
    try {
      listed = await api("GET", this.base);
    } catch {
      return false;
    }
    const going = listed.runs.filter((run) => run.running);
    if (!going.length || this.current || this.starting) return false;
    const run = going[going.length - 1];
    this.clear();
    if (run.first_offset > 0) this.append(`[… ${formatBytes(run.first_offset)} of earlier output not kept …]\n`, "note");
    this.attach(run, run.first_offset);
    this.onShow();
    return true;
  }
}
