// The dashboard server's API: JSON over fetch (state-changing calls carry the CSRF header) and websockets.
// The per-launch token is in a <meta> tag of the page (the session cookie itself is HttpOnly).

const token = document.querySelector('meta[name="skiff-token"]').content;
export const state = { engine: document.querySelector('meta[name="skiff-engine"]').content, portHost: "127.0.0.1" };

export class ApiError extends Error {}

export async function call(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-Skiff-Token"] = token;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!r.ok) throw new ApiError((data && data.message) || `${r.status} ${r.statusText}`);
  return data;
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body);
export const del = (path) => call("DELETE", path);

// Paths of the engine the page shows.
export const e = (path) => `/api/e/${encodeURIComponent(state.engine)}${path}`;
export const q = (s) => encodeURIComponent(s);

export function socket(path) {
  const ws = new WebSocket(`ws://${location.host}${path}`);
  ws.binaryType = "arraybuffer";
  return ws;
}

export const ews = (path) => socket(`/ws/e/${encodeURIComponent(state.engine)}${path}`);
