// Networks and volumes: listed (refreshed on their events) and removable.
import { get, del, e, q } from "./api.js";
import { h, toast, empty, sure, shortId } from "./ui.js";
import { coalesced } from "./containers.js";

function page(main, { title, kind, path, columns, row, id, removable }) {
  const tbody = h("tbody", {});
  const holder = h("div", {});
  const table = h("table", { id: kind + "s" }, h("thead", {}, h("tr", {}, [...columns, ""].map((t) => h("th", {}, t)))), tbody);
  const refresh = coalesced(async () => {
    const items = await get(e(path));
    tbody.replaceChildren(...items.map((it) => h("tr", { dataset: { name: id(it) } }, row(it).map((c) => h("td", {}, c)),
      h("td", { class: "actions" }, removable(it) ? h("button", { class: "small danger", dataset: { action: "remove" }, onclick: async () => {
        if (!sure(`Remove ${kind} ${id(it)}?`)) return;
        try { await del(e(`${path}/${q(id(it))}`)); refresh(); } catch (err) { toast(err.message, true); }
      } }, "Remove") : h("span", { class: "muted small" }, "built in")))));
    holder.replaceChildren(items.length ? table : empty(`No ${kind}s.`));
  });
  main.append(h("h1", {}, title), holder);
  const onEvent = (ev) => { if (ev.detail.Type === kind) refresh(); };
  window.addEventListener("engine-event", onEvent);
  refresh();
  return () => window.removeEventListener("engine-event", onEvent);
}

export function networks(main) {
  return page(main, { title: "Networks", kind: "network", path: "/networks", columns: ["Name", "ID", "Driver", "Subnet", "Containers"],
    id: (n) => n.Name, removable: (n) => !["bridge", "host", "none"].includes(n.Name),
    row: (n) => [h("span", { class: "mono" }, n.Name), h("span", { class: "mono muted" }, shortId(n.Id)), n.Driver,
                 h("span", { class: "mono" }, (n.IPAM?.Config || []).map((c) => c.Subnet).join(", ")),
                 Object.keys(n.Containers || {}).length] });
}

export function volumes(main) {
  return page(main, { title: "Volumes", kind: "volume", path: "/volumes", columns: ["Name", "Driver", "Mountpoint"],
    id: (v) => v.Name, removable: () => true,
    row: (v) => [h("span", { class: "mono" }, v.Name), v.Driver, h("span", { class: "mono muted small" }, v.Mountpoint)] });
}
