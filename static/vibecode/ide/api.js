// The one way the IDE talks to the server: JSON in, JSON out, errors as readable messages.

export class ApiError extends Error {
  constructor(status, code, detail, body) {
    super(detail);
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  return match ? decodeURIComponent(match[1]) : "";
}

const FRIENDLY = {
  0: "The server cannot be reached. Check your connection; VibeCode retries by itself.",
  429: "Too many requests in a short time. Wait a moment and try again.",
  502: "The container engine refused the request.",
  503: "A service VibeCode depends on is unavailable. Try again shortly.",
};

export async function api(method, url, { json, form, signal } = {}) {
  const headers = { "X-CSRFToken": csrfToken(), Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal, credentials: "same-origin" });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network", FRIENDLY[0]);
  }
  if (response.status === 204) return null;
  let data = null;
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try { data = await response.json(); } catch { data = null; }
  }
  if (!response.ok) {
    const detail = (data && data.detail) || FRIENDLY[response.status] || `The server answered ${response.status}.`;
    const retry = response.headers.get("Retry-After");
    const suffix = response.status === 429 && retry ? ` (retry in ${retry} s)` : "";
    throw new ApiError(response.status, (data && data.code) || "error", detail + suffix, data);
  }
  return data;
}

export function sessionApi(sessionId) {
  const base = `/api/vibecode/sessions/${encodeURIComponent(sessionId)}`;
  const q = (path) => `?path=${encodeURIComponent(path)}`;
  return {
    base,
    session: () => api("GET", base),
    stats: () => api("GET", `${base}/stats`),
    keepalive: () => api("POST", `${base}/keepalive`),
    list: (path) => api("GET", `${base}/files${q(path)}`),
    read: (path) => api("GET", `${base}/files/content${q(path)}`),
    save: (path, content, etag) => api("PUT", `${base}/files/content`, { json: { path, content, etag } }),
    create: (path, type) => api("POST", `${base}/files`, { json: { path, type } }),
    move: (from, to) => api("POST", `${base}/files/move`, { json: { from, to } }),
    remove: (path) => api("DELETE", `${base}/files${q(path)}`),
    upload: (form) => api("POST", `${base}/files/upload`, { form }),
    downloadUrl: (path) => `${base}/files/download${q(path)}`,
    search: (text) => api("GET", `${base}/files/search?q=${encodeURIComponent(text)}`),
    run: (path) => api("POST", `${base}/run`, { json: { path } }),
    terminals: () => api("GET", `${base}/terminals`),
    closeTerminal: (id) => api("DELETE", `${base}/terminals/${encodeURIComponent(id)}`),
  };
}
