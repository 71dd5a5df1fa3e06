// Machines: `machine ls` as a table, the lifecycle operations, and create, each followed as a job.
import { get, post, del, q } from "./api.js";
import { h, toast, badge, empty, sure } from "./ui.js";
import { followJob } from "./jobs.js";

export function list(main) {
  const jobs = h("div", { id: "machine-jobs" });
  const holder = h("div", {}, h("div", { class: "muted" }, "Asking every machine for its state…"));
  const tbody = h("tbody", {});
  const table = h("table", { id: "machines" },
    h("thead", {}, h("tr", {}, ["Name", "Driver", "State", "URL", "Engine", "Errors", ""].map((t) => h("th", {}, t)))), tbody);
  let alive = true;
  const refresh = async () => {
    try {
      const rows = await get("/api/machines");
      if (!alive) return;
      tbody.replaceChildren(...rows.map((m) => h("tr", { dataset: { name: m.Name, state: m.State } },
        h("td", {}, h("strong", {}, m.Name)), h("td", {}, m.DriverName), h("td", {}, badge(m.State)),
        h("td", { class: "mono small" }, m.URL || "—"), h("td", {}, m.DockerVersion || ""),
        h("td", { class: "small", style: "color: var(--bad)" }, m.Error || ""),
        h("td", { class: "actions" }, ...ops(m)))));
      holder.replaceChildren(rows.length ? table : empty("No machines yet: create one."));
    } catch (err) { holder.replaceChildren(empty(err.message)); }
  };
  const run = async (title, call) => {
    try {
      const { job } = await call();
      followJob(job, title, jobs, (m) => { if (m.error) toast(m.error, true); refresh(); window.dispatchEvent(new Event("machines-changed")); });
    } catch (err) { toast(err.message, true); }
  };
  const ops = (m) => {
    const running = m.State === "Running";
    const btn = (op, label, cls = "small") => h("button", { class: cls, dataset: { action: op },
      onclick: () => run(`${label} ${m.Name}`, () => post(`/api/machines/${q(m.Name)}/${op}`)) }, label);
    return [running ? btn("stop", "Stop") : btn("start", "Start"), " ", btn("restart", "Restart"), " ",
      h("button", { class: "small", dataset: { action: "regenerate-certs" }, onclick: () => {
        if (sure(`Regenerate the TLS certificates of ${m.Name}? Its engine restarts.`))
          run(`Regenerate certificates of ${m.Name}`, () => post(`/api/machines/${q(m.Name)}/regenerate-certs`));
      } }, "New certs"), " ",
      running ? h("button", { class: "small", dataset: { action: "containers" }, onclick: () => { document.getElementById("engine").value = m.Name;
                                                                document.getElementById("engine").dispatchEvent(new Event("change"));
                                                                location.hash = "#/containers"; } }, "Containers") : "", " ",
      h("button", { class: "small danger", dataset: { action: "remove" }, onclick: () => {
        if (sure(`Remove machine ${m.Name}? This deletes its VM and disks.`))
          run(`Remove ${m.Name}`, () => del(`/api/machines/${q(m.Name)}?force=1`));
      } }, "Remove")];
  };
  main.append(h("h1", {}, "Machines"),
    h("div", { class: "toolbar" }, h("button", { class: "primary", id: "create-machine", onclick: () => createDialog(run) }, "Create machine…"),
      h("button", { onclick: refresh }, "Refresh")), jobs, holder);
  refresh();
  return () => { alive = false; };
}

async function createDialog(run) {
  let drivers = [];
  try { drivers = await get("/api/machines/drivers"); } catch (err) { toast(err.message, true); return; }
  const name = h("input", { name: "name", value: "default", required: true });
  const driver = h("select", { name: "driver" }, drivers.map((d) => h("option", { value: d.name }, d.name)));
  const flags = h("div", { class: "grid" });
  const showFlags = () => {
    const d = drivers.find((x) => x.name === driver.value);
    flags.replaceChildren(...(d ? d.flags : []).map((f) => h("label", { title: f.help }, f.name,
      f.flag ? h("input", { type: "checkbox", dataset: { flag: f.name } }) : h("input", { dataset: { flag: f.name }, placeholder: f.default }))));
  };
  driver.value = drivers.some((d) => d.name === "qemu") ? "qemu" : (drivers[0]?.name || "");
  driver.addEventListener("change", showFlags);
  showFlags();
  const dlg = h("dialog", { id: "create-dialog" });
  const form = h("form", {}, h("h2", {}, "Create a machine"), h("label", {}, "Name", name), h("label", {}, "Driver", driver),
    h("div", { class: "muted small" }, "Driver options (empty: the default)"), flags,
    h("div", { class: "buttons" }, h("button", { type: "button", onclick: () => dlg.close() }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, "Create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const given = {};
    for (const i of flags.querySelectorAll("input")) {
      const v = i.type === "checkbox" ? (i.checked ? "true" : "") : i.value.trim();
      if (v) given[i.dataset.flag] = v;
    }
    dlg.close();
    run(`Create ${name.value}`, () => post("/api/machines", { name: name.value.trim(), driver: driver.value, flags: given }));
  });
  dlg.append(form);
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}
