// A shell in the container: xterm.js over a websocket to an exec with a TTY (bytes both ways; resizes as JSON).
import { Terminal } from "../vendor/xterm/xterm.mjs";
import { FitAddon } from "../vendor/xterm/addon-fit.mjs";
import { ews, q } from "./api.js";
import { h } from "./ui.js";

export function openTerminal(body, c) {
  if (!c.State.Running) {
    body.replaceChildren(h("div", { class: "empty" }, "The container is not running: start it to open a terminal."));
    return () => {};
  }
  const el = h("div", { id: "terminal" });
  const status = h("div", { class: "muted small", id: "terminal-status" }, "connecting…");
  body.replaceChildren(el, status);
  const term = new Terminal({ cursorBlink: true, fontSize: 13, convertEol: false,
                              fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace' });
  const fit = new FitAddon();
  term.loadAddon(fit);
  term.open(el);
  fit.fit();
  const ws = ews(`/containers/${q(c.Id)}/exec?cols=${term.cols}&rows=${term.rows}`);
  const enc = new TextEncoder();
  ws.onopen = () => { status.textContent = "connected: /bin/sh in " + c.Name.replace(/^\//, ""); term.focus(); };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") {
      const m = JSON.parse(ev.data);
      if (m.error) term.write(`\r\n\x1b[31m${m.error}\x1b[0m\r\n`);
      return;
    }
    term.write(new Uint8Array(ev.data));
  };
  ws.onclose = () => { status.textContent = "session ended"; };
  term.onData((d) => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
  term.onResize(({ cols, rows }) => { if (ws.readyState === 1) ws.send(JSON.stringify({ resize: [cols, rows] })); });
  const onWindow = () => fit.fit();
  window.addEventListener("resize", onWindow);
  window.skiffTerminal = term;  // for tests and the browser console
  return () => { window.removeEventListener("resize", onWindow); ws.close(); term.dispose(); };
}
