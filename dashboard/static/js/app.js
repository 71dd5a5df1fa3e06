// The shell: engine selector, navigation (hash routes), and the engine's event stream, which every page
// listens to (as "engine-event" on window) instead of polling.
import { get, state, ews } from "./api.js";
import { h, toast } from "./ui.js";
import * as containers from "./containers.js";
import * as images from "./images.js";
import * as resources from "./resources.js";
import * as machines from "./machines.js";

const main = document.getElementById("main");
const engineSelect = document.getElementById("engine");
const live = document.getElementById("live");
let cleanup = null;
let events = null;

const routes = [
  [/^#\/containers\/([^/]+)(?:\/(\w+))?$/, (m) => containers.detail(main, decodeURIComponent(m[1]), m[2] || "overview")],
  [/^#\/containers$/, () => containers.list(main)],
  [/^#\/images$/, () => images.list(main)],
  [/^#\/networks$/, () => resources.networks(main)],
  [/^#\/volumes$/, () => resources.volumes(main)],
  [/^#\/machines$/, () => machines.list(main)],
];

function route() {
  const hash = location.hash || "#/containers";
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  main.replaceChildren();
  const page = hash.split("/")[1];
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === page);
  for (const [re, render] of routes) {
    const m = hash.match(re);
    if (m) { cleanup = render(m) || null; return; }
  }
  location.hash = "#/containers";
}

function connectEvents() {
  if (events) { events.onclose = null; events.close(); }
  live.textContent = "○ connecting";
  live.classList.remove("on");
  const ws = ews("/events");
  events = ws;
  ws.onopen = () => { live.textContent = "● live"; live.classList.add("on"); };
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.error) { live.textContent = "○ " + m.error; return; }
    window.dispatchEvent(new CustomEvent("engine-event", { detail: m }));
  };
  ws.onclose = () => {
    if (events !== ws) return;
    live.textContent = "○ disconnected";
    live.classList.remove("on");
    setTimeout(() => { if (events === ws) connectEvents(); }, 2000);  // the engine restarted, a machine came up
  };
}

async function loadEngines() {
  const data = await get("/api/engines");
  engineSelect.replaceChildren(...data.engines.map((e) =>
    h("option", { value: e.id }, e.id === "_local" ? `local (${e.url})` : `machine: ${e.name}`)));
  engineSelect.value = state.engine;
  if (engineSelect.value === state.engine) return;
  if (state.engine !== data.default) {
    // The machine shown was removed (from this page or elsewhere): show the local engine, stay on the page.
    await selectEngine("_local", false);
  } else {  // the launch's own engine stays pickable (its error is shown)
    engineSelect.append(h("option", { value: state.engine }, state.engine));
    engineSelect.value = state.engine;
  }
}

export async function selectEngine(id, reroute = true) {
  state.engine = id;
  engineSelect.value = id;
  const status = document.getElementById("engine-status");
  status.textContent = "";
  try {
    const info = await get(`/api/e/${encodeURIComponent(id)}/info`);
    state.portHost = info.portHost;
    status.textContent = `${info.version.Version || "?"} · ${info.url}`;
  } catch (e) {
    status.textContent = e.message;
  }
  connectEvents();
  if (reroute) route();
}

engineSelect.addEventListener("change", () => selectEngine(engineSelect.value));
window.addEventListener("hashchange", route);
window.addEventListener("machines-changed", () => loadEngines().catch(() => {}));

loadEngines().catch((e) => toast(e.message, true)).finally(() => selectEngine(state.engine));
