"""The gallery page's static style and script (no data in here; see html.py).

The script reads the report from a <script type="application/json"> block and
builds the page with createElement/textContent only: file names are untrusted
input and never pass through innerHTML. A name holding a control character, a
format character (bidirectional overrides such as U+202E, zero-width marks), a
line separator or a lone surrogate is shown escaped, as the console shows it
(Python's ascii()): \\u202e, \\n, \\x1b, backslashes doubled (`shown` in SCRIPT).
It shows PAGE_SIZE groups at a time, so a report with tens of thousands of pairs
opens as fast as a small one.
The URL fragment can preset the view: report.html#min=0.995&max=1&page=2.
"""

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f4; color: #222; }
header { background: #fff; padding: 12px 20px 0; border-bottom: 1px solid #ddd; }
h1 { font-size: 18px; margin: 0 0 6px; }
dl#summary { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px;
  margin: 0 0 8px; }
dl#summary dt { color: #666; } dl#summary dd { margin: 0; overflow-wrap: anywhere; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 18px; align-items: center; background: #fff;
  position: sticky; top: 0; z-index: 1; padding: 8px 20px; border-bottom: 1px solid #ddd; }
.controls label { white-space: nowrap; } .controls output { font-variant-numeric: tabular-nums; }
main { padding: 12px 20px; }
section.group { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 0 0 14px;
  padding: 10px; }
section.group h2 { font-size: 15px; margin: 0 0 8px; }
.members { display: flex; flex-wrap: wrap; gap: 10px; }
figure.member { margin: 0; width: 244px; border: 3px solid #ccc; border-radius: 5px; padding: 4px;
  background: #fafafa; }
figure.role-keep { border-color: #2e8b3a; } figure.role-remove { border-color: #c0392b; }
figure.role-protected, figure.role-frame,
figure.role-unverified { border-color: #2f6db5; }
figure.dim { opacity: .35; }
figure img, .nothumb { display: block; width: 240px; height: 180px; object-fit: contain;
  background: #e8e8e8; }
.nothumb { line-height: 180px; text-align: center; color: #777; }
figcaption { font-size: 12px; margin-top: 4px; }
.path { font-family: ui-monospace, monospace; overflow-wrap: anywhere; }
.badge { display: inline-block; font-weight: 600; font-size: 11px; color: #fff; padding: 0 6px;
  border-radius: 3px; background: #c0392b; }
.role-keep .badge { background: #2e8b3a; }
.role-protected .badge, .role-frame .badge,
.role-unverified .badge { background: #2f6db5; }
.meta { color: #555; } .empty { color: #666; padding: 30px; text-align: center; }
.verdict { color: #333; overflow-wrap: anywhere; }
.verdict b { font-weight: 600; }
section#near-misses { margin: 0 20px 20px; padding: 10px; background: #fff;
  border: 1px solid #ddd; border-radius: 6px; }
section#near-misses h2 { font-size: 15px; margin: 0 0 8px; }
.near-pair { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start;
  padding: 8px 0; border-top: 1px solid #eee; }
.near-pair > .verdict { flex: 1 1 200px; }
figure.role-near { border-color: #999; }
"""

SCRIPT = r"""
"use strict";
window.addEventListener("error", (e) => {
  document.body.dataset.errors = (document.body.dataset.errors || "") + e.message + "\n";
});
(() => {
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const byId = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  };
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
  const fmtScore = (s) => (s === null || s === undefined ? "n/a" : String(s));
  const BADGE = { keep: "KEEP", remove: "remove", protected: "protected (kept)",
    frame: "video frame (kept)", unverified: "not a verified copy (kept)" };
  const groups = data.groups;
  const pageSize = data.page_size;
  const lo = byId("score-lo"), hi = byId("score-hi");
  let page = 0;

  for (const [label, value] of data.summary) {
    byId("summary").append(el("dt", null, label), el("dd", null, shown(value)));
  }
  for (const input of [lo, hi]) {
    input.min = String(data.score_min);
    input.max = "1";
    input.step = "0.0001";
  }
  lo.value = String(data.score_min);
  hi.value = "1";
  const start = new URLSearchParams(location.hash.slice(1));  // e.g. #min=0.995&page=2
  if (start.has("min")) lo.value = start.get("min");
  if (start.has("max")) hi.value = start.get("max");
  if (start.has("page")) page = (parseInt(start.get("page"), 10) || 1) - 1;

  const inRange = (m) => m.score === null || (m.score >= +lo.value && m.score <= +hi.value);
  const matches = (g) => g.members.some((m) => m.role !== "keep" && inRange(m));

  const preview = (thumb) => {
    if (!thumb) return el("div", "nothumb", "no preview");
    const img = document.createElement("img");
    img.loading = "lazy";
    img.decoding = "async";
    img.alt = "";
    img.src = thumb;
    return img;
  };
  // "copy: B resized to 50%, re-encoded", then which file is A and which is B
  const baseName = (path) => String(path).split("/").pop();
  const verdict = (match, evidence, pair) => {
    const v = el("div", "verdict");
    v.append(el("b", null, match.replace("_", " ")), ": " + evidence);
    if (pair) {
      v.append(el("div", "meta", "A: " + shown(baseName(pair[0])) + ", B: " +
        shown(baseName(pair[1]))));
    }
    return v;
  };

  function memberCard(m) {
    const dim = m.role !== "keep" && !inRange(m) ? " dim" : "";
    const fig = el("figure", "member role-" + m.role + dim);
    fig.dataset.path = m.path;  // for the choices script
    fig.append(preview(m.thumb));
    const cap = el("figcaption");
    cap.append(el("span", "badge", BADGE[m.role] || m.role));
    cap.append(el("div", "path", shown(m.path)));
    const res = m.w && m.h ? m.w + "\u00d7" + m.h : "?";
    const score = m.role === "keep" ? "keeper" : "score " + fmtScore(m.score);
    cap.append(el("div", "meta", fmtBytes(m.size) + " \u00b7 " + res + " \u00b7 " + score));
    cap.append(el("div", "meta", "modified " + m.mtime));
    if (m.match) cap.append(verdict(m.match, m.evidence, m.pair));
    fig.append(cap);
    return fig;
  }

  function nearMisses() {
    const near = data.near_misses || [];
    document.body.dataset.nearMisses = String(near.length);
    if (!near.length) return;
    const box = byId("near-misses");
    box.hidden = false;
    const unverified = near.some((p) => p.match === "not_verified");
    box.append(el("h2", null, "Other shots of the same scene" +
      (unverified ? ", and pairs that could not be verified" : "") +
      ": not proposed for removal (" + data.near_misses_total + " pairs)"));
    for (const p of near) {
      const row = el("div", "near-pair");
      for (const side of [p.a, p.b]) {
        const fig = el("figure", "member role-near");
        fig.append(preview(side.thumb));
        const cap = el("figcaption");
        cap.append(el("div", "path", shown(side.path)));
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

  function groupSection(g) {
    const sec = el("section", "group");
    sec.dataset.group = String(g.group);
    const removable = g.members.filter((m) => m.role === "remove").length;
    sec.append(el("h2", null, "Group " + g.group + ": " + g.members.length + " files, " +
      removable + " removable (" + fmtBytes(g.bytes_removable) + ")"));
    const box = el("div", "members");
    for (const m of g.members) box.append(memberCard(m));
    sec.append(box);
    return sec;
  }

  function render() {
    byId("lo-value").textContent = (+lo.value).toFixed(4);
    byId("hi-value").textContent = (+hi.value).toFixed(4);
    const shown = groups.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / pageSize));
    page = Math.min(Math.max(page, 0), pages - 1);
    const list = byId("groups");
    const frag = document.createDocumentFragment();
    const slice = shown.slice(page * pageSize, (page + 1) * pageSize);
    for (const g of slice) frag.append(groupSection(g));
    if (!groups.length) frag.append(el("p", "empty", "No duplicate groups at this threshold."));
    else if (!shown.length) frag.append(el("p", "empty", "No groups in this score range."));
    list.replaceChildren(frag);
    byId("count").textContent = shown.length + " of " + groups.length + " groups";
    byId("page-info").textContent = "page " + (page + 1) + " of " + pages;
    byId("prev").disabled = page === 0;
    byId("next").disabled = page >= pages - 1;
    document.body.dataset.groupsShown = String(shown.length);
    document.body.dataset.groupsOnPage = String(slice.length);
    document.dispatchEvent(new Event("gallery-rendered"));
  }

  const onRange = () => { page = 0; render(); };
  lo.addEventListener("input", () => {
    if (+lo.value > +hi.value) hi.value = lo.value;
    onRange();
  });
  hi.addEventListener("input", () => {
    if (+hi.value < +lo.value) lo.value = hi.value;
    onRange();
  });
  byId("prev").addEventListener("click", () => { page -= 1; render(); window.scrollTo(0, 0); });
  byId("next").addEventListener("click", () => { page += 1; render(); window.scrollTo(0, 0); });
  render();
  nearMisses();
  document.body.dataset.ready = "1";
})();
"""


# The user's choices (untick files and groups, change a keeper) and their export, in a
# script of their own: it decorates each rendered group (the page script announces a
# render with a "gallery-rendered" event) and keeps the choices across pages and filters.
CHOICES_STYLE = """
.choices { display: flex; gap: 10px; font-size: 12px; margin-top: 4px; }
.group-choice { font-size: 12px; font-weight: normal; margin-left: 10px; }
figure.unticked { opacity: .6; border-style: dashed; }
section.group.skipped { opacity: .5; }
"""

CHOICES_SCRIPT = r"""
(() => {
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const byId = (id) => document.getElementById(id);
  const state = new Map();  // group number (text) -> {keeper, candidates, unticked, skipped}
  for (const g of data.groups) {
    const candidates = g.members.filter((m) => m.role === "keep" || m.role === "remove")
      .map((m) => m.path);
    state.set(String(g.group), { group: g.group, keeper: g.keeper, candidates,
      unticked: new Set(), skipped: false });
  }
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

  function decorate(sec) {
    const s = state.get(sec.dataset.group);
    if (!s) return;
    sec.classList.toggle("skipped", s.skipped);
    let whole = sec.querySelector("input.choice-group");
    if (!whole) {
      whole = input("checkbox", "choice-group");
      const l = labelled(whole, "act on this group");
      l.className = "group-choice";
      sec.querySelector("h2").append(l);
    }
    whole.checked = !s.skipped;
    for (const fig of sec.querySelectorAll("figure.member")) {
      const path = fig.dataset.path;
      if (!s.candidates.includes(path)) continue;
      let box = fig.querySelector(".choices");
      if (!box) {
        box = document.createElement("div");
        box.className = "choices";
        const keep = input("radio", "choice-keeper", "keeper-" + s.group);
        const remove = input("checkbox", "choice-remove");
        keep.dataset.path = path;
        remove.dataset.path = path;
        box.append(labelled(keep, "keeper"), labelled(remove, "remove"));
        fig.querySelector("figcaption").append(box);
      }
      const isKeeper = path === s.keeper;
      box.querySelector("input.choice-keeper").checked = isKeeper;
      const remove = box.querySelector("input.choice-remove");
      remove.checked = !isKeeper && !s.unticked.has(path);
      remove.disabled = isKeeper || s.skipped;
      box.querySelector("input.choice-keeper").disabled = s.skipped;
      fig.classList.toggle("role-keep", isKeeper);
      fig.classList.toggle("role-remove", !isKeeper);
      fig.classList.toggle("unticked", !isKeeper && !remove.checked);
      fig.querySelector(".badge").textContent = isKeeper ? "KEEP" : "remove";
    }
  }

  function summary() {
    let n = 0;
    for (const s of state.values()) n += removes(s).length;
    byId("choices-info").textContent = "your choices: " + n + " files to remove";
  }

  function decorateAll() {
    for (const sec of document.querySelectorAll("section.group")) decorate(sec);
    summary();
  }

  byId("groups").addEventListener("change", (e) => {
    const t = e.target;
    const sec = t.closest("section.group");
    const s = sec && state.get(sec.dataset.group);
    if (!s) return;
    if (t.classList.contains("choice-group")) s.skipped = !t.checked;
    else if (t.classList.contains("choice-keeper") && t.checked) {
      s.unticked.delete(s.keeper);  // the former keeper becomes removable, as on the review page
      s.keeper = t.dataset.path;
      s.unticked.delete(s.keeper);
    } else if (t.classList.contains("choice-remove")) {
      if (t.checked) s.unticked.delete(t.dataset.path);
      else s.unticked.add(t.dataset.path);
    }
    decorate(sec);
    summary();
  });

  byId("export-choices").addEventListener("click", () => {
    const groups = [];
    for (const s of state.values()) {
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

  document.addEventListener("gallery-rendered", decorateAll);
  decorateAll();
  document.body.dataset.choices = "1";
})();
"""
