// File icons by type for the explorer and the editor tabs: a small coloured glyph (CSS in ide.css,
// `.file-icon[data-kind=...]`) or an inline SVG folder. Shipped with the app: no icon font, no CDN.
// Icons are decoration (aria-hidden); the name beside them is what assistive technology reads.

const SVG = "http://www.w3.org/2000/svg";

const BY_NAME = {
  dockerfile: "docker", makefile: "make", "requirements.txt": "pip", "package.json": "npm",
  ".gitignore": "git", ".gitattributes": "git", license: "text", readme: "markdown",
};

const BY_EXTENSION = {
  py: "python", pyi: "python", ipynb: "python",
  js: "javascript", mjs: "javascript", cjs: "javascript", jsx: "javascript",
  ts: "typescript", tsx: "typescript",
  json: "json", jsonc: "json",
  md: "markdown", markdown: "markdown", rst: "text", txt: "text",
  html: "html", htm: "html", xml: "html", svg: "image",
  css: "css", scss: "css", less: "css",
  c: "c", h: "c", cpp: "cpp", cc: "cpp", hpp: "cpp",
  go: "go", rs: "rust", java: "java", rb: "ruby", php: "php",
  sh: "shell", bash: "shell", zsh: "shell",
  yml: "yaml", yaml: "yaml", toml: "config", ini: "config", cfg: "config", env: "config",
  sql: "database", db: "database", sqlite: "database",
  png: "image", jpg: "image", jpeg: "image", gif: "image", webp: "image", ico: "image",
  zip: "archive", gz: "archive", tar: "archive", tgz: "archive", bz2: "archive", xz: "archive",
  csv: "table", tsv: "table", lock: "config",
};

// The kind of a file from its name, for CSS and tests ("python", "markdown", ...; "file" if unknown).
export function fileKind(name) {
  const lower = name.toLowerCase();
  if (BY_NAME[lower]) return BY_NAME[lower];
  if (lower.startsWith("readme")) return "markdown";
  const dot = lower.lastIndexOf(".");
  return dot < 0 ? "file" : BY_EXTENSION[lower.slice(dot + 1)] || "file";
}

function folder(open) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("fill", "currentColor");
  path.setAttribute("d", open
    ? "M1.5 3h4.2l1.4 1.5h6.4a1 1 0 0 1 1 1V6H4.3L2 12.5V3.5a.5.5 0 0 1 .5-.5zM4.8 7H15l-2.3 6H1.9z"
    : "M1.5 3h4.2l1.4 1.5h6.9a.5.5 0 0 1 .5.5v7.5a.5.5 0 0 1-.5.5H1.5a.5.5 0 0 1-.5-.5V3.5a.5.5 0 0 1 .5-.5z");
  svg.append(path);
  return svg;
}

// An icon for an entry of the tree or a tab: type is "file", "directory" or "symlink".
export function fileIcon(name, type = "file", open = false) {
  const icon = document.createElement("span");
  icon.className = "file-icon";
  icon.setAttribute("aria-hidden", "true");
  if (type === "directory") {
    icon.dataset.kind = open ? "folder-open" : "folder";
    icon.append(folder(open));
  } else if (type === "symlink") {
    icon.dataset.kind = "symlink";
  } else {
    icon.dataset.kind = fileKind(name);
  }
  return icon;
}
