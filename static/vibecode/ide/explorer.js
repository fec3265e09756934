// The file tree: lazily loaded, with create, rename, delete, drag-and-drop moves, uploads of
// files and whole folders from the desktop, and downloads.
//
// Keyboard (WAI-ARIA tree pattern): the tree is role=tree, each entry a role=treeitem (folders hold
// a role=group), with one roving tabindex. Up/Down move, Right expands or enters, Left collapses or
// goes to the parent, Home/End, Enter opens, F2 renames, Delete deletes (after the confirmation),
// Shift+F10 or the ContextMenu key open the context menu at the item. Selection follows focus.

import { fileIcon } from "./icons.js";
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
    // Mouse menus on a row stop at the row; what gets here is a right click on the empty space, or
    // the menu the keyboard asks the browser for on the focused item.
    host.addEventListener("contextmenu", (event) => {
      event.preventDefault();
      if (this.menu) return;
      const node = event.target instanceof Element ? event.target.closest(".node") : null;
      if (node) this.menuForNode(node);
      else this.showMenu(event, "", "directory", host);
    });
    host.addEventListener("keydown", (event) => this.onKey(event));
    host.addEventListener("focusin", (event) => {
      const node = event.target instanceof Element ? event.target.closest(".node") : null;
      if (node && node.dataset.path !== this.selected) this.select(node.dataset.path);
    });
    document.addEventListener("click", () => this.hideMenu());
  }

  async refresh() {
    // A refresh rebuilds the tree: whoever had the focus in it gets it back on the same entry.
    const hadFocus = this.host.contains(document.activeElement);
    const fresh = document.createElement("div");
    await this.renderChildren("", fresh, 0);
    this.host.replaceChildren(...fresh.childNodes);
    this.select(this.selected);
    if (hadFocus && !this.host.contains(document.activeElement)) this.focusItem(this.rovingItem());
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
    node.dataset.depth = String(depth);
    node.dataset.testid = "tree-item";
    node.setAttribute("role", "treeitem");
    node.setAttribute("aria-label", entry.name);
    node.setAttribute("aria-level", String(depth + 1));
    node.setAttribute("aria-selected", "false");
    node.tabIndex = -1;
    const row = document.createElement("div");
    row.className = "row";
    row.dataset.testid = "tree-row";
    row.style.paddingLeft = `${8 + depth * 14}px`;
    row.draggable = true;
    row.title = entry.path;
    const twisty = document.createElement("span");
    twisty.className = "twisty";
    twisty.setAttribute("aria-hidden", "true");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.name;
    const open = entry.type === "directory" && this.expanded.has(entry.path);
    row.append(twisty, fileIcon(entry.name, entry.type, open), name);
    node.append(row);
    const children = document.createElement("div");
    children.className = "children";
    node.append(children);
    if (entry.type === "directory") {
      children.setAttribute("role", "group");
      node.setAttribute("aria-expanded", String(open));
      twisty.textContent = open ? "▾" : "▸";
      if (open) await this.renderChildren(entry.path, children, depth + 1);
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
      node.focus({ preventScroll: true });
      this.showMenu(event, entry.path, entry.type, node);
    });
    row.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData(INTERNAL, entry.path);
      event.dataTransfer.effectAllowed = "move";
    });
    return node;
  }

  // Selects an entry: highlighted, aria-selected, and the one stop of the roving tabindex.
  select(path) {
    this.selected = path;
    for (const row of this.host.querySelectorAll(".row.selected")) row.classList.remove("selected");
    for (const item of this.host.querySelectorAll(".node[aria-selected=true]")) item.setAttribute("aria-selected", "false");
    const node = this.nodeFor(path);
    if (node) {
      node.querySelector(".row").classList.add("selected");
      node.setAttribute("aria-selected", "true");
    }
    const roving = node || this.rovingItem();
    for (const item of this.items()) item.tabIndex = item === roving ? 0 : -1;
    // An empty tree keeps its own tab stop, so the keyboard can still reach its context menu.
    this.host.tabIndex = roving ? -1 : 0;
  }

  nodeFor(path) {
    return this.items().find((node) => node.dataset.path === path) || null;
  }

  // The visible entries, in order (collapsed folders have no children in the DOM).
  items() {
    return [...this.host.querySelectorAll(".node")];
  }

  rovingItem() {
    return this.nodeFor(this.selected) || this.items()[0] || null;
  }

  focusItem(node) {
    if (!node) { this.host.focus(); return; }
    this.select(node.dataset.path);
    // An open folder's item holds its whole subtree: scroll its own row into view, not all that.
    node.focus({ preventScroll: true });
    node.querySelector(".row").scrollIntoView({ block: "nearest" });
  }

  async setExpanded(node, open) {
    const path = node.dataset.path;
    const children = node.querySelector(".children");
    const wasOpen = this.expanded.has(path);
    if (open === wasOpen) return;
    const icon = fileIcon(path.split("/").pop(), "directory", open);
    node.querySelector(".row .file-icon").replaceWith(icon);
    node.querySelector(".twisty").textContent = open ? "▾" : "▸";
    node.setAttribute("aria-expanded", String(open));
    if (open) {
      this.expanded.add(path);
      await this.renderChildren(path, children, Number(node.dataset.depth) + 1);
      this.select(this.selected);
    } else {
      this.expanded.delete(path);
      children.replaceChildren();
    }
  }

  async activate(node, entry) {
    this.select(entry.path);
    if (entry.type === "directory") {
      await this.setExpanded(node, !this.expanded.has(entry.path));
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
    this.selected = path;
    await this.refresh();
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
    this.selected = to;
    await this.refresh();
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
    // The selection (and the keyboard's focus) moves to the entry after, or else before, this one.
    const items = this.items();
    const at = items.findIndex((item) => item.dataset.path === path);
    const inside = (item) => item.dataset.path === path || item.dataset.path.startsWith(`${path}/`);
    const next = items.slice(at + 1).find((item) => !inside(item)) || items.slice(0, Math.max(at, 0)).pop();
    if (this.selected === path || this.selected.startsWith(`${path}/`)) this.selected = next ? next.dataset.path : "";
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

  // --- keyboard -------------------------------------------------------------------------------

  onKey(event) {
    if (event.ctrlKey || event.altKey || event.metaKey) return;
    const menuKey = event.key === "ContextMenu" || (event.shiftKey && event.key === "F10");
    if (event.shiftKey && !menuKey) return;
    const node = event.target instanceof Element ? event.target.closest(".node") : null;
    const items = this.items();
    if (!node) {
      // The tree itself has the focus: it is empty, or the keyboard just came in.
      if (menuKey) this.showMenu(this.anchorOf(this.host), "", "directory", this.host);
      else if (["ArrowDown", "Home", "ArrowUp", "End"].includes(event.key) && items.length) {
        this.focusItem(event.key === "ArrowUp" || event.key === "End" ? items.at(-1) : items[0]);
      } else return;
      event.preventDefault();
      return;
    }
    const at = items.indexOf(node);
    const isDir = node.dataset.type === "directory";
    const open = isDir && this.expanded.has(node.dataset.path);
    switch (menuKey ? "menu" : event.key) {
      case "ArrowDown": this.focusItem(items[at + 1] || node); break;
      case "ArrowUp": this.focusItem(items[at - 1] || node); break;
      case "Home": this.focusItem(items[0]); break;
      case "End": this.focusItem(items.at(-1)); break;
      case "ArrowRight":
        if (isDir && !open) this.setExpanded(node, true);
        else if (open) {
          const first = node.querySelector(".children > .node");
          if (first) this.focusItem(first);
        }
        break;
      case "ArrowLeft":
        if (open) this.setExpanded(node, false);
        else {
          const parent = node.parentElement.closest(".node");
          if (parent) this.focusItem(parent);
        }
        break;
      case "Enter":
        this.activate(node, { path: node.dataset.path, type: node.dataset.type });
        break;
      case "F2": this.rename(node.dataset.path); break;
      case "Delete": this.remove(node.dataset.path); break;
      case "menu": this.menuForNode(node); break;
      default: return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  // Where a menu opened from the keyboard appears: just below the start of the item's row.
  anchorOf(element) {
    const box = (element.querySelector(".row") || element).getBoundingClientRect();
    return { clientX: Math.round(box.left + 24), clientY: Math.round(Math.min(box.bottom, window.innerHeight - 8)) };
  }

  menuForNode(node) {
    this.focusItem(node);
    this.showMenu(this.anchorOf(node), node.dataset.path, node.dataset.type, node);
  }

  // --- context menu ---------------------------------------------------------------------------

  // A role=menu of buttons. It takes the focus; arrows, Home/End move, Enter or Space choose, Esc
  // or Tab close it and give the focus back to `opener` (the tree item, or the tree).
  showMenu(event, path, type, opener = null) {
    this.hideMenu();
    const menu = document.createElement("div");
    menu.className = "context-menu";
    menu.dataset.testid = "context-menu";
    menu.setAttribute("role", "menu");
    menu.setAttribute("aria-label", path ? `Actions for ${path}` : "Actions for the workspace");
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
      item.type = "button";
      item.textContent = label;
      item.setAttribute("role", "menuitem");
      item.tabIndex = -1;
      // Focus goes back to the opener first, so a dialog the action opens returns there too.
      item.onclick = (click) => { click.stopPropagation(); this.hideMenu({ restoreFocus: true }); action(); };
      menu.append(item);
    }
    menu.addEventListener("keydown", (key) => this.menuKey(key));
    menu.addEventListener("contextmenu", (click) => click.preventDefault());
    // A click keeps the focus where it is (on the menu), so the menu isn't closed by its own blur.
    menu.addEventListener("mousedown", (press) => press.preventDefault());
    menu.addEventListener("focusout", (blur) => {
      if (this.menu === menu && !(blur.relatedTarget && menu.contains(blur.relatedTarget))) this.hideMenu();
    });
    menu.style.left = `${event.clientX}px`;
    menu.style.top = `${event.clientY}px`;
    document.body.append(menu);
    // Keep the whole menu on screen.
    const box = menu.getBoundingClientRect();
    if (box.right > window.innerWidth) menu.style.left = `${Math.max(0, window.innerWidth - box.width - 4)}px`;
    if (box.bottom > window.innerHeight) menu.style.top = `${Math.max(0, window.innerHeight - box.height - 4)}px`;
    this.menu = menu;
    this.menuOpener = opener;
    menu.firstChild.focus();
  }

  menuKey(event) {
    const buttons = [...this.menu.querySelectorAll("[role=menuitem]")];
    const at = buttons.indexOf(document.activeElement);
    const go = (index) => buttons[(index + buttons.length) % buttons.length].focus();
    switch (event.key) {
      case "ArrowDown": go(at + 1); break;
      case "ArrowUp": go(at < 0 ? -1 : at - 1); break;
      case "Home": go(0); break;
      case "End": go(-1); break;
      case "Escape": case "Tab": this.hideMenu({ restoreFocus: true }); break;
      default: return;
    }
    event.preventDefault();
    event.stopPropagation();
  }

  hideMenu({ restoreFocus = false } = {}) {
    const menu = this.menu;
    const opener = this.menuOpener;
    this.menu = null;
    this.menuOpener = null;
    if (!menu) return;
    const hadFocus = menu.contains(document.activeElement);
    menu.remove();
    const lost = hadFocus || !document.activeElement || document.activeElement === document.body;
    if (restoreFocus && lost && opener && opener.isConnected) opener.focus();
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
