// Images: the list, pull with per-layer progress, remove, and Run (a form: name, ports, volumes, env, command).
import { get, post, del, e, q } from "./api.js";
import { h, toast, size, ago, empty, sure, shortId } from "./ui.js";
import { coalesced } from "./containers.js";
import { followJob } from "./jobs.js";

function tags(img) {
  const t = (img.RepoTags || []).filter((x) => x !== "<none>:<none>");
  return t.length ? t : ["<none>"];
}

const lines = (s) => s.split("\n").map((x) => x.trim()).filter(Boolean);

function runDialog(image) {
  const f = {
    image: h("input", { name: "image", value: image, required: true }),
    name: h("input", { name: "name", placeholder: "(a generated name)" }),
    ports: h("textarea", { name: "ports", placeholder: "8080:80  (one per line: [ip:]hostPort:containerPort[/udp])" }),
    volumes: h("textarea", { name: "volumes", placeholder: "data:/data  or  /host/path:/path[:ro]  (one per line)" }),
    env: h("textarea", { name: "env", placeholder: "KEY=value  (one per line)" }),
    cmd: h("input", { name: "cmd", placeholder: "(the image's command)" }),
  };
  const error = h("div", { class: "small", style: "color: var(--bad)", id: "run-error" });
  const dlg = h("dialog", { id: "run-dialog" });
  const form = h("form", { method: "dialog" },
    h("h2", {}, "Run a container"),
    h("label", {}, "Image", f.image), h("label", {}, "Name", f.name), h("label", {}, "Ports", f.ports),
    h("label", {}, "Volumes", f.volumes), h("label", {}, "Environment", f.env), h("label", {}, "Command", f.cmd), error,
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: () => dlg.close() }, "Cancel"),
      h("button", { type: "submit", class: "primary", id: "run-submit" }, "Run")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const submit = form.querySelector("#run-submit");
    submit.disabled = true;
    submit.textContent = "Starting…";
    try {
      const r = await post(e("/containers"), { image: f.image.value, name: f.name.value, ports: lines(f.ports.value),
        volumes: lines(f.volumes.value), env: lines(f.env.value), cmd: f.cmd.value });
      dlg.close();
      toast(`Started ${f.name.value || shortId(r.Id)}`);
      location.hash = `#/containers/${q(f.name.value || r.Id)}`;
    } catch (err) {
      error.textContent = err.message;
      submit.disabled = false;
      submit.textContent = "Run";
    }
  });
  dlg.append(form);
  dlg.addEventListener("close", () => dlg.remove());
  document.body.append(dlg);
  dlg.showModal();
}

export function list(main) {
  const ref = h("input", { placeholder: "image to pull, e.g. busybox:latest", id: "pull-ref", size: 36 });
  const jobs = h("div", { id: "pulls" });
  const tbody = h("tbody", {});
  const holder = h("div", {});
  const table = h("table", { id: "images" },
    h("thead", {}, h("tr", {}, ["Repository:tag", "ID", "Created", "Size", ""].map((t) => h("th", {}, t)))), tbody);
  const refresh = coalesced(async () => {
    const imgs = await get(e("/images"));
    tbody.replaceChildren(...imgs.flatMap((img) => tags(img).map((t) => h("tr", { dataset: { ref: t } },
      h("td", { class: "mono" }, t), h("td", { class: "mono muted" }, shortId(img.Id)), h("td", { class: "muted" }, ago(img.Created)),
      h("td", {}, size(img.Size)),
      h("td", { class: "actions" },
        h("button", { class: "small primary", dataset: { action: "run" }, onclick: () => runDialog(t === "<none>" ? img.Id : t) }, "Run…"), " ",
        h("button", { class: "small danger", dataset: { action: "remove" }, onclick: async () => {
          if (!sure(`Remove image ${t}?`)) return;
          try { await del(e(`/images/${(t === "<none>" ? img.Id : t).split("/").map(q).join("/")}`)); refresh(); } catch (err) { toast(err.message, true); }
        } }, "Remove"))))));
    holder.replaceChildren(imgs.length ? table : empty("No images: pull one above."));
  });
  const pull = async (ev) => {
    ev.preventDefault();
    const r = ref.value.trim();
    if (!r) return;
    try {
      const { job } = await post(e("/images/pull"), { ref: r });
      followJob(job, `Pulling ${r}`, jobs, (m) => { if (m.error) toast(m.error, true); else toast(`Pulled ${m.result}`); refresh(); });
      ref.value = "";
    } catch (err) { toast(err.message, true); }
  };
  main.append(h("h1", {}, "Images"),
    h("form", { class: "toolbar", onsubmit: pull }, ref, h("button", { class: "primary", type: "submit", id: "pull" }, "Pull"),
      h("span", { class: "grow" }), h("button", { type: "button", onclick: () => runDialog("") }, "Run…")), jobs, holder);
  const onEvent = (ev) => { if (ev.detail.Type === "image") refresh(); };
  window.addEventListener("engine-event", onEvent);
  refresh();
  return () => window.removeEventListener("engine-event", onEvent);
}
