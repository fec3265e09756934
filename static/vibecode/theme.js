// Light or dark on every page: the OS setting (prefers-color-scheme) unless the user chose one,
// kept in localStorage. A classic script loaded in <head> by base.html, so the theme is set before
// the first paint. Others call window.vibecodeTheme:
//   get()         -> "light" | "dark", the theme in effect
//   choice()      -> "light" | "dark" | "system", what the user chose
//   set(choice)   -> stores "light" or "dark"; "system" (or null) follows the OS again
//   onChange(fn)  -> fn(theme) after every change; returns a function that unsubscribes
// Any element with [data-theme-toggle] cycles: follow the OS -> the opposite -> the OS's own -> ...
(() => {
  const KEY = "vibecode.theme";
  const root = document.documentElement;
  const media = window.matchMedia("(prefers-color-scheme: light)");
  const listeners = new Set();
  let memory = null; // the choice when storage is blocked: it lasts for this page only

  const stored = () => {
    try {
      const value = localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch {
      return memory;
    }
  };
  const system = () => (media.matches ? "light" : "dark");
  const get = () => stored() || system();
  const choice = () => stored() || "system";

  const label = () => {
    const current = get();
    const other = current === "dark" ? "light" : "dark";
    const now = choice() === "system" ? `follows the OS (${current})` : current;
    return { current, text: `Theme: ${now}. Switch to ${nextChoice() === "system" ? "the OS setting" : other}.` };
  };
  const nextChoice = () => {
    if (choice() === "system") return system() === "dark" ? "light" : "dark";
    return choice() === system() ? "system" : system();
  };

  const paintToggles = () => {
    const { current, text } = label();
    for (const toggle of document.querySelectorAll("[data-theme-toggle]")) {
      toggle.setAttribute("aria-label", text);
      toggle.title = text;
      toggle.dataset.themeChoice = choice();
      toggle.dataset.themeCurrent = current;
    }
  };

  let applied = null;
  const apply = () => {
    const theme = get();
    root.dataset.theme = theme;
    root.dataset.themeChoice = choice();
    paintToggles();
    if (theme !== applied) {
      applied = theme;
      for (const listener of [...listeners]) {
        try { listener(theme); } catch (error) { console.error(error); }
      }
    }
  };

  const set = (value) => {
    memory = value === "light" || value === "dark" ? value : null;
    try {
      if (value === "light" || value === "dark") localStorage.setItem(KEY, value);
      else localStorage.removeItem(KEY);
    } catch {
      // storage blocked: `memory` keeps the choice
    }
    apply();
    return get();
  };

  const onChange = (listener) => {
    listeners.add(listener);
    return () => listeners.delete(listener);
  };

  window.vibecodeTheme = { get, choice, set, onChange, toggle: () => set(nextChoice()) };
  media.addEventListener("change", apply);
  window.addEventListener("storage", (event) => { if (event.key === KEY || event.key === null) apply(); });
  document.addEventListener("click", (event) => {
    const toggle = event.target instanceof Element && event.target.closest("[data-theme-toggle]");
    if (toggle) { event.preventDefault(); set(nextChoice()); }
  });
  document.addEventListener("DOMContentLoaded", paintToggles);
  apply();
})();
