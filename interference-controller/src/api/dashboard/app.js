// The customer dashboard: reads the customer API with the customer's own token (from
// the page's #token= fragment, which never leaves the browser, or typed in), and draws
// what it answers. No library: SVG by hand, so the page works on a closed network.
"use strict";

const state = { token: null, vms: [], actions: [], vm: null, hours: 6 };
const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function status(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
  s.hidden = !text;
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) {
    throw new Error((body && body.message) || r.status + " " + r.statusText);
  }
  return body;
}

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function when(iso) {
  return iso.replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function row(cells, cls) {
  const tr = el("tr", cls ? { class: cls } : {});
  for (const c of cells) {
    const td = el("td", c.num ? { class: "num" } : {}, c.text === undefined ? c : c.text);
    tr.appendChild(td);
  }
  return tr;
}

function drawTimeline(t, actions) {
  const box = $("timeline");
  box.replaceChildren();
  const W = 1100, H = 260, L = 40, B = 24, T = 10;
  const from = Date.parse(t.from), to = Date.parse(t.to);
  const x = (ms) => L + ((ms - from) / (to - from)) * (W - L - 10);
  const y = (s) => T + (1 - Math.min(s, 100) / 100) * (H - T - B);
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, id: "timeline-svg" });
  for (const a of actions) {
    const x0 = x(Date.parse(a.start)), x1 = Math.max(x(Date.parse(a.end)), x0 + 3);
    const band = el("svg:rect", { class: "band action-mark", x: x0, y: T, width: x1 - x0, height: H - T - B });
    band.appendChild(el("svg:title", {}, `${a.rung} (${a.role}) ${when(a.start)}: ${a.description}`));
    svg.appendChild(band);
  }
  svg.appendChild(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - 10, y2: H - B }));
  svg.appendChild(el("svg:line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  for (const s of [0, 40, 100]) {
    svg.appendChild(el("svg:text", { x: 4, y: y(s) + 4 }, String(s)));
  }
  svg.appendChild(el("svg:line", { class: "threshold", x1: L, y1: y(40), x2: W - 10, y2: y(40) }));
  if (t.windows.length) {
    const pts = t.windows.map((w) => `${x(Date.parse(w.start)).toFixed(1)},${y(w.max_score).toFixed(1)}`);
    svg.appendChild(el("svg:polyline", { class: "line", points: pts.join(" ") }));
  }
  for (const p of t.pairs.filter((p) => p.direction === "slowed_by")) {
    const c = el("svg:circle", { class: "dot", cx: x(Date.parse(p.at)), cy: y(p.score), r: 2.5 });
    c.appendChild(el("svg:title", {}, `${p.score.toFixed(1)} slowed by ${p.neighbour} at ${when(p.at)}`));
    svg.appendChild(c);
  }
  svg.appendChild(el("svg:text", { x: L, y: H - 6 }, when(t.from)));
  svg.appendChild(el("svg:text", { x: W - 170, y: H - 6 }, when(t.to)));
  box.appendChild(svg);
}

function drawHeatmap(t) {
  const box = $("heatmap");
  box.replaceChildren();
  if (!t.neighbours.length) {
    box.appendChild(el("p", {}, "No neighbour slowed this VM in this range."));
    return;
  }
  const from = Date.parse(t.from), to = Date.parse(t.to);
  const cells = Math.ceil((to - from) / 300000);
  const cw = Math.max(2, Math.floor(1000 / cells)), ch = 18, L = 110;
  const svg = el("svg:svg", { width: L + cells * cw + 10, height: t.neighbours.length * (ch + 2) + 4, id: "heatmap-svg" });
  t.neighbours.forEach((n, i) => {
    const label = el("svg:text", { class: "neighbour", x: 0, y: i * (ch + 2) + 13 }, n.neighbour);
    svg.appendChild(label);
    for (const c of n.cells) {
      const k = Math.floor((Date.parse(c.start) - from) / 300000);
      const heat = Math.min(c.max_score, 100) / 100;
      const r = el("svg:rect", {
        class: "cell", x: L + k * cw, y: i * (ch + 2), width: cw, height: ch,
        fill: `rgb(${Math.round(255 * heat)}, ${Math.round(200 * (1 - heat))}, 60)`,
      });
      r.appendChild(el("svg:title", {}, `${n.neighbour}: ${c.max_score.toFixed(1)} at ${when(c.start)}`));
      svg.appendChild(r);
    }
  });
  box.appendChild(svg);
}

async function showVm(vm) {
  state.vm = vm;
  for (const b of $("vms").children) b.classList.toggle("active", b.dataset.id === vm.id);
  $("vm-name").textContent = vm.name;
  const to = new Date();
  const from = new Date(to.getTime() - state.hours * 3600000);
  const range = `from=${from.toISOString()}&to=${to.toISOString()}`;
  const t = await api(`/v1/vms/${encodeURIComponent(vm.id)}/scores?${range}`);
  const mine = state.actions.filter((a) => a.vm === vm.name);
  drawTimeline(t, mine);
  drawHeatmap(t);
  for (const id of ["timeline-section", "heatmap-section"]) $(id).hidden = false;
}

function showActions() {
  const body = $("actions").tBodies[0];
  body.replaceChildren();
  for (const a of state.actions) {
    body.appendChild(row([
      when(a.start), a.vm, a.rung || "", a.role || "", a.neighbour || "",
      { text: a.score === null ? "" : a.score.toFixed(1), num: true },
      { text: `${a.amount} ${a.currency}`, num: true }, a.state || "",
    ], "action"));
  }
  $("actions-section").hidden = false;
}

async function showInvoice() {
  const costs = await api("/v1/costs").catch(() => null);
  if (!costs) return;
  const inv = await api(`/v1/invoices/${costs.period}`);
  $("period").textContent = inv.period;
  $("customer").textContent = `customer ${inv.customer}`;
  $("totals").textContent =
    `Base ${inv.base} · interference charges ${inv.interference_charges} · credits ${inv.credits} · total ${inv.total} ${inv.currency}`;
  const body = $("invoice").tBodies[0];
  body.replaceChildren();
  for (const l of inv.lines.filter((l) => l.kind !== "base")) {
    body.appendChild(row([l.kind, l.vm, { text: `${l.amount} ${inv.currency}`, num: true }, l.description], "line " + l.kind));
  }
  $("invoice-section").hidden = false;
}

async function load() {
  status("Loading…");
  try {
    const vms = await api("/v1/vms");
    state.vms = vms.vms;
    const weekAgo = new Date(Date.now() - 7 * 86400000).toISOString();
    const actions = await api(`/v1/actions?from=${weekAgo}&to=${new Date().toISOString()}`);
    state.actions = actions.actions;
    const nav = $("vms");
    nav.replaceChildren();
    for (const vm of state.vms) {
      const b = el("button", { "data-id": vm.id, type: "button", class: "vm" }, vm.name);
      b.addEventListener("click", () => showVm(vm).catch((e) => status(e.message, true)));
      nav.appendChild(b);
    }
    $("vms-section").hidden = false;
    showActions();
    await showInvoice();
    if (state.vms.length) {
      // The VM with the most mitigations first (the first listed on a tie).
      const count = (v) => state.actions.filter((a) => a.vm === v.name).length;
      const busiest = state.vms.reduce((best, v) => (count(v) > count(best) ? v : best), state.vms[0]);
      await showVm(busiest);
    }
    status("");
    document.body.dataset.loaded = "true";
  } catch (e) {
    status(`Cannot read the API: ${e.message}`, true);
    $("login").hidden = false;
  }
}

function start() {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash) {
    sessionStorage.setItem("token", fromHash);
    history.replaceState(null, "", location.pathname);
  }
  state.token = sessionStorage.getItem("token");
  $("hours").addEventListener("change", () => {
    state.hours = Number($("hours").value);
    if (state.vm) showVm(state.vm).catch((e) => status(e.message, true));
  });
  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token").value.trim();
    sessionStorage.setItem("token", state.token);
    $("login").hidden = true;
    load();
  });
  if (state.token) {
    load();
  } else {
    status("Enter the API token your operator gave you.");
    $("login").hidden = false;
  }
}

start();
