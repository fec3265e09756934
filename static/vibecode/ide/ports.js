// The Ports panel: what the workspace listens on, live, with Public/Private, Open and a preview pane.
//
// Each port has its own origin (<port>-<session>.<preview domain>); Open and the preview pane go
// through the app's /sessions/<id>/preview/<port>/ page, which hands the owner off to that origin
// with a single-use token (the app's cookies never reach it).

import { api } from "./api.js";
import { showError, toast } from "./ui.js";

// Poll this often while the page is visible: new servers show up within seconds, and the toast
// offers to open them even while another panel is shown.
export const POLL_MS = 2500;

export class Ports {
  constructor({ sessionId, base, host, countEl }) {
    this.sessionId = sessionId;
    this.base = base;
    this.host = host;
    this.countEl = countEl;
    this.known = null; // ports seen by the last poll (null before the first)
    this.rows = [];
    this.publicPreviews = true;
    this.timer = null;
    this.busy = false;
    this.previewPort = null;
    this.build();
  }

  build() {
    this.host.replaceChildren();
    const list = document.createElement("div");
    list.className = "ports-list";
    this.message = document.createElement("p");
    this.message.className = "ports-message muted";
    this.message.dataset.testid = "ports-message";
    this.message.textContent = "Looking for listening ports…";
    this.table = document.createElement("table");
    this.table.className = "ports-table";
    this.table.dataset.testid = "ports-table";
    const head = document.createElement("thead");
    head.innerHTML = '<tr><th>Port</th><th>Process</th><th class="port-address">Address</th><th>Visibility</th>'
      + '<th><span class="visually-hidden">Actions</span></th></tr>';
    this.body = document.createElement("tbody");
    this.table.append(head, this.body);
    this.table.hidden = true;
    list.append(this.message, this.table);

    this.pane = document.createElement("div");
    this.pane.className = "preview-pane";
    this.pane.dataset.testid = "preview-pane";
    this.pane.hidden = true;
    const bar = document.createElement("form");
    bar.className = "preview-bar";
    this.reloadButton = this.iconButton("⟳", "Reload the preview", "preview-reload", () => this.load());
    this.address = document.createElement("input");
    this.address.className = "preview-address";
    this.address.dataset.testid = "preview-address";
    this.address.spellcheck = false;
    this.address.setAttribute("aria-label", "Preview address");
    this.newTab = document.createElement("a");
    this.newTab.className = "icon-btn";
    this.newTab.textContent = "↗";
    this.newTab.title = "Open the preview in a new tab";
    this.newTab.target = "_blank";
    this.newTab.rel = "noopener";
    this.newTab.dataset.testid = "preview-new-tab";
    const close = this.iconButton("×", "Close the preview", "preview-close", () => this.closePreview());
    bar.append(this.reloadButton, this.address, this.newTab, close);
    bar.onsubmit = (event) => { event.preventDefault(); this.load(this.pathFromAddress()); };
    this.frame = document.createElement("iframe");
    this.frame.className = "preview-frame";
    this.frame.dataset.testid = "preview-frame";
    this.frame.title = "Preview";
    // The page runs on its own origin; the sandbox attribute keeps it from navigating the IDE.
    this.frame.setAttribute("sandbox", "allow-scripts allow-forms allow-same-origin allow-popups allow-modals allow-downloads");
    this.pane.append(bar, this.frame);
    this.host.append(list, this.pane);
  }

  iconButton(text, title, testid, onclick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "icon-btn";
    button.textContent = text;
    button.title = title;
    button.dataset.testid = testid;
    button.onclick = onclick;
    return button;
  }

  openUrl(port, path = "/") {
    return `/sessions/${encodeURIComponent(this.sessionId)}/preview/${port}/?next=${encodeURIComponent(path)}`;
  }

  start() {
    this.poll();
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.poll();
    });
  }

  schedule() {
    clearTimeout(this.timer);
    // While the page is hidden nothing polls; becoming visible polls at once (see start()).
    if (document.visibilityState === "visible") this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  async poll() {
    if (this.busy) return;
    this.busy = true;
    try {
      const data = await api("GET", `${this.base}/ports`);
      this.publicPreviews = data.public_previews;
      this.show(data.ports, data.truncated);
      this.host.dataset.polled = String(Number(this.host.dataset.polled || 0) + 1);
    } catch (error) {
      this.message.hidden = false;
      this.message.textContent = error.status === 409
        ? "The workspace is not running."
        : `Could not list ports: ${error.message}`;
    } finally {
      this.busy = false;
      this.schedule();
    }
  }

  show(rows, truncated) {
    const fresh = this.known === null ? [] : rows.filter((row) => !this.known.has(row.port));
    this.known = new Set(rows.map((row) => row.port));
    this.rows = rows;
    this.countEl.textContent = rows.length ? String(rows.length) : "";
    this.message.hidden = rows.length > 0 && !truncated;
    this.message.textContent = rows.length
      ? "More ports are listening than are shown."
      : "Nothing listens yet. Start a server in a terminal (say, python3 -m http.server 8000) and it shows up here.";
    this.table.hidden = rows.length === 0;
    this.body.replaceChildren(...rows.map((row) => this.row(row)));
    for (const row of fresh) this.offer(row);
  }

  row(row) {
    const tr = document.createElement("tr");
    tr.dataset.testid = "port-row";
    tr.dataset.port = String(row.port);
    const cell = (text, cls) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      return td;
    };
    const process = cell(row.process || (row.pid ? `pid ${row.pid}` : "—"), "port-process");
    process.title = row.pid ? `pid ${row.pid}: ${row.process}` : "The process is not visible to the workspace user.";
    const visibility = document.createElement("td");
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = `btn btn-small port-visibility ${row.public ? "is-public" : ""}`;
    toggle.dataset.testid = "port-visibility";
    toggle.textContent = row.public ? "Public" : "Private";
    toggle.setAttribute("aria-pressed", String(row.public));
    toggle.title = row.public
      ? "Anyone with the link can open it. Click to make it private."
      : this.publicPreviews
        ? "Only you can open it. Click to make it public (anyone with the link)."
        : "Public previews are turned off on this server.";
    toggle.disabled = !row.public && !this.publicPreviews;
    toggle.onclick = () => this.setPublic(row.port, !row.public);
    visibility.append(toggle);
    const actions = document.createElement("td");
    actions.className = "port-actions";
    const open = document.createElement("a");
    open.className = "btn btn-small";
    open.textContent = "Open";
    open.href = this.openUrl(row.port);
    open.target = "_blank";
    open.rel = "noopener";
    open.title = row.url;
    open.dataset.testid = "port-open";
    const preview = document.createElement("button");
    preview.type = "button";
    preview.className = "btn btn-small";
    preview.textContent = "Preview";
    preview.dataset.testid = "port-preview";
    preview.onclick = () => this.preview(row.port);
    actions.append(open, preview);
    const port = cell(String(row.port), "port-number");
    tr.append(port, process, cell(row.address, "port-address"), visibility, actions);
    return tr;
  }

  offer(row) {
    const item = toast(`Port ${row.port} is listening${row.process ? ` (${row.process.slice(0, 60)})` : ""}.`, "info", 30000);
    item.dataset.testid = "port-toast";
    item.dataset.port = String(row.port);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-small btn-primary";
    button.textContent = "Open preview";
    button.dataset.testid = "port-toast-open";
    button.onclick = () => { item.remove(); this.onOpen?.(); this.preview(row.port); };
    item.insertBefore(button, item.lastChild);
  }

  async setPublic(port, makePublic) {
    try {
      await api("PATCH", `${this.base}/ports/${port}`, { json: { public: makePublic } });
      toast(makePublic ? `Port ${port} is public: anyone with the link can open it.` : `Port ${port} is private again.`, "success", 4000);
    } catch (error) {
      showError(error, `Could not change port ${port}.`);
    }
    clearTimeout(this.timer);
    await this.poll();
  }

  preview(port, path = "/") {
    this.previewPort = port;
    this.pane.hidden = false;
    this.host.classList.add("with-preview");
    this.onOpen?.();
    this.load(path);
  }

  originOf(port) {
    const row = this.rows.find((r) => r.port === port);
    return row ? row.url.replace(/\/$/, "") : "";
  }

  pathFromAddress() {
    const text = this.address.value.trim();
    const origin = this.originOf(this.previewPort);
    if (origin && text.startsWith(origin)) return text.slice(origin.length) || "/";
    return text.startsWith("/") ? text : "/";
  }

  load(path = "/") {
    if (this.previewPort == null) return;
    this.address.value = `${this.originOf(this.previewPort)}${path}`;
    this.newTab.href = this.openUrl(this.previewPort, path);
    this.frame.src = this.openUrl(this.previewPort, path);
  }

  closePreview() {
    this.previewPort = null;
    this.pane.hidden = true;
    this.host.classList.remove("with-preview");
    this.frame.src = "about:blank";
  }
}
