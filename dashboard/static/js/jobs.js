// Follow a server-side job (machine create/start/…, image pull) into a progress box:
// plain status lines, or per-layer bars for a pull's JSON progress.
import { h } from "./ui.js";
import { socket } from "./api.js";

export function followJob(id, title, container, onDone) {
  const lines = h("div", { class: "lines" });
  const layers = h("div", {});
  const box = h("div", { class: "progress", dataset: { job: id } }, h("div", { class: "title" }, title), layers, lines);
  container.prepend(box);
  const rows = new Map();
  const ws = socket(`/ws/jobs/${encodeURIComponent(id)}`);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    if (m.done) {
      box.classList.add(m.error ? "failed" : "finished");
      const refused = m.errorKind === "NotSupported";  // the driver cannot do this at all: not a fault to retry
      lines.append(h("div", {}, m.error ? (refused ? "Not supported: " : "Error: ") + m.error : "Done."));
      if (m.error) {
        box.querySelector(".title").append(refused ? " — not supported by this machine's driver" : " — failed",
          h("button", { class: "small dismiss", title: "Dismiss", dataset: { action: "dismiss" }, onclick: () => box.remove() }, "×"));
      }
      ws.close();
      if (onDone) onDone(m);
      setTimeout(() => { if (!m.error) box.remove(); }, 6000);
      return;
    }
    if (m.id && m.status) {  // a pull's per-layer message
      let row = rows.get(m.id);
      if (!row) {
        row = { bar: h("div", {}), text: h("span", {}) };
        rows.set(m.id, row);
        layers.append(h("div", { class: "layer", dataset: { layer: m.id } },
          h("span", { class: "mono" }, m.id), h("div", { class: "bar" }, row.bar), row.text));
      }
      const d = m.progressDetail || {};
      const pct = d.total ? Math.round(100 * d.current / d.total) : (/complete|exists/i.test(m.status) ? 100 : 0);
      row.bar.style.width = pct + "%";
      row.text.textContent = m.status + (d.total ? ` ${pct}%` : "");
    } else if (m.status) {
      lines.append(h("div", {}, m.status));
      lines.scrollTop = lines.scrollHeight;
    }
  };
  return ws;
}
