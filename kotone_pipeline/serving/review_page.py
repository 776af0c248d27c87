"""The review page: one self-contained HTML document (no external requests), served at ``GET /``."""

from __future__ import annotations

from kotone_pipeline.domain.data.dims import DIMS

_DIM_NAMES = "[" + ", ".join(f'"{d}"' for d in DIMS) + "]"

PAGE = (
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kotone review</title>
<style>
:root { --ink:#1d2330; --muted:#667085; --line:#e4e7ec; --bg:#f6f7f9; --card:#fff; --accent:#3b5bdb;
        --accent-soft:#edf2ff; --warn:#b54708; --ok:#027a48; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", "Noto Sans CJK JP", sans-serif;
       color:var(--ink); background:var(--bg); }
header { display:flex; align-items:center; gap:1.5rem; padding:.8rem 2rem; background:var(--card);
         border-bottom:1px solid var(--line); }
header h1 { font-size:1.05rem; margin:0; font-weight:650; letter-spacing:.01em; }
.progress { flex:1; display:flex; align-items:center; gap:.8rem; color:var(--muted); font-size:.9rem; }
.bar { flex:1; max-width:22rem; height:6px; background:var(--line); border-radius:3px; overflow:hidden; }
.bar > div { height:100%; width:0; background:var(--accent); transition:width .2s; }
label.who { display:flex; align-items:center; gap:.5rem; color:var(--muted); font-size:.9rem; }
input[type=text], input[type=password] { font:inherit; padding:.35rem .6rem; border:1px solid var(--line);
         border-radius:6px; min-width:11rem; }
main { max-width:60rem; margin:1.8rem auto; padding:0 1.5rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:1.6rem 1.8rem; }
.why { background:var(--accent-soft); color:#364fc7; border-radius:6px; padding:.55rem .8rem; font-size:.88rem; }
.why b { font-weight:600; }
blockquote { margin:1.2rem 0 .4rem; font-size:1.3rem; line-height:1.45; white-space:pre-wrap; word-break:break-word; }
.meta { color:var(--muted); font-size:.82rem; margin-bottom:1.2rem; }
.tag { display:inline-block; border:1px solid var(--line); border-radius:4px; padding:0 .4rem; margin-right:.4rem; }
.dims { display:grid; grid-template-columns: 2.2rem 8.5rem 1fr 2.4rem 5.5rem; align-items:center;
        row-gap:.35rem; column-gap:.8rem; }
.dim { display:contents; }
.dim > * { padding:.25rem 0; }
.key { font:600 .8rem ui-monospace, monospace; color:var(--muted); border:1px solid var(--line); border-radius:4px;
       text-align:center; background:var(--bg); padding:.1rem 0; }
.dim.active .key { background:var(--accent); color:#fff; border-color:var(--accent); }
.dim.active .name { color:var(--accent); font-weight:600; }
.name { text-transform:capitalize; }
input[type=range] { width:100%; accent-color:var(--accent); }
.val { font:600 1.15rem ui-monospace, monospace; text-align:right; }
.was { color:var(--muted); font-size:.8rem; }
.was.changed { color:var(--warn); }
.actions { display:flex; gap:.7rem; margin-top:1.5rem; align-items:center; }
button { font:inherit; border-radius:7px; padding:.5rem 1rem; border:1px solid var(--line); background:var(--card);
         cursor:pointer; }
button.primary { background:var(--accent); border-color:var(--accent); color:#fff; font-weight:600; }
button kbd { font:.75rem ui-monospace, monospace; opacity:.75; margin-left:.4rem; }
.status { margin-left:auto; font-size:.88rem; color:var(--muted); }
.status.error { color:#b42318; }
.status.ok { color:var(--ok); }
.keys[hidden] { display:none; }
.keys { margin-top:1.2rem; color:var(--muted); font-size:.82rem; display:flex; flex-wrap:wrap; gap:.4rem 1.2rem; }
.keys kbd { font:.75rem ui-monospace, monospace; border:1px solid var(--line); border-bottom-width:2px;
            border-radius:4px; padding:0 .35rem; background:var(--card); color:var(--ink); }
.empty { text-align:center; padding:3rem 1rem; color:var(--muted); }
.empty h2 { color:var(--ink); font-size:1.15rem; }
#token-box { display:none; }
</style></head>
<body>
<header>
  <h1>Kotone review</h1>
  <div class="progress"><span id="progress">loading…</span><div class="bar"><div id="bar"></div></div></div>
  <label class="who">Reviewer <input id="reviewer" type="text" placeholder="your name" autocomplete="name"></label>
</header>
<main>
  <div class="card" id="token-box">
    <h2>This review server needs its token</h2>
    <p>Paste the value of <code>KOTONE_REVIEW_TOKEN</code>. It is kept in this browser only.</p>
    <form id="token-form"><input id="token" type="password" placeholder="token">
      <button class="primary" type="submit">Continue</button></form>
  </div>
  <div class="card" id="card" hidden>
    <div class="why"><b>Why this one:</b> <span id="reason"></span></div>
    <blockquote id="text"></blockquote>
    <div class="meta"><span class="tag" id="source"></span><span id="model"></span></div>
    <div class="dims" id="dims"></div>
    <div class="actions">
      <button class="primary" id="submit">Save labels<kbd>Enter</kbd></button>
      <button id="skip">Skip<kbd>S</kbd></button>
      <button id="junk">Not a music request<kbd>J</kbd></button>
      <span class="status" id="status"></span>
    </div>
  </div>
  <div class="card empty" id="empty" hidden>
    <h2>Nothing left to review</h2>
    <p>Every logged request has been reviewed. Requests that <code>kotone serve</code> answers appear here
       as they come in.</p>
    <button id="reload">Check again</button>
  </div>
  <div class="keys" id="keys">
    <span><kbd>1</kbd>–<kbd>6</kbd> pick a dim</span>
    <span><kbd>←</kbd> <kbd>→</kbd> or <kbd>-</kbd> <kbd>+</kbd> change it</span>
    <span><kbd>↑</kbd> <kbd>↓</kbd> previous / next dim</span>
    <span><kbd>0</kbd> reset to the champion's values</span>
    <span><kbd>Enter</kbd> save</span><span><kbd>S</kbd> skip</span><span><kbd>J</kbd> not a music request</span>
  </div>
</main>
<script>
const DIMS = """
    + _DIM_NAMES
    + """;
const $ = (id) => document.getElementById(id);
const state = { items: [], item: null, values: {}, active: 0, done: 0, total: 0, busy: false, seen: new Set() };
const reviewer = $("reviewer");
reviewer.value = localStorage.getItem("kotone-reviewer") || "";
reviewer.addEventListener("input", () => localStorage.setItem("kotone-reviewer", reviewer.value.trim()));

function headers() {
  const h = { "Content-Type": "application/json" };
  const token = localStorage.getItem("kotone-review-token");
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (response.status === 401) { askToken(); throw new Error("the token is needed"); }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
  return body;
}
function askToken() {
  $("card").hidden = true; $("empty").hidden = true; $("keys").hidden = true;
  $("progress").textContent = "token needed"; $("token-box").style.display = "block"; $("token").focus();
}
$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  localStorage.setItem("kotone-review-token", $("token").value.trim());
  $("token-box").style.display = "none"; $("keys").hidden = false; load();
});

function setStatus(text, kind = "") { const s = $("status"); s.textContent = text; s.className = "status " + kind; }
function progress() {
  const all = state.done + state.total;
  $("progress").textContent = state.item ? `${state.done + 1} of ${all}` : `${state.done} of ${all}`;
  $("bar").style.width = all ? (100 * state.done / all) + "%" : "0";
}
async function load() {
  try {
    const who = encodeURIComponent(reviewer.value.trim());
    const body = await api(`/review/queue?limit=20${who ? "&reviewer=" + who : ""}`);
    state.total = body.total;
    state.items = body.items.filter((it) => !state.seen.has(it.id));
    show();
  } catch (e) { setStatus(e.message, "error"); }
}
function show() {
  state.item = state.items.shift() || null;
  progress();
  if (!state.item) { $("card").hidden = true; $("empty").hidden = false; return; }
  $("empty").hidden = true; $("card").hidden = false;
  const it = state.item;
  $("reason").textContent = it.reason;
  $("text").textContent = it.text;
  $("source").textContent = it.source_type === "rule_prompt" ? "catalog prompt" : "request";
  $("model").textContent = it.model_id ? "shown: " + it.model_id + "'s prediction" : "";
  state.values = { ...it.prediction };
  state.active = 0;
  const dims = $("dims"); dims.innerHTML = "";
  DIMS.forEach((dim, i) => {
    const row = document.createElement("div");
    row.className = "dim"; row.id = "dim-" + dim;
    row.innerHTML = `<span class="key">${i + 1}</span><span class="name">${dim}</span>
      <input type="range" min="0" max="10" step="1" tabindex="-1" aria-label="${dim}">
      <span class="val"></span><span class="was">champion ${it.prediction[dim]}</span>`;
    const slider = row.querySelector("input");
    slider.value = state.values[dim];
    slider.addEventListener("input", () => { state.values[dim] = +slider.value; state.active = i; paint(); });
    row.addEventListener("mousedown", () => { state.active = i; paint(); });
    dims.appendChild(row);
  });
  setStatus("");
  paint();
}
function paint() {
  DIMS.forEach((dim, i) => {
    const row = $("dim-" + dim);
    row.classList.toggle("active", i === state.active);
    row.querySelector("input").value = state.values[dim];
    row.querySelector(".val").textContent = state.values[dim];
    row.querySelector(".was").classList.toggle("changed", state.values[dim] !== state.item.prediction[dim]);
  });
}
async function send(body, done) {
  if (!state.item || state.busy) return;
  const name = reviewer.value.trim();
  if (!name && body.labels) { setStatus("Type your name first (top right).", "error"); reviewer.focus(); return; }
  state.busy = true;
  try {
    await api("/review/" + encodeURIComponent(state.item.id),
              { method: "POST", body: JSON.stringify({ ...body, reviewer: name || undefined }) });
    state.seen.add(state.item.id);
    state.done += 1; state.total = Math.max(state.total - 1, 0);
    setStatus(done, "ok");
    if (state.items.length < 3) { await load(); } else { show(); }
    setStatus(done, "ok");
  } catch (e) { setStatus(e.message, "error"); }
  finally { state.busy = false; }
}
const submit = () => send({ labels: { ...state.values } }, "Saved.");
const skip = () => send({ skip: true }, "Skipped.");
const junk = () => send({ junk: true }, "Marked as not a music request.");
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("junk").addEventListener("click", junk);
$("reload").addEventListener("click", load);

function nudge(delta) {
  const dim = DIMS[state.active];
  state.values[dim] = Math.max(0, Math.min(10, state.values[dim] + delta));
  paint();
}
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement && e.target.id === "token") return;  // Enter submits the token form
  if (e.target instanceof HTMLInputElement && e.target.type !== "range") {
    if (e.key === "Enter" || e.key === "Escape") { e.target.blur(); e.preventDefault(); }
    return;
  }
  if (!state.item || e.ctrlKey || e.metaKey || e.altKey) return;
  const key = e.key;
  if (key >= "1" && key <= "6") { state.active = +key - 1; paint(); }
  else if (key === "ArrowRight" || key === "+" || key === "=") nudge(1);
  else if (key === "ArrowLeft" || key === "-") nudge(-1);
  else if (key === "ArrowDown") { state.active = (state.active + 1) % DIMS.length; paint(); }
  else if (key === "ArrowUp") { state.active = (state.active + DIMS.length - 1) % DIMS.length; paint(); }
  else if (key === "0") { state.values = { ...state.item.prediction }; paint(); }
  else if (key === "Enter") submit();
  else if (key === "s" || key === "S") skip();
  else if (key === "j" || key === "J") junk();
  else return;
  e.preventDefault();
});
load();
</script>
</body></html>
"""
)
