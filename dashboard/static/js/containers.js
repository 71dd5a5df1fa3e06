// Containers: the list (kept current by the engine's events) and one container's page: overview (ports as
// links, mounts, environment, live resource use), logs (followed, searchable), a terminal, inspect.
import { get, post, del, e, q, ews, state } from "./api.js";
import { h, toast, badge, ago, size, empty, sure, shortId } from "./ui.js";
import { openTerminal } from "./terminal.js";

function name(c) { return (c.Names && c.Names[0] || "").replace(/^\//, "") || shortId(c.Id); }

export function portLinks(ports) {
  const seen = new Set();
  const out = [];
  for (const p of ports || []) {
    if (!p.PublicPort || p.Type !== "tcp") continue;
    const ip = !p.IP || p.IP === "0.0.0.0" || p.IP === "::" ? state.portHost : p.IP;
    const key = `${ip}:${p.PublicPort}`;
    if (seen.has(key)) continue;
    seen.add(key);
    const host = ip.includes(":") ? `[${ip}]` : ip;
    out.push(h("a", { class: "port-link mono", href: `http://${host}:${p.PublicPort}/`, target: "_blank",
                      rel: "noopener", dataset: { port: String(p.PrivatePort) } }, `${key}→${p.PrivatePort}`));
  }
  return out;
}

// Refresh on events without piling up requests: at most one in flight, one more queued.
export function coalesced(fn) {
  let running = false, again = false;
  const run = async () => {
    if (running) { again = true; return; }
    running = true;
    try { await fn(); } catch (err) { toast(err.message, true); }
    running = false;
    if (again) { again = false; run(); }
  };
  return run;
}

export async function act(c, op) {
  try {
    if (op === "remove") {
      if (!sure(`Remove container ${c.name}?`)) return false;
      await del(e(`/containers/${q(c.id)}?force=1`));
    } else {
      await post(e(`/containers/${q(c.id)}/${op}`));
    }
    return true;
  } catch (err) {
    toast(`${op} ${c.name}: ${err.message}`, true);
    return false;
  }
}

// The lifecycle buttons for a container's state ("running", "paused", "exited", …): Stop and Pause while it
// runs, Unpause and Stop while paused (the engine resumes it to deliver the signal, as dockerd), Start otherwise;
// Restart and Remove always.
function lifecycle(c, status, big = false) {
  const b = (op, label, cls = "") => h("button", { class: [big ? "" : "small", cls].filter(Boolean).join(" ") || null,
                                                  dataset: { action: op }, onclick: () => act(c, op) }, label);
  const out = status === "paused" ? [b("unpause", "Unpause", big ? "primary" : ""), b("stop", "Stop")]
    : status === "running" ? [b("stop", "Stop"), b("pause", "Pause")]
    : [b("start", "Start", big ? "primary" : "")];
  return [...out, b("restart", "Restart")];
}

function actions(c) {
  const ref = { id: c.Id, name: name(c) };
  return h("td", { class: "actions" }, ...lifecycle(ref, c.State).flatMap((x) => [x, " "]),
    h("button", { class: "small danger", dataset: { action: "remove" }, onclick: () => act(ref, "remove") }, "Remove"));
}

export function list(main) {
  const filter = h("input", { type: "search", placeholder: "Filter by name or image", id: "container-filter" });
  const tbody = h("tbody", {});
  const table = h("table", { id: "containers" },
    h("thead", {}, h("tr", {}, ["Name", "Image", "State", "Ports", "Created", ""].map((t) => h("th", {}, t)))), tbody);
  const holder = h("div", {});
  main.append(h("h1", {}, "Containers"),
    h("div", { class: "toolbar" }, filter, h("span", { class: "grow" }),
      h("a", { class: "button", href: "#/images" }, "Run a container from an image…")), holder);
  let rows = [];
  const render = () => {
    const f = filter.value.toLowerCase();
    const shown = rows.filter((c) => !f || name(c).toLowerCase().includes(f) || (c.Image || "").toLowerCase().includes(f));
    tbody.replaceChildren(...shown.map((c) => h("tr", { dataset: { name: name(c), state: c.State, id: c.Id } },
      h("td", {}, h("a", { href: `#/containers/${q(name(c))}` }, name(c)), h("div", { class: "muted small mono" }, shortId(c.Id))),
      h("td", { class: "mono" }, c.Image),
      h("td", {}, badge(c.State), h("div", { class: "muted small" }, c.Status)),
      h("td", {}, portLinks(c.Ports)),
      h("td", { class: "muted" }, ago(c.Created)),
      actions(c))));
    holder.replaceChildren(rows.length ? table : empty("No containers yet: run one from the Images page."));
  };
  const refresh = coalesced(async () => {
    rows = await get(e("/containers"));
    render();
    window.dispatchEvent(new CustomEvent("containers-rendered"));
  });
  filter.addEventListener("input", render);
  const onEvent = (ev) => { if (ev.detail.Type === "container") refresh(); };
  window.addEventListener("engine-event", onEvent);
  refresh();
  return () => window.removeEventListener("engine-event", onEvent);
}

// ---- one container ---------------------------------------------------------------------------------------
const TABS = ["overview", "logs", "terminal", "inspect"];

export function detail(main, ref, tab) {
  const title = h("h1", {}, ref);
  const buttons = h("div", { class: "toolbar" });
  const body = h("div", {});
  main.append(h("div", { class: "muted small" }, h("a", { href: "#/containers" }, "← Containers")), title, buttons,
    h("nav", { class: "tabs" }, TABS.map((t) => h("a", { href: `#/containers/${q(ref)}/${t}`, class: t === tab ? "active" : "",
                                                     dataset: { tab: t } }, t[0].toUpperCase() + t.slice(1)))), body);
  let info = null;
  let stop = () => {};
  const header = () => {
    const c = { id: info.Id, name: info.Name.replace(/^\//, "") };
    title.replaceChildren(c.name, badge(info.State.Status), h("span", { class: "sub mono" }, shortId(info.Id)));
    buttons.replaceChildren(...lifecycle(c, info.State.Status, true),
      h("button", { class: "danger", dataset: { action: "remove" },
                    onclick: async () => { if (await act(c, "remove")) location.hash = "#/containers"; } }, "Remove"));
  };
  const load = coalesced(async () => {
    try {
      info = await get(e(`/containers/${q(ref)}`));
    } catch (err) {
      title.replaceChildren(ref, h("span", { class: "sub" }, err.message));
      buttons.replaceChildren();
      return;
    }
    header();
    if (tab === "overview") overview(body, info);
  });
  const onEvent = (ev) => {
    const m = ev.detail;
    if (m.Type === "container" && info && (m.id === info.Id || m.Actor?.ID === info.Id)) load();
  };
  window.addEventListener("engine-event", onEvent);
  (async () => {
    await load();
    if (!info) return;
    if (tab === "logs") stop = logs(body, info);
    else if (tab === "terminal") stop = openTerminal(body, info);
    else if (tab === "inspect") body.append(h("pre", { class: "json mono", id: "inspect" }, JSON.stringify(info, null, 2)));
    else if (tab === "overview") stop = stats(body, info);
  })();
  return () => { window.removeEventListener("engine-event", onEvent); stop(); };
}

function overview(body, c) {
  const ports = [];
  for (const [cport, binds] of Object.entries(c.NetworkSettings?.Ports || {})) {
    for (const b of binds || []) ports.push({ PrivatePort: parseInt(cport), PublicPort: parseInt(b.HostPort), Type: cport.split("/")[1], IP: b.HostIp });
  }
  const links = portLinks(ports);
  const kv = (pairs) => h("div", { class: "kv" }, pairs.flatMap(([k, v]) => [h("div", {}, k), h("div", { class: "mono" }, v)]));
  const cards = h("div", { class: "grid", id: "overview" },
    h("div", { class: "card" }, h("h3", {}, "Container"), kv([
      ["Image", c.Config.Image], ["Command", [...(c.Config.Entrypoint || []), ...(c.Config.Cmd || [])].join(" ")],
      ["Created", new Date(c.Created).toLocaleString()], ["Status", c.State.Status + (c.State.Running ? "" : ` (exit ${c.State.ExitCode})`)],
      ["Restart", c.HostConfig.RestartPolicy?.Name || "no"], ["IP", Object.values(c.NetworkSettings?.Networks || {}).map((n) => n.IPAddress).filter(Boolean).join(", ") || "—"]])),
    h("div", { class: "card", id: "ports" }, h("h3", {}, "Published ports"), links.length ? h("div", {}, links) : h("div", { class: "muted" }, "none")),
    h("div", { class: "card", id: "mounts" }, h("h3", {}, "Volumes and binds"),
      (c.Mounts || []).length ? kv(c.Mounts.map((m) => [m.Destination, `${m.Type === "volume" ? "volume " + m.Name : m.Source}${m.RW ? "" : " (ro)"}`]))
                              : h("div", { class: "muted" }, "none")),
    h("div", { class: "card", id: "env" }, h("h3", {}, "Environment"),
      kv((c.Config.Env || []).map((v) => { const i = v.indexOf("="); return [v.slice(0, i), v.slice(i + 1)]; }))),
    h("div", { class: "card", id: "stats" }, h("h3", {}, "Resource use"), h("div", { class: "muted", id: "stats-body" }, c.State.Running ? "…" : "not running")));
  const old = body.querySelector("#overview");
  if (old) {
    // Keep the last resource-use sample on screen until the stats stream sends the next one.
    const sample = old.querySelector("#stats-body");
    if (sample && c.State.Running) cards.querySelector("#stats-body").replaceWith(sample);
    old.replaceWith(cards);
  } else {
    body.replaceChildren(cards);
  }
}

function stats(body, c) {
  if (!c.State.Running) return () => {};
  const ws = ews(`/containers/${q(c.Id)}/stats`);
  ws.onmessage = (ev) => {
    const s = JSON.parse(ev.data);
    const el = body.querySelector("#stats-body");
    if (!el || s.error) return;
    const cpuDelta = (s.cpu_stats?.cpu_usage?.total_usage || 0) - (s.precpu_stats?.cpu_usage?.total_usage || 0);
    const sysDelta = (s.cpu_stats?.system_cpu_usage || 0) - (s.precpu_stats?.system_cpu_usage || 0);
    const cpus = s.cpu_stats?.online_cpus || 1;
    const cpu = sysDelta > 0 ? (cpuDelta / sysDelta) * cpus * 100 : 0;
    const mem = s.memory_stats?.usage || 0, limit = s.memory_stats?.limit || 0;
    const net = Object.values(s.networks || {}).reduce((a, n) => [a[0] + n.rx_bytes, a[1] + n.tx_bytes], [0, 0]);
    el.classList.remove("muted");
    el.replaceChildren(
      h("div", {}, "CPU ", h("span", { class: "stat" }, cpu.toFixed(1) + " %")),
      h("div", { class: "meter" }, h("div", { style: `width:${Math.min(100, cpu / cpus)}%` })),
      h("div", {}, "Memory ", h("span", { class: "stat" }, size(mem)), limit ? ` of ${size(limit)}` : ""),
      h("div", { class: "meter" }, h("div", { style: `width:${limit ? (100 * mem / limit) : 0}%` })),
      h("div", { class: "muted small" }, `Network: ${size(net[0])} in, ${size(net[1])} out · PIDs ${s.pids_stats?.current ?? "?"}`));
  };
  return () => ws.close();
}

function logs(body, c) {
  const search = h("input", { type: "search", placeholder: "Search the logs", id: "log-search" });
  const follow = h("input", { type: "checkbox", checked: true, id: "log-follow" });
  const count = h("span", { class: "muted small" });
  const pre = h("pre", { class: "logs mono", id: "logs" });
  body.replaceChildren(h("div", { class: "toolbar" }, search, h("label", {}, follow, " Follow"), h("span", { class: "grow" }), count), pre);
  const lines = [];  // [stream, text]
  let partial = ["", 1];
  const render = () => {
    const term = search.value.toLowerCase();
    const shown = term ? lines.filter(([, t]) => t.toLowerCase().includes(term)) : lines.slice(-3000);
    pre.replaceChildren(...shown.map(([s, t]) => {
      const line = h("div", { class: s === 2 ? "err" : "" });
      if (!term) { line.textContent = t || "\u00a0"; return line; }
      let i = 0, low = t.toLowerCase(), j;
      while ((j = low.indexOf(term, i)) >= 0) { line.append(t.slice(i, j), h("mark", {}, t.slice(j, j + term.length))); i = j + term.length; }
      line.append(t.slice(i));
      return line;
    }));
    count.textContent = term ? `${shown.length} of ${lines.length} lines match` : `${lines.length} lines`;
    if (follow.checked) pre.scrollTop = pre.scrollHeight;
  };
  let scheduled = false;
  const schedule = () => { if (!scheduled) { scheduled = true; requestAnimationFrame(() => { scheduled = false; render(); }); } };
  const ws = ews(`/containers/${q(c.Id)}/logs?tail=2000`);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.error) { toast(m.error, true); return; }
    const parts = (partial[0] + m.t).split("\n");
    partial = [parts.pop(), m.s];
    for (const p of parts) lines.push([m.s, p.replace(/\r$/, "")]);
    if (lines.length > 20000) lines.splice(0, lines.length - 20000);
    schedule();
  };
  search.addEventListener("input", render);
  render();
  return () => ws.close();
}
