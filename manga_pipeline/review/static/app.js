// manga-color review: plain JS over the JSON API of manga_pipeline/review/app.py.
// Every change is a workspace override (replayed by `manga-color run`); the DOM is built with textContent only,
// never innerHTML, because character names are user text.
"use strict";

const TOKEN = document.querySelector('meta[name="review-token"]').content;
const SVGNS = "http://www.w3.org/2000/svg";
const $ = (sel) => document.querySelector(sel);

const S = {
  chapter: null,        // /api/chapter
  page: null,           // /api/pages/<id>
  panel: null,          // selected panel order (int) or null
  char: null,           // selected character index or null
  hintColor: "#e05050",
  hintMode: false,
  view: "side",         // "side" | "toggle"
  showOriginal: false,  // in toggle mode
  dirty: new Set(),     // page ids changed since their last re-run in this browser
  job: null,
};

// --- helpers -----------------------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  return node;
}

async function api(method, url, data, isForm = false) {
  const opts = { method, headers: {} };
  if (method !== "GET") opts.headers["X-Review-Token"] = TOKEN;
  if (data !== undefined) {
    if (isForm) opts.body = data;
    else { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(data); }
  }
  const r = await fetch(url, opts);
  let body = null;
  try { body = await r.json(); } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((body && body.error) || `${r.status} ${r.statusText}`);
  return body;
}

let toastTimer = null;
function toast(msg, isError = false) {
  const t = $("#toast");
  t.textContent = msg;
  t.classList.toggle("error", isError);
  t.classList.add("show");
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove("show"), isError ? 6000 : 2500);
}

function guard(fn) {
  return async (...args) => {
    try { return await fn(...args); } catch (e) { toast(e.message, true); console.error(e); }
  };
}

const statusClass = (s) => "badge s-" + s.replace(/\s+/g, "-");
const pageUrl = (id, what) => `/api/pages/${id}/${what}`;
const bankByName = () => Object.fromEntries((S.chapter ? S.chapter.bank : []).map((b) => [b.name, b]));

// --- routing -----------------------------------------------------------------------------------------------

function show(view) {
  for (const v of ["chapter", "page", "characters"]) $(`#view-${v}`).hidden = v !== view;
}

async function route() {
  const h = location.hash.replace(/^#/, "");
  const m = h.match(/^\/page\/([0-9a-f]{64})(?:\/(-?\d+))?$/);
  await loadChapter();
  if (m) {
    show("page");
    await openPage(m[1], m[2] !== undefined ? parseInt(m[2], 10) : null);
  } else if (h === "/characters") {
    show("characters");
    renderBank();
  } else {
    show("chapter");
    renderGrid();
  }
}

async function loadChapter() {
  S.chapter = await api("GET", "/api/chapter");
  $("#ws-name").textContent = S.chapter.workspace;
}

// --- chapter grid ------------------------------------------------------------------------------------------

function renderGrid() {
  const grid = $("#page-grid");
  grid.replaceChildren();
  for (const p of S.chapter.pages) {
    grid.append(el("a", { class: "card", href: `#/page/${p.page_id}`, dataset: { pageId: p.page_id, status: p.status } },
      el("img", { src: `${pageUrl(p.page_id, "thumb.png")}?v=${encodeURIComponent(p.version)}`, alt: p.name, loading: "lazy" }),
      el("div", { class: "meta" },
        el("span", { class: "name", text: `${p.position + 1}. ${p.name}`, title: p.name }),
        el("span", { class: statusClass(p.status), text: p.status })),
      el("div", { class: "issues", text: p.run_status === "failed" ? p.reason : p.issues.join(", ") })));
  }
  if (!S.chapter.pages.length) grid.append(el("p", { text: "No pages yet: `manga-color add` some, then `manga-color run`." }));
}

// --- one page ----------------------------------------------------------------------------------------------

async function openPage(pageId, panel) {
  const fresh = !S.page || S.page.page_id !== pageId;
  S.page = await api("GET", `/api/pages/${pageId}`);
  if (fresh) { S.char = null; S.hintMode = false; }
  S.panel = panel;
  setImages(fresh);
  renderPage();
}

function setImages(fresh) {
  const p = S.page;
  const orig = $("#img-original"), col = $("#img-colored");
  for (const img of [orig, col]) { img.width = p.width; img.height = p.height; }
  for (const ov of [$("#ov-original"), $("#ov-colored")]) {
    ov.setAttribute("viewBox", `0 0 ${p.width} ${p.height}`);
    ov.setAttribute("preserveAspectRatio", "none");
  }
  if (fresh) orig.src = pageUrl(p.page_id, "original.png");
  return refreshColored();
}

function refreshColored() {
  // resolves once the coloured image on screen is the page's current output
  const p = S.page, col = $("#img-colored");
  return new Promise((resolve) => {
    if (!p.has_output) {
      col.removeAttribute("src");
      col.dataset.version = "";
      col.alt = p.run_status === "failed" ? `failed: ${p.reason}` : "not coloured yet (run the page)";
      return resolve();
    }
    if (col.dataset.version === p.version && col.complete) return resolve();
    col.onload = () => { col.dataset.version = p.version; resolve(); };
    col.onerror = () => { col.dataset.version = ""; resolve(); };
    col.src = `${pageUrl(p.page_id, "colored.png")}?v=${encodeURIComponent(p.version)}`;
  });
}

function renderPage() {
  const p = S.page;
  const idx = S.chapter.pages.findIndex((x) => x.page_id === p.page_id);
  $("#page-title").textContent = `Page ${p.position + 1} / ${S.chapter.pages.length}: ${p.name}`;
  $("#prev-page").disabled = idx <= 0;
  $("#next-page").disabled = idx < 0 || idx >= S.chapter.pages.length - 1;
  const badge = $("#page-status");
  badge.className = statusClass(p.status);
  badge.textContent = p.status;
  const allLocked = p.status === "accepted";
  $("#accept-page").textContent = allLocked ? "Release page" : "Accept page";
  $("#dirty-note").hidden = !S.dirty.has(p.page_id);
  $("#page-issues").textContent = p.run_status === "failed" ? `Failed: ${p.reason}` : p.issues.join(", ");
  renderStage();
  renderOverlay();
  renderSidebar();
}

function renderStage() {
  const stage = $("#stage");
  stage.className = `stage ${S.view}`;
  $("#toggle-image").hidden = S.view !== "toggle";
  $("#toggle-image").textContent = S.showOriginal ? "Show coloured" : "Show original";
  $("#pane-original").classList.toggle("off", S.view === "toggle" && !S.showOriginal);
  $("#pane-colored").classList.toggle("off", S.view === "toggle" && S.showOriginal);
}

function labelFor(c) {
  const name = c.identity === null ? "unknown" : c.identity;
  if (c.source === "override") return `${name} (set)`;
  return c.identity === null ? "unknown?" : `${name} ${Math.round(c.confidence * 100)}%`;
}

function renderOverlay() {
  const p = S.page;
  const fs = Math.max(10, Math.round(p.width / 45));
  for (const ov of [$("#ov-original"), $("#ov-colored")]) {
    ov.replaceChildren();
    ov.classList.toggle("hidden-ov", !$("#show-overlay").checked);
    ov.classList.toggle("hint-mode", S.hintMode);
    for (const pn of p.panel_list) {
      const cls = ["ov-item", "ov-panel", pn.order === S.panel ? "selected" : "", pn.locked ? "locked" : ""].join(" ");
      ov.append(svg("polygon", { class: cls, points: pn.polygon.map((xy) => xy.join(",")).join(" "),
        "stroke-width": Math.max(2, p.width / 300), dataset: { panel: pn.order } }));
      const [x0, y0] = pn.box;
      ov.append(svg("text", { class: "ov-item ov-label", x: x0 + fs * 0.3, y: y0 + fs * 1.1, "font-size": fs,
        "stroke-width": fs / 5, text: `#${pn.order}${pn.locked ? " 🔒" : ""}` }));
    }
    for (const c of p.character_list) {
      const [x0, y0, x1, y1] = c.box;
      const cls = ["ov-item", "ov-char", c.needs_review ? "review" : "", c.source === "override" ? "override" : "",
        c.index === S.char ? "selected" : ""].join(" ");
      ov.append(svg("rect", { class: cls, x: x0, y: y0, width: x1 - x0, height: y1 - y0,
        "stroke-width": Math.max(2, p.width / 400), dataset: { char: c.index } }));
      ov.append(svg("text", { class: `ov-item ov-label${c.needs_review ? " review" : ""}`, x: x0 + 3,
        y: Math.max(fs, y1 - fs * 0.3), "font-size": fs * 0.8, "stroke-width": fs / 6, text: labelFor(c) }));
    }
    const r = Math.max(4, p.width / 110);
    for (const h of p.hints) {
      ov.append(svg("circle", { class: "ov-item ov-hint", cx: h.x, cy: h.y, r, fill: h.color, "stroke-width": r / 3 }));
      ov.append(svg("circle", { class: "ov-item ov-hint-ring", cx: h.x, cy: h.y, r: r * 1.3, "stroke-width": r / 5 }));
    }
  }
}

function pagePoint(ov, ev) {
  const pt = ov.createSVGPoint();
  pt.x = ev.clientX; pt.y = ev.clientY;
  const q = pt.matrixTransform(ov.getScreenCTM().inverse());
  return { x: Math.floor(q.x), y: Math.floor(q.y) };  // the pixel under the pointer
}

function inPolygon(x, y, poly) {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i], [xj, yj] = poly[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function panelAt(x, y) {
  const hit = S.page.panel_list.find((pn) => inPolygon(x, y, pn.polygon));
  return hit ? hit.order : null;
}

const onOverlayClick = guard(async (ev) => {
  const ov = ev.currentTarget;
  const { x, y } = pagePoint(ov, ev);
  if (x < 0 || y < 0 || x >= S.page.width || y >= S.page.height) return;
  if (S.hintMode) {
    const res = await api("POST", pageUrl(S.page.page_id, "hints"), { x, y, color: S.hintColor });
    changed(res.page);
    if (S.panel === null) selectPanel(panelAt(x, y));
    toast(`hint ${S.hintColor} pinned at (${x}, ${y})`);
    return;
  }
  const hits = S.page.character_list.filter((c) => x >= c.box[0] && x < c.box[2] && y >= c.box[1] && y < c.box[3]);
  hits.sort((a, b) => (a.box[2] - a.box[0]) * (a.box[3] - a.box[1]) - (b.box[2] - b.box[0]) * (b.box[3] - b.box[1]));
  if (hits.length) {
    S.char = hits[0].index;
    selectPanel(hits[0].panel !== null ? hits[0].panel : panelAt(x, y));
    const pal = paletteOf(hits[0].identity);
    if (pal.length) S.hintColor = pal[0];
  } else {
    S.char = null;
    selectPanel(panelAt(x, y));
  }
});

function selectPanel(order) {
  S.panel = order;
  const suffix = order === null ? "" : `/${order}`;
  history.replaceState(null, "", `#/page/${S.page.page_id}${suffix}`);
  renderPage();
}

function changed(page) {
  S.page = page;
  S.dirty.add(page.page_id);
  renderPage();
}

// --- the sidebar: one panel --------------------------------------------------------------------------------

function paletteOf(name) {
  const b = name ? bankByName()[name] : null;
  return b ? b.palette : [];
}

function swatches(name, colors) {
  return el("div", { class: "swatches", dataset: { name } },
    el("span", { class: "palette-name", text: name }),
    colors.map((c) => {
      const b = el("button", {
        type: "button", class: `swatch${c === S.hintColor ? " chosen" : ""}`, title: `${name} ${c}`,
        dataset: { color: c }, "aria-label": `${name} ${c}`,
        onclick: () => { S.hintColor = c; S.hintMode = true; renderPage(); },
      });
      b.style.background = c;
      return b;
    }));
}

function renderSidebar() {
  const box = $("#panel-box");
  box.replaceChildren();
  const p = S.page;
  if (!p.panel_list.length && !p.character_list.length) {
    box.append(el("p", { text: p.has_output ? "No panels were found on this page." : "This page has not been run yet." }));
  }
  const pn = p.panel_list.find((x) => x.order === S.panel);
  if (!pn) {
    box.append(el("p", { class: "help", text: "Click a panel (or a character box) on the page to review it." }));
    return;
  }
  const pid = p.page_id;
  box.append(el("h3", {}, `Panel #${pn.order}`, pn.locked ? el("span", { class: "locked-note", text: "locked" }) : null));
  box.append(el("div", { class: "row" },
    el("button", { type: "button", id: "rerun-panel", class: "primary", onclick: guard(() => rerun(pn.order)),
      disabled: !!S.job, text: "Re-run panel" }),
    el("button", { type: "button", id: "lock-panel", text: pn.locked ? "Unlock panel" : "Accept (lock) panel",
      title: "A locked panel keeps its colours on every re-run",
      onclick: guard(async () => {
        const res = await api("POST", pageUrl(pid, `panels/${pn.order}/lock`), { locked: !pn.locked });
        S.page = res.page; renderPage(); await loadChapter();
        toast(pn.locked ? `panel #${pn.order} released` : `panel #${pn.order} locked`);
      }) })));

  // reference used for this panel (its page-level / scene reference)
  const withRef = S.chapter.bank.filter((b) => b.has_reference);
  const refSel = el("select", { id: "panel-reference" },
    el("option", { value: "", text: "(default)" }),
    withRef.map((b) => el("option", { value: b.name, text: b.name, selected: pn.reference === b.name })));
  refSel.addEventListener("change", guard(async () => {
    const res = await api("POST", pageUrl(pid, `panels/${pn.order}/reference`), { name: refSel.value || null });
    changed(res.page);
  }));
  box.append(el("h4", { text: "Reference for the panel" }), el("div", { class: "row" }, refSel));

  // characters
  box.append(el("h4", { text: "Characters" }));
  const chars = p.character_list.filter((c) => c.panel === pn.order);
  if (!chars.length) box.append(el("p", { class: "help", text: "No character found in this panel." }));
  for (const c of chars) box.append(characterRow(c));

  // hints
  box.append(el("h4", { text: "Colour hints" }));
  const names = [];
  const selected = p.character_list.find((c) => c.index === S.char);
  if (selected && selected.identity) names.push(selected.identity);
  for (const c of chars) if (c.identity && !names.includes(c.identity)) names.push(c.identity);
  if (pn.reference && !names.includes(pn.reference)) names.push(pn.reference);
  for (const b of S.chapter.bank) if (!names.includes(b.name)) names.push(b.name);
  for (const n of names) { const pal = paletteOf(n); if (pal.length) box.append(swatches(n, pal)); }
  const free = el("input", { type: "color", id: "free-color", value: S.hintColor, title: "any colour" });
  free.addEventListener("input", () => { S.hintColor = free.value; $("#hint-color").style.background = free.value; });
  free.addEventListener("change", () => { S.hintColor = free.value; S.hintMode = true; renderPage(); });
  const current = el("span", { class: "hint-dot", id: "hint-color", title: S.hintColor, dataset: { color: S.hintColor } });
  current.style.background = S.hintColor;
  box.append(el("div", { class: "row" },
    el("label", {}, "free colour ", free),
    el("button", { type: "button", id: "place-hint", class: S.hintMode ? "hint-on" : "",
      text: S.hintMode ? "Placing hints… (Esc)" : "Place hint",
      onclick: () => { S.hintMode = !S.hintMode; renderPage(); } }),
    current));
  const hints = p.hints.filter((h) => h.panel === pn.order);
  for (const h of hints) {
    const dot = el("span", { class: "hint-dot" });
    dot.style.background = h.color;
    box.append(el("div", { class: "hint-item", dataset: { id: h.id } }, dot, `${h.color} at (${h.x}, ${h.y})`,
      el("button", { type: "button", class: "remove-hint", text: "×", title: "remove this hint",
        onclick: guard(async () => changed((await api("DELETE", pageUrl(pid, `overrides/${h.id}`))).page)) })));
  }
  if (!hints.length) box.append(el("p", { class: "help", text: "Pick a colour, press Place hint, click the page." }));
}

function characterRow(c) {
  const pid = S.page.page_id;
  const sel = el("select", { class: "identity", dataset: { char: c.index }, "aria-label": `identity of character ${c.index}` },
    el("option", { value: "__unknown__", text: "(unknown)", selected: c.identity === null }),
    S.chapter.bank.map((b) => el("option", { value: b.name, text: b.name, selected: c.identity === b.name })),
    el("option", { value: "__new__", text: "+ new character from this box…" }));
  const row = el("div", { class: `char-row${c.index === S.char ? " selected" : ""}`, dataset: { char: c.index } },
    el("div", { class: "row" }, sel,
      el("span", { class: "conf", text: c.source === "override" ? (c.pending ? "set by you, re-run to apply" : "set by you")
        : `${Math.round(c.confidence * 100)}% auto` })));
  const setIdentity = guard(async (name, isNew = false) => {
    const res = await api("POST", pageUrl(pid, "identity"), { box: c.box, name, new_character: isNew });
    if (isNew) await loadChapter();
    S.char = c.index;
    changed(res.page);
    toast(`${name === null ? "unknown" : name}: stored for this box`);
  });
  sel.addEventListener("change", () => {
    if (sel.value === "__new__") {
      const input = el("input", { id: "new-char-name", placeholder: "name", maxlength: 64 });
      const go = el("button", { type: "button", id: "new-char-create", text: "Create",
        onclick: () => input.value.trim() && setIdentity(input.value.trim(), true) });
      row.append(el("div", { class: "row" }, input, go));
      input.focus();
      return;
    }
    setIdentity(sel.value === "__unknown__" ? null : sel.value);
  });
  row.addEventListener("mouseenter", () => highlightChar(c.index, true));
  row.addEventListener("mouseleave", () => highlightChar(c.index, false));
  return row;
}

function highlightChar(index, on) {
  for (const r of document.querySelectorAll(`rect.ov-char[data-char="${index}"]`)) r.classList.toggle("selected", on || index === S.char);
}

// --- re-runs -----------------------------------------------------------------------------------------------

async function rerun(panel) {
  const pid = S.page.page_id;
  const job = await api("POST", pageUrl(pid, "rerun"), { panel });
  S.job = job;
  const box = $("#job-box");
  box.hidden = false;
  box.dataset.state = job.state;
  renderSidebar();
  try {
    return await pollJob(job, panel, pid, box);
  } finally {
    S.job = null;
  }
}

async function pollJob(job, panel, pid, box) {
  for (;;) {
    const j = await api("GET", `/api/jobs/${job.id}`);
    $("#job-message").textContent = `${panel === null ? "page" : `panel #${panel}`}: ${j.message}` + (j.error ? ` — ${j.error}` : "");
    $("#job-progress").value = j.progress;
    if (j.state === "done" || j.state === "failed") {
      S.job = null;
      if (S.page && S.page.page_id === pid) {
        S.page = await api("GET", `/api/pages/${pid}`);
        if (j.state === "done") S.dirty.delete(pid);
        renderPage();
        await refreshColored();
      }
      await loadChapter();
      box.dataset.state = j.state;  // set last: "done" means the new colours are on screen
      if (j.state === "failed") toast(j.error, true); else toast(j.message);
      return j;
    }
    box.dataset.state = j.state;
    await new Promise((r) => setTimeout(r, 250));
  }
}

// --- characters --------------------------------------------------------------------------------------------

function renderBank() {
  const list = $("#bank-list");
  list.replaceChildren();
  for (const b of S.chapter.bank) {
    list.append(el("div", { class: "bank-card", dataset: { name: b.name } },
      el("strong", { text: b.name }),
      el("span", { class: "help", text: `  ${b.references} reference, ${b.samples} sample` }),
      el("div", { class: "thumbs" }, b.images.map((im) => el("img", {
        src: `/api/bank/${encodeURIComponent(b.name)}/images/${im.index}.png`, alt: `${b.name} ${im.kind}`, title: im.kind }))),
      b.palette.length ? swatchesStatic(b.palette) : el("p", { class: "help", text: "no colour reference yet: add one" })));
  }
  if (!S.chapter.bank.length) list.append(el("p", { text: "No characters registered yet." }));
}

function swatchesStatic(colors) {
  return el("div", { class: "swatches palette" }, colors.map((c) => {
    const s = el("span", { class: "swatch", title: c, dataset: { color: c } });
    s.style.background = c;
    return s;
  }));
}

const onRegister = guard(async (ev) => {
  ev.preventDefault();
  const fd = new FormData();
  fd.append("name", $("#reg-name").value.trim());
  fd.append("mode", $("#reg-mode").value);
  for (const id of ["reference", "sample"]) {
    const f = $(`#reg-${id}`).files[0];
    if (f) fd.append(id, f, f.name);
  }
  const out = $("#register-result");
  out.replaceChildren(el("span", { class: "help", text: "extracting the palette…" }));
  try {
    const res = await api("POST", "/api/bank", fd, true);
    out.replaceChildren(el("div", { id: "registered", dataset: { name: res.character.name } },
      el("strong", { text: `${res.character.name} registered` }), " palette:", swatchesStatic(res.character.palette)));
    $("#register-form").reset();
    await loadChapter();
    renderBank();
  } catch (e) {
    out.replaceChildren(el("span", { class: "error", text: e.message }));
  }
});

// --- export ------------------------------------------------------------------------------------------------

function exporter(format) {
  return guard(async () => {
    const res = await api("POST", "/api/export", { format });
    const out = $("#export-result");
    out.replaceChildren(`exported ${res.written} page(s) to ${res.path}` +
      (res.missing.length ? `; not ready: ${res.missing.join("; ")}` : ""));
    if (res.download) out.append(" ", el("a", { href: res.download, id: "export-download", text: "download" }));
  });
}

// --- wiring ------------------------------------------------------------------------------------------------

function init() {
  for (const ov of [$("#ov-original"), $("#ov-colored")]) ov.addEventListener("click", onOverlayClick);
  for (const r of document.querySelectorAll('input[name="view"]')) {
    r.addEventListener("change", () => { S.view = r.value; renderStage(); });
  }
  $("#toggle-image").addEventListener("click", () => { S.showOriginal = !S.showOriginal; renderStage(); });
  $("#show-overlay").addEventListener("change", renderOverlay);
  $("#rerun-page").addEventListener("click", guard(() => rerun(null)));
  $("#accept-page").addEventListener("click", guard(async () => {
    const res = await api("POST", pageUrl(S.page.page_id, "accept"), { locked: S.page.status !== "accepted" });
    S.page = res.page;
    await loadChapter();
    renderPage();
  }));
  const step = (d) => () => {
    const i = S.chapter.pages.findIndex((x) => x.page_id === S.page.page_id) + d;
    if (i >= 0 && i < S.chapter.pages.length) location.hash = `#/page/${S.chapter.pages[i].page_id}`;
  };
  $("#prev-page").addEventListener("click", step(-1));
  $("#next-page").addEventListener("click", step(1));
  $("#register-form").addEventListener("submit", onRegister);
  $("#export-cbz").addEventListener("click", exporter("cbz"));
  $("#export-png").addEventListener("click", exporter("png"));
  document.addEventListener("keydown", (ev) => {
    if (ev.target.matches("input, select, textarea") || $("#view-page").hidden) return;
    if (ev.key === "Escape" && S.hintMode) { S.hintMode = false; renderPage(); }
    if (ev.key === "t" && S.view === "toggle") { S.showOriginal = !S.showOriginal; renderStage(); }
    if (ev.key === "h") { S.hintMode = !S.hintMode; renderPage(); }
  });
  window.addEventListener("hashchange", guard(route));
  guard(route)();
}

init();
