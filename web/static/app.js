// vma-web page: talks to the JSON API of the daemon that serves it (docs/web-api.md).
// No framework, no build step, nothing from elsewhere. The token is asked for once and
// kept in sessionStorage (this tab only); a 401 asks again.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { vm: null, vms: [], tasks: {}, backupTask: null, timer: null, pruneBusy: false };

function token() { return sessionStorage.getItem("vma-web-token") || ""; }

function showError(msg) {
  const e = $("#error");
  if (!msg) { e.classList.add("hidden"); e.textContent = ""; return; }
  e.textContent = msg;
  e.classList.remove("hidden");
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { "Authorization": "Bearer " + token() } };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch("/api/v1" + path, opts);
  let data = null;
  try { data = await r.json(); } catch (e) { data = null; }
  if (r.status === 401) {
    sessionStorage.removeItem("vma-web-token");
    showLogin("The token was refused: " + (data && data.error ? data.error : r.statusText));
    throw new ApiError(401, "unauthorized");
  }
  if (!r.ok) {
    throw new ApiError(r.status, data && data.error ? data.error : (r.status + " " + r.statusText));
  }
  return data;
}

// Run an action; its error goes to the banner (401 already showed the login).
async function act(fn) {
  try {
    showError("");
    return await fn();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) {
      showError(e.message);
    }
    return undefined;
  }
}

function fmtBytes(n) {
  if (n === null || n === undefined || n < 0) return "?";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + u[i];
}

function fmtTime(t) {
  const d = new Date(t * 1000);
  const p = (x) => String(x).padStart(2, "0");
  return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
         p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
}

function fmtEta(s) {
  if (s === null || s === undefined) return "?";
  if (s < 60) return s + " s";
  return Math.floor(s / 60) + " min " + (s % 60) + " s";
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

// ---- login -----------------------------------------------------------------------------

function showLogin(msg) {
  $("#main").classList.add("hidden");
  $("#logout").classList.add("hidden");
  $("#login-panel").classList.remove("hidden");
  showError(msg || "");
  $("#token").focus();
}

async function start() {
  $("#login-panel").classList.add("hidden");
  $("#main").classList.remove("hidden");
  $("#logout").classList.remove("hidden");
  await loadVms();
  await pollTasks();
}

// ---- VMs -------------------------------------------------------------------------------

async function loadVms() {
  const vms = await act(() => api("GET", "/vms"));
  if (!vms) return;
  state.vms = vms;
  const ul = $("#vm-list");
  ul.replaceChildren();
  for (const vm of vms) {
    const li = el("li", { "data-vm": vm.id, class: vm.id === state.vm ? "vm selected" : "vm",
                          onclick: () => selectVm(vm.id) },
                  "VM " + vm.id + " ",
                  el("span", { class: vm.online ? "muted ok" : "muted bad" },
                     vm.online ? vm.disks.length + " disk(s)" : "offline"));
    ul.append(li);
  }
  if (vms.length === 0) ul.append(el("li", { class: "muted" }, "No VMs found."));
  if (state.vm === null && vms.length > 0) await selectVm(vms[0].id);
  else if (state.vm !== null) renderVm();
}

function renderVm() {
  const vm = state.vms.find((v) => v.id === state.vm);
  if (!vm) return;
  $("#vm-title").textContent = vm.id;
  const badge = $("#vm-state");
  badge.textContent = vm.online ? "online" : "offline";
  badge.className = "badge " + (vm.online ? "ok" : "bad");
  badge.title = vm.error || "";
  const tb = $("#disks tbody");
  tb.replaceChildren();
  for (const d of vm.disks) {
    tb.append(el("tr", {}, el("td", {}, d.name), el("td", { class: "num" }, fmtBytes(d.size)),
                 el("td", {}, d.file || "")));
  }
}

async function selectVm(id) {
  state.vm = id;
  for (const li of document.querySelectorAll("#vm-list li.vm")) {
    li.classList.toggle("selected", li.dataset.vm === id);
  }
  $("#vm-panel").classList.remove("hidden");
  $("#prune-table").classList.add("hidden");
  renderVm();
  await loadArchives();
  await loadRetention();
}

// ---- archives --------------------------------------------------------------------------

async function loadArchives() {
  if (state.vm === null) return;
  const vm = state.vm;
  const list = await act(() => api("GET", "/vms/" + vm + "/backups"));
  if (!list || vm !== state.vm) return;
  const tb = $("#archives tbody");
  tb.replaceChildren();
  $("#no-archives").classList.toggle("hidden", list.length > 0);
  for (const a of list) {
    const verified = a["verify-state"] === "ok" ? el("span", { class: "ok" }, "ok")
                   : a["verify-state"] === "failed" ? el("span", { class: "bad", title: a["verify-error"] || "" }, "failed")
                   : el("span", { class: "muted" }, "not yet");
    const notes = el("span", { class: "notes" }, a.notes || "");
    const row = el("tr", { "data-name": a.name },
      el("td", {}, fmtTime(a.ctime)),
      el("td", {}, a.name),
      el("td", { class: "num" }, fmtBytes(a.size)),
      el("td", { class: "kind" }, a.kind || "?"),
      el("td", { class: "base" }, a.base || (a["base-uuid"] ? a["base-uuid"] + " (missing)" : "")),
      el("td", { class: "verified" }, verified),
      el("td", {}, notes),
      el("td", {},
         el("button", { type: "button", class: "verify", onclick: () => verify(a.name) }, "Verify"), " ",
         el("button", { type: "button", class: "restore", onclick: () => restore(a.name, "directory") }, "Restore"), " ",
         el("button", { type: "button", class: "restore-live",
                        title: "Serve the archive's disks at once as new disks DEVICE-restored of this VM's vmad (NBD exports), copied into the directory in the background; the VM's own disks are not touched",
                        onclick: () => restore(a.name, "live") }, "Live restore"), " ",
         el("button", { type: "button", class: "edit-notes", onclick: () => editNotes(a.name, a.notes) }, "Notes"), " ",
         el("button", { type: "button", class: "delete danger", onclick: () => del(a.name) }, "Delete")));
    if (a.error) row.append(el("td", { class: "bad" }, a.error));
    tb.append(row);
  }
}

async function verify(name) {
  const t = await act(() => api("POST", "/vms/" + state.vm + "/backups/" + encodeURIComponent(name) + "/verify", {}));
  if (t) { state.tasks[t.id] = t; renderTasks(); schedulePoll(); }
}

async function restore(name, mode) {
  const target = $("#restore-target").value.trim();
  if (!target) { showError("Restore: enter a new directory to restore into first."); return; }
  const body = { target };
  if (mode === "live") body.mode = "live";
  const t = await act(() => api("POST", "/vms/" + state.vm + "/backups/" + encodeURIComponent(name) + "/restore", body));
  if (t) { state.tasks[t.id] = t; renderTasks(); schedulePoll(); }
}

async function del(name) {
  if (!window.confirm("Delete " + name + "?")) return;
  const r = await act(() => api("DELETE", "/vms/" + state.vm + "/backups/" + encodeURIComponent(name)));
  if (r) await loadArchives();
}

async function editNotes(name, old) {
  const notes = window.prompt("Notes for " + name, old || "");
  if (notes === null) return;
  const r = await act(() => api("POST", "/vms/" + state.vm + "/backups/" + encodeURIComponent(name) + "/notes", { notes }));
  if (r) await loadArchives();
}

// ---- backup ----------------------------------------------------------------------------

async function backupNow(ev) {
  ev.preventDefault();
  const body = { mode: $("#backup-mode").value, compress: $("#backup-compress").value };
  const speed = $("#backup-speed").value.trim();
  if (speed !== "" && Number(speed) > 0) body.speed = Math.round(Number(speed) * 1048576);
  if ($("#backup-prune").checked) body.prune = true;
  const notes = $("#backup-notes").value.trim();
  if (notes) body.notes = notes;
  const t = await act(() => api("POST", "/vms/" + state.vm + "/backup", body));
  if (!t) return;
  state.backupTask = t.id;
  state.tasks[t.id] = t;
  renderBackup(t);
  renderTasks();
  schedulePoll();
}

function renderBackup(t) {
  const run = $("#backup-run");
  if (!t || t.vm !== state.vm) { run.classList.add("hidden"); return; }
  run.classList.remove("hidden");
  $("#backup-bar").value = t.progress;
  let text;
  if (t.status === "running") {
    text = t.started ? (Math.floor(t.progress * 100) + "% — " + fmtBytes(t.bytes) + " of " + fmtBytes(t.total) +
                        ", " + fmtBytes(t.rate) + "/s, ETA " + fmtEta(t.eta))
                     : "starting…";
  } else if (t.status === "ok") {
    text = "done: " + t.archive;
  } else {
    text = "failed: " + t.error;
  }
  const st = $("#backup-status");
  st.textContent = text;
  st.className = t.status === "error" ? "bad" : t.status === "ok" ? "ok" : "";
  $("#backup-cancel").classList.toggle("hidden", t.status !== "running");
  $("#backup-now").disabled = t.status === "running";
}

async function cancelBackup() {
  if (!state.backupTask) return;
  await act(() => api("POST", "/tasks/" + state.backupTask + "/cancel", {}));
  schedulePoll();
}

// ---- tasks -----------------------------------------------------------------------------

function renderTasks() {
  const tb = $("#tasks tbody");
  tb.replaceChildren();
  const list = Object.values(state.tasks).sort((a, b) => (b["start-time"] - a["start-time"]) || (a.id < b.id ? 1 : -1));
  for (const t of list.slice(0, 20)) {
    const bar = el("progress", { max: "1" });
    bar.value = t.progress;
    tb.append(el("tr", { "data-task": t.id, class: "task-" + t.status },
      el("td", {}, t.id), el("td", {}, t.vm), el("td", {}, t.archive || ""),
      el("td", { class: "status " + (t.status === "error" ? "bad" : t.status === "ok" ? "ok" : "") }, t.status),
      el("td", {}, bar, " " + Math.floor(t.progress * 100) + "%"),
      el("td", { class: "bad" }, t.error || ""),
      el("td", { class: "exports" }, t.type === "live-restore" && t.started
         ? "exports: " + t.disks.map((x) => x.export).join(", ") : "")));
  }
}

function schedulePoll() {
  if (state.timer === null) state.timer = window.setTimeout(pollTasks, 400);
}

async function pollTasks() {
  state.timer = null;
  const list = await act(() => api("GET", "/tasks"));
  if (!list) return;
  let running = false, ended = false;
  for (const t of list) {
    const old = state.tasks[t.id];
    if (old && old.status === "running" && t.status !== "running") ended = true;
    state.tasks[t.id] = t;
    running = running || t.status === "running";
  }
  renderTasks();
  if (state.backupTask && state.tasks[state.backupTask]) renderBackup(state.tasks[state.backupTask]);
  if (ended) await loadArchives();
  if (running) schedulePoll();
}

// ---- retention -------------------------------------------------------------------------

const KEEP = ["keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"];

function policyFromForm() {
  const p = {};
  for (const k of KEEP) {
    const v = $("#" + k).value.trim();
    if (v !== "") p[k] = Number(v);
  }
  return p;
}

async function loadRetention() {
  const p = await act(() => api("GET", "/vms/" + state.vm + "/retention"));
  if (!p) return;
  for (const k of KEEP) $("#" + k).value = p[k] !== undefined ? p[k] : "";
}

async function saveRetention(ev) {
  ev.preventDefault();
  const p = await act(() => api("POST", "/vms/" + state.vm + "/retention", policyFromForm()));
  if (p) showError("");
}

async function prune(dryRun) {
  const policy = policyFromForm();
  if (!dryRun) {
    if (Object.keys(policy).length === 0) { showError("Prune: set at least one keep option (none set keeps everything)."); return; }
    if (!window.confirm("Remove the archives the policy does not keep?")) return;
  }
  const r = await act(() => api("POST", "/vms/" + state.vm + "/prune", Object.assign({ "dry-run": dryRun }, policy)));
  if (!r) return;
  const tb = $("#prune-table tbody");
  tb.replaceChildren();
  for (const a of r.archives) {
    const action = a.action === "keep" ? "keep" : (dryRun ? "would remove" : (a.removed ? "removed" : "remove failed"));
    tb.append(el("tr", { "data-name": a.name, class: "prune-" + a.action },
      el("td", {}, a.name), el("td", { class: a.action === "keep" ? "ok" : "bad" }, action),
      el("td", {}, a.reason || a.error || "")));
  }
  $("#prune-table").classList.remove("hidden");
  if (!dryRun) await loadArchives();
}

// ---- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const t = $("#token").value.trim();
    if (!t) { showError("Enter the token."); return; }
    sessionStorage.setItem("vma-web-token", t);
    $("#token").value = "";
    await start();
  });
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem("vma-web-token"); showLogin(""); });
  $("#refresh").addEventListener("click", () => loadVms().then(loadArchives));
  $("#backup-form").addEventListener("submit", backupNow);
  $("#backup-cancel").addEventListener("click", cancelBackup);
  $("#retention-form").addEventListener("submit", saveRetention);
  $("#prune-preview").addEventListener("click", () => prune(true));
  $("#prune-run").addEventListener("click", () => prune(false));
  if (token()) start(); else showLogin("");
});
