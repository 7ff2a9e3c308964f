"use strict";
// Review page: shows a report's groups, collects the user's choices and posts them to
// /v1/apply; every name and path is inserted as text, never as HTML.
const state = { reportPath: null, report: null, journal: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

async function call(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(url, opts);
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

function member(group, m) {
  const choosable = m.role === "keep" || m.role === "remove";
  const fig = el("figure", { "data-path": m.path });
  fig.append(el("img", { src: "/v1/thumb?path=" + encodeURIComponent(m.path), alt: "" }));
  const cap = el("figcaption", {});
  cap.append(el("div", { text: m.path }));
  const score = m.score_to_keeper === null ? "" : " · score " + m.score_to_keeper.toFixed(4);
  cap.append(el("div", { text: `${m.width}×${m.height} · ${m.size} bytes${score}` }));
  if (choosable) {
    const keep = el("input", { type: "radio", name: "keeper-" + group.group, class: "keeper",
                               "data-path": m.path });
    keep.checked = m.path === group.keeper;
    const remove = el("input", { type: "checkbox", class: "remove", "data-path": m.path });
    remove.checked = m.role === "remove";
    cap.append(el("label", {}, keep, " keep"), " ", el("label", {}, remove, " remove"));
  } else {
    cap.append(el("div", { text: m.role + " (not changed)" }));
  }
  fig.append(cap);
  return fig;
}

function refresh(section) {
  const on = section.querySelector("input.group-include").checked;
  section.classList.toggle("off", !on);
  for (const fig of section.querySelectorAll("figure")) {
    const keep = fig.querySelector("input.keeper");
    const remove = fig.querySelector("input.remove");
    if (!keep) continue;
    if (remove.disabled && !keep.checked) remove.checked = true;  // the former keeper
    remove.disabled = keep.checked;
    if (keep.checked) remove.checked = false;
    fig.classList.toggle("keeper", keep.checked);
    fig.classList.toggle("removing", on && remove.checked && !keep.checked);
  }
}

function render() {
  const main = $("groups");
  main.replaceChildren();
  const r = state.report;
  $("summary").textContent =
    `${r.number_of_duplicate_groups} groups, ${r.files_removable} removable files`;
  for (const g of r.groups) {
    const include = el("input", { type: "checkbox", class: "group-include" });
    include.checked = true;
    const section = el("section", { class: "group", "data-group": String(g.group) },
      el("h2", {}, el("label", {}, include, ` Group ${g.group + 1} (${g.size} files)`)),
      el("div", { class: "members" }, ...g.members.map((m) => member(g, m))));
    section.addEventListener("change", () => refresh(section));
    main.append(section);
    refresh(section);
  }
  if (!r.groups.length) main.append(el("p", { text: "No duplicate groups in this report." }));
}

function choices() {
  const keepers = {}, skip = [], skip_groups = [];
  for (const section of document.querySelectorAll("section.group")) {
    const g = Number(section.dataset.group);
    if (!section.querySelector("input.group-include").checked) { skip_groups.push(g); continue; }
    const keeper = section.querySelector("input.keeper:checked");
    if (keeper) keepers[g] = keeper.dataset.path;
    for (const box of section.querySelectorAll("input.remove")) {
      if (!box.checked && box.dataset.path !== keepers[g]) skip.push(box.dataset.path);
    }
  }
  return { keepers, skip, skip_groups };
}

function say(text) { $("status").textContent = text; }

async function apply() {
  const body = { report: state.reportPath, action: $("action").value, ...choices() };
  if (body.action === "move") body.move_to = $("move-to").value;
  try {
    const res = await call("POST", "/v1/apply", body);
    state.journal = res.journal;
    $("undo").disabled = false;
    const refused = res.refused.map((r) => `refused ${r.path}: ${r.reason}`).join("\n");
    say(`Applied: ${res.done.length} files (${res.action}), journal ${res.journal}` +
        (refused ? "\n" + refused : ""));
  } catch (e) { say("Apply failed: " + e.message); }
}

async function undoLast() {
  try {
    const res = await call("POST", "/v1/undo", { journal: state.journal });
    $("undo").disabled = true;
    say(`Undone: ${res.restored.length} files restored` +
        res.not_restored.map((r) => `\nnot restored ${r.path}: ${r.reason}`).join(""));
  } catch (e) { say("Undo failed: " + e.message); }
}

async function load(path) {
  try {
    const res = await call("GET", "/v1/report" + (path ? "?report=" + encodeURIComponent(path) : ""));
    state.reportPath = res.path;
    state.report = res.report;
    $("move-to").value = res.path.replace(/report\.json$/, "moved");
    render();
    document.body.dataset.ready = "1";
  } catch (e) { $("groups").replaceChildren(el("p", { text: e.message })); }
}

async function start() {
  $("apply").addEventListener("click", apply);
  $("undo").addEventListener("click", undoLast);
  $("action").addEventListener("change", () => { $("move-to").hidden = $("action").value !== "move"; });
  const wanted = new URLSearchParams(location.search).get("report");
  try {
    const list = await call("GET", "/v1/reports");
    for (const p of list.reports) $("report").append(el("option", { value: p, text: p }));
    if (wanted) $("report").value = wanted;
  } catch (e) { say(e.message); }
  $("report").addEventListener("change", () => load($("report").value));
  await load(wanted || $("report").value || null);
}
start();
