// Keys for the editor tabs (role=tablist, made in editor.js), as in VS Code:
//   in the tab strip: Left/Right (wrapping), Home/End move between tabs and show them, Enter or
//   Space go to the editor, Delete closes the focused tab;
//   anywhere: Ctrl+Tab / Ctrl+Shift+Tab cycle the tabs, Ctrl+W closes the active tab.
// Chromium keeps Ctrl+W, Ctrl+Tab and Ctrl+F4 for its own tabs in a normal window (the page never
// sees them there; an installed app window or kiosk mode does). Ctrl+F4 closes too where the page
// gets it, Alt+W always does, and the arrows in the tab strip always move between tabs.
// In a terminal, Ctrl+W stays the shell's (delete the word before the cursor).

export function bindTabKeys(editors) {
  const tablist = editors.tabsHost;
  const tabs = () => [...tablist.querySelectorAll("[role=tab]")];
  const inTabs = () => tablist.contains(document.activeElement);

  // Shows the tab at `path`; the focus goes to that tab if it was in the strip, else to the editor.
  const show = (path, focusTab) => {
    editors.activate(path);
    const entry = editors.open.get(path);
    if (focusTab && entry) entry.tab.focus();
    else editors.editor.focus();
  };

  const cycle = (step) => {
    const list = tabs();
    if (!list.length) return;
    const at = list.findIndex((tab) => tab.dataset.path === editors.active);
    show(list[(at + step + list.length) % list.length].dataset.path, inTabs());
  };

  const close = async (path) => {
    const focusTab = inTabs();
    await editors.close(path);
    if (editors.active) show(editors.active, focusTab);
    else if (focusTab) document.getElementById("tree")?.focus();
  };

  tablist.addEventListener("keydown", (event) => {
    const tab = event.target instanceof Element ? event.target.closest("[role=tab]") : null;
    if (!tab || event.ctrlKey || event.altKey || event.metaKey || event.shiftKey) return;
    const list = tabs();
    const at = list.indexOf(tab);
    switch (event.key) {
      case "ArrowRight": show(list[(at + 1) % list.length].dataset.path, true); break;
      case "ArrowLeft": show(list[(at - 1 + list.length) % list.length].dataset.path, true); break;
      case "Home": show(list[0].dataset.path, true); break;
      case "End": show(list.at(-1).dataset.path, true); break;
      case "Enter": case " ": show(tab.dataset.path, false); break;
      case "Delete": close(tab.dataset.path); break;
      default: return;
    }
    event.preventDefault();
  });

  // Capture, so that Monaco and xterm don't act on these keys first.
  window.addEventListener("keydown", (event) => {
    const ctrl = event.ctrlKey || event.metaKey;
    const key = event.key.toLowerCase();
    const inTerminal = event.target instanceof Element && event.target.closest(".xterm");
    if (ctrl && !event.altKey && event.key === "Tab") {
      cycle(event.shiftKey ? -1 : 1);
    } else if (
      (ctrl && !event.altKey && !event.shiftKey && key === "w" && !inTerminal) ||
      (ctrl && !event.altKey && !event.shiftKey && event.key === "F4") ||
      (event.altKey && !ctrl && !event.shiftKey && (key === "w" || event.code === "KeyW"))
    ) {
      if (!editors.active) return;
      close(editors.active);
    } else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);
}
