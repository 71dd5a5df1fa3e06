// Small DOM helpers shared by the pages: an element builder, toasts, human sizes and ages.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function toast(message, error = false) {
  const t = h("div", { class: "toast" + (error ? " error" : ""), role: error ? "alert" : "status" }, message);
  document.getElementById("toasts").append(t);
  setTimeout(() => t.remove(), error ? 9000 : 3500);
}

export function size(n) {
  if (n === undefined || n === null || n < 0) return "";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + units[i];
}

export function ago(seconds) {
  const d = Math.max(0, Date.now() / 1000 - seconds);
  if (d < 60) return "less than a minute ago";
  if (d < 3600) return Math.round(d / 60) + " minutes ago";
  if (d < 86400) return Math.round(d / 3600) + " hours ago";
  return Math.round(d / 86400) + " days ago";
}

export function badge(state) {
  return h("span", { class: "badge " + (state || "unknown") }, state || "unknown");
}

export function shortId(id) {
  return (id || "").replace(/^sha256:/, "").slice(0, 12);
}

export function empty(text) {
  return h("div", { class: "empty" }, text);
}

// A confirm that tests can answer: window.confirm, which Selenium accepts with switch_to.alert.
export function sure(question) {
  return window.confirm(question);
}
