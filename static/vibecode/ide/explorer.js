// The file tree: lazily loaded, with create, rename, delete, drag-and-drop moves, uploads of
// files and whole folders from the desktop, and downloads.

import { ask, confirmDialog, showError, toast } from "./ui.js";

const parentOf = (path) => (path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "");
const join = (dir, name) => (dir ? `${dir}/${name}` : name);
const INTERNAL = "application/x-vibecode-path";

export class Explorer {
  constructor({ files, host, editors }) {
    this.files = files;
    this.host = host;
    this.editors = editors;
    this.expanded = new Set([""]);
    this.selected = "";
    this.menu = null;
    host.addEventListener("dragover", (event) => this.dragOver(event, ""));
    host.addEventListener("dragleave", () => host.classList.remove("drop-target"));
    host.addEventListener("drop", (event) => this.drop(event, ""));
    host.addEventListener("contextmenu", (event) => {
      if (event.target === host) { event.preventDefault(); this.showMenu(event, "", "directory"); }
    });
    document.addEventListener("click", () => this.hideMenu());
  }

  async refresh() {
    const fresh = document.createElement("div");
    await this.renderChildren("", fresh, 0);
    this.host.replaceChildren(...fresh.childNodes);
  }

  async renderChildren(dir, container, depth) {
    let listing;
    try {
      listing = await this.files.list(dir);
    } catch (error) {
      showError(error, `Could not list ${dir || "the workspace"}.`);
      return;
    }
    for (const entry of listing.entries) {
      if (dir === "" && entry.name === ".home") continue; // the sandbox user's home: installs live there
      container.append(await this.renderNode(entry, depth));
    }
  }

  async renderNode(entry, depth) {
    const node = document.createElement("div");
    node.className = `node node-${entry.type}`;
    node.dataset.path = entry.path;
    node.dataset.type = entry.type;
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.testid = "tree-row";
    row.style.paddingLeft = `${8 + depth * 14}px`;
    row.draggable = true;
    row.title = entry.path;
    const twisty = document.createElement("span");
    twisty.className = "twisty";
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.name;
    row.append(twisty, name);
    node.append(row);
    const children = document.createElement("div");
    children.className = "children";
    node.append(children);
    if (entry.type === "directory") {
      twisty.textContent = this.expanded.has(entry.path) ? "▾" : "▸";
      if (this.expanded.has(entry.path)) await this.renderChildren(entry.path, children, depth + 1);
      row.addEventListener("dragover", (event) => this.dragOver(event, entry.path));
      row.addEventListener("dragleave", () => row.classList.remove("drop-target"));
      row.addEventListener("drop", (event) => this.drop(event, entry.path));
    } else {
      twisty.textContent = entry.type === "symlink" ? "↪" : "";
    }
    row.addEventListener("click", () => this.activate(node, entry, depth));
    row.addEventListener("contextmenu", (event) => {
      event.preventDefault();
      event.stopPropagation();
      this.select(entry.path);
      this.showMenu(event, entry.path, entry.type);
    });
    row.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData(INTERNAL, entry.path);
      event.dataTransfer.effectAllowed = "move";
    });
    return node;
  }

  select(path) {
    this.selected = path;
    for (const row of this.host.querySelectorAll(".row.selected")) row.classList.remove("selected");
    const node = this.nodeFor(path);
    if (node) node.querySelector(".row").classList.add("selected");
  }

  nodeFor(path) {
    return [...this.host.querySelectorAll(".node")].find((node) => node.dataset.path === path) || null;
  }

  async activate(node, entry, depth) {
    this.select(entry.path);
    if (entry.type === "directory") {
      const children = node.querySelector(".children");
      const twisty = node.querySelector(".twisty");
      if (this.expanded.has(entry.path)) {
        this.expanded.delete(entry.path);
        children.replaceChildren();
        twisty.textContent = "▸";
      } else {
        this.expanded.add(entry.path);
        twisty.textContent = "▾";
        await this.renderChildren(entry.path, children, depth + 1);
      }
    } else if (entry.type === "file") {
      await this.editors.openFile(entry.path);
    } else {
      toast(`${entry.path} is a symbolic link; VibeCode does not follow links. Open its target instead.`);
    }
  }

  targetDir() {
    const node = this.nodeFor(this.selected);
    if (!node) return "";
    return node.dataset.type === "directory" ? this.selected : parentOf(this.selected);
  }

  async newEntry(type, dir = this.targetDir()) {
    const name = await ask(type === "file" ? "New file" : "New folder", {
      placeholder: type === "file" ? "main.py" : "src", okLabel: "Create",
    });
    if (!name) return;
    const path = join(dir, name);
    try {
      await this.files.create(path, type);
    } catch (error) {
      showError(error, `Could not create ${path}.`);
      return;
    }
    this.expanded.add(dir);
    for (let p = parentOf(path); p; p = parentOf(p)) this.expanded.add(p);
    await this.refresh();
    this.select(path);
    if (type === "file") await this.editors.openFile(path);
  }

  async rename(path) {
    const name = await ask(`Rename ${path.split("/").pop()}`, { value: path.split("/").pop(), okLabel: "Rename" });
    if (!name || name === path.split("/").pop()) return;
    await this.move(path, join(parentOf(path), name));
  }

  async move(from, to) {
    try {
      await this.files.move(from, to);
    } catch (error) {
      showError(error, `Could not move ${from}.`);
      return;
    }
    this.editors.pathMoved(from, to);
    if (this.expanded.delete(from)) this.expanded.add(to);
    await this.refresh();
    this.select(to);
  }

  async remove(path) {
    const node = this.nodeFor(path);
    const what = node && node.dataset.type === "directory" ? `the folder ${path} and everything in it` : path;
    if (!(await confirmDialog("Delete?", `Permanently delete ${what}? This cannot be undone.`, "Delete", true))) return;
    try {
      await this.files.remove(path);
    } catch (error) {
      showError(error, `Could not delete ${path}.`);
      return;
    }
    this.editors.pathDeleted(path);
    await this.refresh();
  }

  download(path) {
    const link = document.createElement("a");
    link.href = this.files.downloadUrl(path || ".");
    link.download = "";
    document.body.append(link);
    link.click();
    link.remove();
  }

  // --- context menu ---------------------------------------------------------------------------

  showMenu(event, path, type) {
    this.hideMenu();
    const menu = document.createElement("div");
    menu.className = "context-menu";
    menu.dataset.testid = "context-menu";
    const dir = type === "directory" ? path : parentOf(path);
    const items = [
      ["New file…", () => this.newEntry("file", dir)],
      ["New folder…", () => this.newEntry("directory", dir)],
    ];
    if (path) {
      items.push(["Rename…", () => this.rename(path)], ["Delete…", () => this.remove(path)]);
    }
    items.push([type === "directory" ? "Download as zip" : "Download", () => this.download(path)]);
    for (const [label, action] of items) {
      const item = document.createElement("button");
      item.textContent = label;
      item.onclick = (click) => { click.stopPropagation(); this.hideMenu(); action(); };
      menu.append(item);
    }
    menu.style.left = `${event.clientX}px`;
    menu.style.top = `${event.clientY}px`;
    document.body.append(menu);
    this.menu = menu;
  }

  hideMenu() {
    if (this.menu) this.menu.remove();
    this.menu = null;
  }

  // --- drag and drop --------------------------------------------------------------------------

  dragOver(event, dir) {
    event.preventDefault();
    event.stopPropagation();
    event.dataTransfer.dropEffect = event.dataTransfer.types.includes(INTERNAL) ? "move" : "copy";
    (dir ? event.currentTarget : this.host).classList.add("drop-target");
  }

  async drop(event, dir) {
    event.preventDefault();
    event.stopPropagation();
    for (const el of document.querySelectorAll(".drop-target")) el.classList.remove("drop-target");
    const internal = event.dataTransfer.getData(INTERNAL);
    if (internal) {
      const to = join(dir, internal.split("/").pop());
      if (to !== internal && !dir.startsWith(`${internal}/`) && dir !== internal) await this.move(internal, to);
      return;
    }
    const files = await collectDropped(event.dataTransfer);
    if (files.length) await this.upload(dir, files);
  }

  async upload(dir, files, overwrite = false) {
    const form = new FormData();
    form.append("path", dir);
    if (overwrite) form.append("overwrite", "true");
    for (const { file, relativePath } of files) {
      form.append("files", file, file.name);
      form.append("relative_paths", relativePath);
    }
    const note = toast(`Uploading ${files.length} file(s)…`, "info", 0);
    try {
      await this.files.upload(form);
      toast(`Uploaded ${files.length} file(s) to ${dir || "the workspace"}.`, "success");
    } catch (error) {
      note.remove();
      if (error.code === "already_exists" && !overwrite) {
        // Nothing was written: ask before replacing anyone's files.
        const names = (error.body.existing || []).slice(0, 5).join(", ");
        const replace = await confirmDialog("Replace existing files?",
          `${error.body.existing.length} of these files exist already (${names}). Replace them with the uploaded ones?`,
          "Replace", true);
        if (replace) await this.upload(dir, files, true);
        return;
      }
      showError(error, "The upload failed.");
    } finally {
      note.remove();
    }
    this.expanded.add(dir);
    const top = files[0].relativePath.split("/")[0];
    if (files[0].relativePath.includes("/")) this.expanded.add(join(dir, top));
    await this.refresh();
  }

  // "Reveal in Explorer": expand the folders down to a file, select it and scroll it into view.
  async reveal(path) {
    for (let p = parentOf(path); p; p = parentOf(p)) this.expanded.add(p);
    await this.refresh();
    this.select(path);
    const node = this.nodeFor(path);
    if (node) node.querySelector(".row").scrollIntoView({ block: "nearest" });
  }
}

// Files dropped from the desktop, whole folders included, each with its path relative to the drop.
async function collectDropped(transfer) {
  const entries = [...(transfer.items || [])]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...transfer.files].map((file) => ({ file, relativePath: file.name }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, relativePath: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return out;
}
