// Tells editor.js where Monaco's AMD modules are served. The static prefix is the template's to
// know, so it comes from this script tag's data-vs attribute: no inline script (the CSP forbids them).
window.VIBECODE_MONACO = document.currentScript.dataset.vs;
