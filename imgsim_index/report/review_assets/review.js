"use strict";
// The review page, one script for both ways it is served: report.html carries its data in
// the #review-data block (review_page.review_data's output); the `serve` page has that block
// empty and asks the HTTP API for the same data (GET /v1/review), then applies the choices
// (POST /v1/apply) and undoes them (POST /v1/undo). Every name and path is inserted as text
// (createElement/textContent), never as HTML.
window.addEventListener("error", (e) => {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\n";
});
(() => {
  const byId = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
  const embedded = byId("review-data").textContent.trim();
  const served = !embedded;
  for (const e of document.querySelectorAll(served ? ".served-only" : ".static-only")) {
    e.hidden = false;
  }

  // a name that could reorder or hide what is shown next to it: escape those characters,
  // as Python's ascii() does (console output of apply/undo), and double the backslashes
  const UNSAFE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
  const NAMED = { "\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\" };
  const hex = (c, width) => c.codePointAt(0).toString(16).padStart(width, "0");
  const shown = (value) => {
    const text = String(value);
    if (!UNSAFE.test(text)) return text;
    return text.replace(/[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}\\]/gu, (c) => {
      const n = c.codePointAt(0);
      if (NAMED[c]) return NAMED[c];
      if (n < 0x100) return "\\x" + hex(c, 2);
      return n < 0x10000 ? "\\u" + hex(c, 4) : "\\U" + hex(c, 8);
    });
  };
  const fmtBytes = (n) => {
    if (n === null || n === undefined) return "? B";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let v = n, i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return (i ? v.toFixed(1) : String(v)) + " " + units[i];
  };
  const fmtScore = (s) => (s === null || s === undefined ? "n/a" : Number(s).toFixed(6));
  // a path that wraps after its separators: folders, then the name; the whole path as title
  const pathView = (path, cls) => {
    const text = shown(path);
    const box = el("div", "path" + (cls ? " " + cls : ""));
    box.title = text;
    const cut = text.lastIndexOf("/");
    const dir = el("span", "dir");
    for (const part of text.slice(0, cut + 1).split(/(?<=\/)/)) {
      if (part) dir.append(part, document.createElement("wbr"));
    }
    box.append(dir, el("span", "name", text.slice(cut + 1)));
    return box;
  };
  const baseName = (path) => shown(String(path).split("/").pop());
  const MATCH = { exact: "exact copy", copy: "copy", other_shot: "other shot",
    not_verified: "not verified" };
  const BADGE = { keep: "KEEP", remove: "remove", protected: "protected (kept)",
    frame: "video frame (kept)", unverified: "not a verified copy (kept)" };

  let data = null, reportPath = null, journal = null;
  let page = 0, current = 0, currentFile = 0;
  const lo = byId("score-lo"), hi = byId("score-hi");
  const choices = new Map();  // group number (text) -> {group, keeper, candidates, unticked, skipped}

  const preview = (thumb) => {
    if (!thumb) return el("div", "nothumb", "no preview");
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = "";
    img.src = thumb;
    return img;
  };
  // "copy  B resized to 50%, re-encoded", then which file is A and which is B
  const verdict = (match, evidence, pair) => {
    const v = el("div", "verdict");
    v.append(el("span", "match match-" + match, MATCH[match] || match), evidence);
    if (pair) v.append(el("div", "meta", "A: " + baseName(pair[0]) + ", B: " + baseName(pair[1])));
    return v;
  };

  const inRange = (m) => m.score === null || (m.score >= +lo.value && m.score <= +hi.value);
  const matches = (g) => g.members.some((m) => m.role !== "keep" && inRange(m));
  const shownGroups = () => data.groups.filter(matches);
  const removes = (s) => s.skipped ? [] :
    s.candidates.filter((p) => p !== s.keeper && !s.unticked.has(p));

  const input = (type, cls, name) => {
    const e = document.createElement("input");
    e.type = type;
    e.className = cls;
    if (name) e.name = name;
    return e;
  };
  const labelled = (box, text) => {
    const l = document.createElement("label");
    l.append(box, " " + text);
    return l;
  };

  function memberCard(g, m) {
    const s = choices.get(String(g.group));
    const dim = m.role !== "keep" && !inRange(m) ? " dim" : "";
    const fig = el("figure", "member role-" + m.role + dim);
    fig.dataset.path = m.path;
    fig.append(preview(m.thumb));
    const cap = el("figcaption");
    cap.append(el("span", "badge", BADGE[m.role] || m.role));
    cap.append(pathView(m.path));
    const res = m.w && m.h ? m.w + "\u00d7" + m.h : "?";
    const score = m.role === "keep" ? "keeper" : "score " + fmtScore(m.score);
    cap.append(el("div", "meta", fmtBytes(m.size) + " \u00b7 " + res + " \u00b7 " + score));
    cap.append(el("div", "meta", "modified " + m.mtime));
    if (m.match) cap.append(verdict(m.match, m.evidence, m.pair));
    if (s.candidates.includes(m.path)) {
      const box = el("div", "choices");
      const keep = input("radio", "choice-keeper", "keeper-" + g.group);
      const remove = input("checkbox", "choice-remove");
      keep.dataset.path = m.path;
      remove.dataset.path = m.path;
      box.append(labelled(keep, "keeper"), labelled(remove, "remove"));
      cap.append(box);
    }
    fig.append(cap);
    return fig;
  }

  // the user's choices drawn on a rendered group: keeper, ticks, badges
  function decorate(sec) {
    const s = choices.get(sec.dataset.group);
    sec.classList.toggle("skipped", s.skipped);
    sec.querySelector("input.choice-group").checked = !s.skipped;
    for (const fig of sec.querySelectorAll("figure.member")) {
      const box = fig.querySelector(".choices");
      if (!box) continue;
      const path = fig.dataset.path, isKeeper = path === s.keeper;
      const keep = box.querySelector("input.choice-keeper");
      const remove = box.querySelector("input.choice-remove");
      keep.checked = isKeeper;
      keep.disabled = s.skipped;
      remove.checked = !isKeeper && !s.unticked.has(path);
      remove.disabled = isKeeper || s.skipped;
      fig.classList.toggle("role-keep", isKeeper);
      fig.classList.toggle("role-remove", !isKeeper);
      fig.classList.toggle("unticked", !isKeeper && !remove.checked);
      fig.querySelector(".badge").textContent = isKeeper ? "KEEP" : "remove";
    }
  }

  function choicesSummary() {
    let n = 0;
    for (const s of choices.values()) n += removes(s).length;
    byId("choices-info").textContent = "your choices: " + n + " files to remove";
  }

  function groupSection(g) {
    const sec = el("section", "group");
    sec.dataset.group = String(g.group);
    const removable = g.members.filter((m) => m.role === "remove").length;
    const h = el("h2", null, "Group " + g.group + ": " + g.members.length + " files, " +
      removable + " removable (" + fmtBytes(g.bytes_removable) + ")");
    const whole = labelled(input("checkbox", "choice-group"), "act on this group");
    whole.className = "group-choice";
    h.append(whole);
    sec.append(h);
    const keeper = g.members.find((m) => m.path === g.keeper);
    const why = el("p", "keep-reason");
    why.append(el("b", null, "Keeper: "), baseName(g.keeper),
      " \u2014 " + (g.keep_reason || "chosen by the keep policy"));
    if (keeper && keeper.role !== "keep") why.append(" (kept as " + keeper.role + ")");
    sec.append(why);
    const box = el("div", "members");
    for (const m of g.members) box.append(memberCard(g, m));
    sec.append(box);
    decorate(sec);
    return sec;
  }

  function markCurrent() {
    const secs = [...document.querySelectorAll("section.group")];
    const at = current - page * data.page_size;
    secs.forEach((sec, k) => sec.classList.toggle("current", k === at));
    for (const f of document.querySelectorAll("figure.member.current")) {
      f.classList.remove("current");
    }
    const sec = secs[at];
    if (!sec) return;
    const figs = sec.querySelectorAll("figure.member");
    currentFile = Math.min(Math.max(currentFile, 0), figs.length - 1);
    figs[currentFile].classList.add("current");
    document.body.dataset.current = sec.dataset.group;
    document.body.dataset.currentFile = figs[currentFile].dataset.path;
  }

  function render() {
    byId("lo-value").textContent = (+lo.value).toFixed(6);
    byId("hi-value").textContent = (+hi.value).toFixed(6);
    const list = shownGroups();
    const pages = Math.max(1, Math.ceil(list.length / data.page_size));
    page = Math.min(Math.max(page, 0), pages - 1);
    const frag = document.createDocumentFragment();
    const slice = list.slice(page * data.page_size, (page + 1) * data.page_size);
    for (const g of slice) frag.append(groupSection(g));
    if (!data.groups.length) frag.append(el("p", "empty", "No duplicate groups at this threshold."));
    else if (!list.length) frag.append(el("p", "empty", "No groups in this score range."));
    byId("groups").replaceChildren(frag);
    byId("count").textContent = list.length + " of " + data.groups.length + " groups";
    byId("page-info").textContent = "page " + (page + 1) + " of " + pages;
    byId("prev").disabled = page === 0;
    byId("next").disabled = page >= pages - 1;
    current = Math.min(Math.max(current, page * data.page_size),
      Math.max(page * data.page_size + slice.length - 1, 0));
    markCurrent();
    choicesSummary();
    document.body.dataset.groupsShown = String(list.length);
    document.body.dataset.groupsOnPage = String(slice.length);
  }

  function nearMisses() {
    const near = data.near_misses || [];
    document.body.dataset.nearMisses = String(near.length);
    const box = byId("near-misses");
    box.replaceChildren();
    box.hidden = !near.length;
    if (!near.length) return;
    const unverified = near.some((p) => p.match === "not_verified");
    box.append(el("h2", null, "Other shots of the same scene" +
      (unverified ? ", and pairs not verified" : "") +
      ": not proposed for removal (" + data.near_misses_total + " pairs)"));
    for (const p of near) {
      const row = el("div", "near-pair");
      for (const side of [p.a, p.b]) {
        const fig = el("figure", "member role-near");
        fig.append(preview(side.thumb));
        const cap = el("figcaption");
        cap.append(pathView(side.path));
        fig.append(cap);
        row.append(fig);
      }
      const why = verdict(p.match, p.evidence, p.pair);
      why.append(el("div", "meta", "score " + fmtScore(p.score)));
      row.append(why);
      box.append(row);
    }
    if (data.near_misses_total > near.length) {
      box.append(el("p", "meta", (data.near_misses_total - near.length) +
        " more pairs with lower scores are listed under near_misses in report.json."));
    }
  }

  // unreadable files (report "errors") and files the scan left out (report "skipped")
  function fileList(id, title, rows, total, more) {
    const box = byId(id);
    box.replaceChildren();
    box.hidden = !total;
    if (!total) return;
    box.append(el("h2", null, title));
    const ul = el("ul");
    for (const r of rows) {
      const li = el("li");
      li.append(pathView(r.path), el("div", "meta", r.why));
      ul.append(li);
    }
    box.append(ul);
    if (total > rows.length) box.append(el("p", "meta", (total - rows.length) + " more " + more));
  }

  function otherFiles() {
    const errors = data.errors || [];
    fileList("unreadable", "Unreadable files: not compared (" + data.errors_total + ")",
      errors.map((e) => ({ path: e.path, why: e.error })), data.errors_total,
      "are listed under errors in report.json.");
    const skipped = data.skipped || [];
    const counts = Object.entries(data.skipped_counts || {})
      .map(([why, n]) => n + " " + why).join(", ");
    fileList("skipped", "Left out by the scan (" + data.skipped_total + "): " + counts,
      skipped.map((s) => ({ path: s.path, why: s.reason })), data.skipped_total,
      "are listed under skipped in report.json.");
    document.body.dataset.unreadable = String(data.errors_total);
    document.body.dataset.skipped = String(data.skipped_total);
  }

  function start(d) {
    data = d;
    choices.clear();
    for (const g of data.groups) {
      const candidates = g.members.filter((m) => m.role === "keep" || m.role === "remove")
        .map((m) => m.path);
      choices.set(String(g.group), { group: g.group, keeper: g.keeper, candidates,
        unticked: new Set(), skipped: false });
    }
    const summary = byId("summary");
    summary.replaceChildren();
    for (const [label, value] of data.summary) {
      summary.append(el("dt", null, label), el("dd", null, shown(value)));
    }
    for (const r of [lo, hi]) {
      r.min = String(data.score_min);
      r.max = "1";
      r.step = "0.000001";
    }
    lo.value = String(data.score_min);
    hi.value = "1";
    page = 0;
    current = 0;
    const preset = new URLSearchParams(location.hash.slice(1));  // e.g. #min=0.995&page=2
    if (preset.has("min")) lo.value = preset.get("min");
    if (preset.has("max")) hi.value = preset.get("max");
    if (preset.has("page")) page = (parseInt(preset.get("page"), 10) || 1) - 1;
    current = page * data.page_size;
    render();
    nearMisses();
    otherFiles();
    bars();
    document.body.dataset.ready = "1";
    document.body.dataset.choices = "1";
  }

  // the sticky bars' heights, so that a group scrolled into view is not hidden under them
  function bars() {
    const root = document.documentElement.style;
    root.setProperty("--top-bar", byId("controls").offsetHeight + 8 + "px");
    root.setProperty("--bottom-bar", byId("actions").offsetHeight + 8 + "px");
  }
  window.addEventListener("resize", bars);

  // -- the user's choices --------------------------------------------------------------
  function change(sec, fn) {
    const s = choices.get(sec.dataset.group);
    if (!s) return;
    fn(s);
    decorate(sec);
    choicesSummary();
  }
  const makeKeeper = (s, path) => {
    s.unticked.delete(s.keeper);  // the former keeper becomes removable
    s.keeper = path;
    s.unticked.delete(path);
  };
  const toggleRemove = (s, path, on) => {
    if (on) s.unticked.delete(path); else s.unticked.add(path);
  };

  byId("groups").addEventListener("change", (e) => {
    const t = e.target;
    const sec = t.closest("section.group");
    if (!sec) return;
    change(sec, (s) => {
      if (t.classList.contains("choice-group")) s.skipped = !t.checked;
      else if (t.classList.contains("choice-keeper") && t.checked) makeKeeper(s, t.dataset.path);
      else if (t.classList.contains("choice-remove")) toggleRemove(s, t.dataset.path, t.checked);
    });
  });

  // -- keyboard ------------------------------------------------------------------------
  function moveGroup(step) {
    const total = shownGroups().length;
    if (!total) return;
    current = Math.min(Math.max(current + step, 0), total - 1);
    currentFile = 0;
    const want = Math.floor(current / data.page_size);
    if (want !== page) { page = want; render(); } else markCurrent();
    const sec = document.querySelector("section.group.current");
    if (sec) sec.scrollIntoView({ block: "nearest" });
  }
  function onFile(fn) {
    const sec = document.querySelector("section.group.current");
    const fig = sec && sec.querySelector("figure.member.current");
    if (fig) change(sec, (s) => fn(s, fig.dataset.path));
  }
  const KEYS = {
    j: () => moveGroup(1), k: () => moveGroup(-1),
    l: () => { currentFile += 1; markCurrent(); }, h: () => { currentFile -= 1; markCurrent(); },
    x: () => onFile((s, path) => {
      if (s.candidates.includes(path) && path !== s.keeper) {
        toggleRemove(s, path, s.unticked.has(path));
      }
    }),
    m: () => onFile((s, path) => { if (s.candidates.includes(path)) makeKeeper(s, path); }),
    g: () => onFile((s) => { s.skipped = !s.skipped; }),
  };
  KEYS.ArrowRight = KEYS.l;
  KEYS.ArrowLeft = KEYS.h;
  document.addEventListener("keydown", (e) => {
    if (!data || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest("input, select, textarea, button")) return;
    const fn = KEYS[e.key];
    if (!fn) return;
    e.preventDefault();
    fn();
  });

  // -- filters and pages ---------------------------------------------------------------
  const onRange = () => { page = 0; current = 0; render(); };
  lo.addEventListener("input", () => {
    if (+lo.value > +hi.value) hi.value = lo.value;
    onRange();
  });
  hi.addEventListener("input", () => {
    if (+hi.value < +lo.value) lo.value = hi.value;
    onRange();
  });
  const turn = (step) => {
    page += step;
    current = page * data.page_size;
    render();
    window.scrollTo(0, 0);
  };
  byId("prev").addEventListener("click", () => turn(-1));
  byId("next").addEventListener("click", () => turn(1));

  const say = (text) => { byId("status").textContent = text; bars(); };

  // -- report.html: export the choices for `apply REPORT --plan FILE` -------------------
  byId("export-choices").addEventListener("click", () => {
    const groups = [];
    for (const s of choices.values()) {
      if (!s.skipped) groups.push({ group: s.group, keeper: s.keeper, remove: removes(s) });
    }
    const plan = { format: "imgsim-index-choices", version: 1,
      report_timestamp: data.timestamp, groups };
    const blob = new Blob([JSON.stringify(plan, null, 2) + "\n"], { type: "application/json" });
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "choices-" + String(data.timestamp || "report").replace(/[^0-9A-Za-z_-]/g, "_")
      + ".json";
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  });

  // -- the served page: the API -----------------------------------------------------------
  async function call(method, url, body) {
    const opts = { method, headers: {} };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(url, opts);
    const answer = await res.json();
    if (!res.ok) throw new Error(answer.error || res.statusText);
    return answer;
  }

  function applyBody() {
    const keepers = {}, skip = [], skip_groups = [];
    for (const s of choices.values()) {
      if (s.skipped) { skip_groups.push(s.group); continue; }
      keepers[s.group] = s.keeper;
      for (const p of s.candidates) if (p !== s.keeper && s.unticked.has(p)) skip.push(p);
    }
    const body = { report: reportPath, action: byId("action").value, keepers, skip, skip_groups };
    if (body.action === "move") body.move_to = byId("move-to").value;
    return body;
  }

  async function apply() {
    try {
      const res = await call("POST", "/v1/apply", applyBody());
      journal = res.journal;
      byId("undo").disabled = false;
      const refused = res.refused.map((r) => "refused " + r.path + ": " + r.reason).join("\n");
      say("Applied: " + res.done.length + " files (" + res.action + "), freed " +
        fmtBytes(res.bytes_freed) + ", journal " + res.journal + (refused ? "\n" + refused : ""));
    } catch (e) { say("Apply failed: " + e.message); }
  }

  async function undoLast() {
    try {
      const res = await call("POST", "/v1/undo", { journal });
      byId("undo").disabled = true;
      say("Undone: " + res.restored.length + " files restored" +
        res.not_restored.map((r) => "\nnot restored " + r.path + ": " + r.reason).join(""));
    } catch (e) { say("Undo failed: " + e.message); }
  }

  async function load(path) {
    try {
      const res = await call("GET", "/v1/review" +
        (path ? "?report=" + encodeURIComponent(path) : ""));
      reportPath = res.path;
      byId("report").value = res.path;
      byId("move-to").value = res.path.replace(/report\.json$/, "moved");
      start(res.review);
    } catch (e) {
      byId("groups").replaceChildren(el("p", "empty", e.message));
      document.body.dataset.ready = "1";
    }
  }

  async function startServed() {
    byId("apply").addEventListener("click", apply);
    byId("undo").addEventListener("click", undoLast);
    byId("action").addEventListener("change", () => {
      byId("move-to").hidden = byId("action").value !== "move";
    });
    const wanted = new URLSearchParams(location.search).get("report");
    try {
      const list = await call("GET", "/v1/reports");
      for (const p of list.reports) {
        const o = el("option", null, shown(p));
        o.value = p;
        byId("report").append(o);
      }
    } catch (e) { say(e.message); }
    byId("report").addEventListener("change", () => load(byId("report").value));
    await load(wanted || byId("report").value || null);
  }

  if (served) startServed(); else start(JSON.parse(embedded));
})();
