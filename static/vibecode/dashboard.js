// The dashboard, enhanced: live CPU/memory meters, and a create that shows its progress and
// opens the IDE when the workspace is ready. Without JavaScript the page still works (forms).

import { api } from "./ide/api.js";
import { formatBytes } from "./ide/ui.js";

async function refreshMeters() {
  for (const meter of document.querySelectorAll(".meter[data-stats-url]")) {
    try {
      const stats = await api("GET", meter.dataset.statsUrl);
      const share = stats.memory_limit_bytes ? stats.memory_bytes / stats.memory_limit_bytes : 0;
      meter.replaceChildren();
      const bar = document.createElement("span");
      bar.className = "meter-bar";
      const fill = document.createElement("span");
      fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
      bar.append(fill);
      const text = document.createElement("span");
      text.className = "meter-text";
      text.textContent = `CPU ${stats.cpu_percent.toFixed(0)}% · ${formatBytes(stats.memory_bytes)}`;
      meter.append(bar, text);
    } catch {
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
    const steps = ["Creating the workspace volume…", "Starting the container…", "Waiting until it is ready…"];
    let step = 0;
    progress.textContent = steps[0];
    const ticker = setInterval(() => { step = Math.min(step + 1, steps.length - 1); progress.textContent = steps[step]; }, 400);
    try {
      const session = await api("POST", "/api/vibecode/sessions/create", { json: name ? { name } : {} });
      progress.textContent = "Ready. Opening the IDE…";
      window.location.assign(`/ide/${session.session_id}`);
    } catch (error) {
      progress.className = "create-progress error";
      progress.textContent = `Could not create the workspace. ${error.message}`;
      button.disabled = false;
    } finally {
      clearInterval(ticker);
    }
  });
}

enhanceCreate();
refreshMeters();
setInterval(refreshMeters, 5000);
