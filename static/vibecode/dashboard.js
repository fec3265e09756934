// The dashboard, enhanced: live CPU/memory meters, and New workspace / Resume that go straight to
// the IDE page, which shows the workspace starting and connects its terminal the moment it runs
// (the API's {"wait": false}). Without JavaScript the page still works (forms).

import { api } from "./ide/api.js";
import { formatBytes } from "./ide/ui.js";

// A meter's bar filled to ``share`` (0 to 1) and its caption.
function meterParts(share, caption) {
  const bar = document.createElement("span");
  bar.className = "meter-bar";
  const fill = document.createElement("span");
  fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  bar.append(fill);
  const text = document.createElement("span");
  text.className = "meter-text";
  text.textContent = caption;
  return [bar, text];
}

// The workspace's disk of its quota; warns from 90 % (writes fail once it is full).
const DISK_WARN_SHARE = 0.9;

function diskMeter(stats) {
  const disk = document.createElement("span");
  disk.className = "meter-disk";
  disk.dataset.testid = "disk-meter";
  if (stats.disk_limit_bytes == null) {
    disk.textContent = "Disk: no quota";
    return disk;
  }
  const share = stats.disk_bytes / stats.disk_limit_bytes;
  const [bar, text] = meterParts(
    share, `Disk ${formatBytes(stats.disk_bytes)} / ${formatBytes(stats.disk_limit_bytes)}`,
  );
  if (share >= DISK_WARN_SHARE) {
    disk.classList.add("meter-warn");
    text.textContent += " · almost full";
    disk.title = `${Math.round(share * 100)}% of the disk quota is used; writes fail once it is full.`;
  }
  disk.append(bar, text);
  return disk;
}

// Polling stops as soon as a form is sent (suspend, resume, delete): a stats request still in
// flight would otherwise come back 409 for a session that has just stopped.
const polling = new AbortController();

async function refreshMeters() {
  for (const meter of document.querySelectorAll(".meter[data-stats-url]")) {
    if (polling.signal.aborted) return;
    try {
      const stats = await api("GET", meter.dataset.statsUrl, { signal: polling.signal });
      const share = stats.memory_limit_bytes ? stats.memory_bytes / stats.memory_limit_bytes : 0;
      meter.replaceChildren();
      const [bar, text] = meterParts(
        share, `CPU ${stats.cpu_percent.toFixed(0)}% · ${formatBytes(stats.memory_bytes)}`,
      );
      meter.append(bar, text, diskMeter(stats));
    } catch (error) {
      if (error.name === "AbortError") return;
      meter.textContent = "–";
    }
  }
}

function enhanceCreate() {
  const form = document.querySelector("[data-testid=create-form]");
  const progress = document.getElementById("create-progress");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    const name = form.querySelector("input[name=name]").value.trim();
    button.disabled = true;
    progress.hidden = false;
    progress.className = "create-progress";
    progress.textContent = "Creating the workspace…";
    try {
      // 202 as soon as the workspace is claimed; quota refusals still answer here, at once.
      const session = await api("POST", "/api/vibecode/sessions", { json: { ...(name ? { name } : {}), wait: false } });
      window.location.assign(`/ide/${session.session_id}`);
    } catch (error) {
      progress.className = "create-progress error";
      progress.textContent = `Could not create the workspace. ${error.message}`;
      button.disabled = false;
    }
  });
}

// Resume: claimed at once, then the IDE page shows it resuming (or why it could not).
function enhanceResume() {
  for (const form of document.querySelectorAll("[data-testid=resume-form]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = form.querySelector("button[type=submit]");
      button.disabled = true;
      const id = form.dataset.sessionId;
      try {
        await api("POST", `/api/vibecode/sessions/${encodeURIComponent(id)}/resume`, { json: { wait: false } });
        window.location.assign(`/ide/${id}`);
      } catch (error) {
        const progress = document.getElementById("create-progress");
        progress.hidden = false;
        progress.className = "create-progress error";
        progress.textContent = `Could not resume the workspace. ${error.message}`;
        button.disabled = false;
      }
    });
  }
}

enhanceResume();
enhanceCreate();
refreshMeters();
const meters = setInterval(refreshMeters, 5000);
document.addEventListener(
  "submit",
  (event) => {
    // These stay on this page if refused.
    if (event.target.matches("[data-testid=create-form], [data-testid=resume-form]")) return;
    clearInterval(meters);
    polling.abort();
  },
  { capture: true },
);
