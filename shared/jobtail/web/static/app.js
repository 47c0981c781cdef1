/**
 * jobtail's page: pick a document and a service, generate, and watch the run in <jobtail-log>.
 * This module holds only the page's controls (pickers, upload, run bar, result); the log itself
 * is the element any other page can use. Data from the server is only set with textContent.
 */

import "./jobtail/element.js";
import { duration, formatTime, grouped, localDateTime } from "./jobtail/lines.js";

const ACTIVE = new Set(["queued", "running"]);
const UPLOADS_KEY = "jobtail.uploads";
const $ = (id) => document.getElementById(id);
const el = {
  sample: $("sample"), samples: $("samples-group"), uploads: $("uploads-group"),
  file: $("upload-file"), uploadButton: $("upload-button"), service: $("service"),
  generate: $("generate"), hint: $("hint"), error: $("error"), apiKey: $("api-key"),
  status: $("status"), meta: $("run-meta"), runs: $("runs"), progress: $("progress"),
  progressFill: $("progress-fill"), progressText: $("progress-text"), actions: $("actions"),
  showResult: $("show-result"), resultLink: $("result-link"), logLink: $("log-link"),
  runError: $("run-error"), resultPanel: $("result-panel"), resultTitle: $("result-title"),
  resultCode: $("result-code"), log: $("log"), conn: $("conn"), elapsed: $("elapsed"),
};

const view = { epoch: 0, upload: "", service: "", pinnedRun: null, run: null, token: null, timer: null };
const samples = new Map();
const services = new Map();

const enc = encodeURIComponent;
// Paths are relative to where the page is served, so it also works under a gateway's stage
// prefix (API Gateway's /Prod/) or any reverse-proxy sub-path.
const BASE = location.pathname.endsWith("/") ? location.pathname : `${location.pathname}/`;
const keyPath = () => `${BASE}runs/${enc(view.upload)}/${enc(view.service)}`;
const apiKey = () => el.apiKey.value.trim();
const statusPath = () => `${keyPath()}/status${view.pinnedRun ? `?run_id=${enc(view.pinnedRun)}` : ""}`;

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("Authorization", `Bearer ${apiKey()}`);
  let resp;
  try {
    resp = await fetch(path, { ...options, headers, cache: "no-store" });
  } catch {
    return { ok: false, status: 0, body: { detail: "cannot reach the server (network error)" } };
  }
  if (resp.status === 401) $("access").open = true; // show where the API key goes
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json")
    ? await resp.json().catch(() => null)
    : await resp.text().catch(() => "");
  return { ok: resp.ok, status: resp.status, body };
}

function detailOf(res) {
  const detail = res.body && typeof res.body === "object" ? res.body.detail : null;
  if (typeof detail === "string" && detail) return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => {
        const where = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body").join(".") : "";
        return where ? `${where}: ${e.msg}` : String(e.msg);
      })
      .join("; ");
  }
  if (typeof res.body === "string" && res.body.trim() && res.body.length < 400) return res.body.trim();
  return res.status ? `HTTP ${res.status}` : "request failed";
}

function showError(message) {
  el.error.querySelector(".text").textContent = message;
  el.error.hidden = false;
}
function clearError() {
  el.error.hidden = true;
  el.error.querySelector(".text").textContent = "";
}
function setConn(state, label) {
  el.conn.dataset.state = state;
  el.conn.textContent = label || state;
}

/* ---- URL state: ?upload=&service=[&run=] so a reload or a shared link shows the same run ---- */
function readUrl() {
  const params = new URLSearchParams(location.search);
  return { upload: params.get("upload"), service: params.get("service"), run: params.get("run") };
}
function writeUrl(keepHash = false) {
  const params = new URLSearchParams();
  if (view.upload) params.set("upload", view.upload);
  if (view.service) params.set("service", view.service);
  if (view.pinnedRun) params.set("run", view.pinnedRun);
  history.replaceState(null, "", `${location.pathname}?${params}${keepHash ? location.hash : ""}`);
}

/* ---- pickers ------------------------------------------------------------------------------ */
function addOption(parent, value, label, title) {
  const option = document.createElement("option");
  option.value = value;
  option.textContent = label;
  if (title) option.title = title;
  parent.append(option);
  return option;
}
function rememberedUploads() {
  try {
    const list = JSON.parse(localStorage.getItem(UPLOADS_KEY) || "[]");
    return Array.isArray(list) ? list.filter((u) => u && typeof u.upload_id === "string") : [];
  } catch {
    return [];
  }
}
function rememberUpload(upload) {
  const list = rememberedUploads().filter((u) => u.upload_id !== upload.upload_id);
  list.unshift({ upload_id: upload.upload_id, filename: upload.filename || upload.upload_id });
  try {
    localStorage.setItem(UPLOADS_KEY, JSON.stringify(list.slice(0, 20)));
  } catch {
    /* private mode */
  }
}
function addUploadOption(upload) {
  if ([...el.sample.options].some((o) => o.value === upload.upload_id)) return;
  el.uploads.hidden = false;
  addOption(el.uploads, upload.upload_id, upload.filename || upload.upload_id, upload.upload_id);
}

async function loadPickers() {
  const [up, sv] = await Promise.all([api(`${BASE}uploads`), api(`${BASE}services`)]);
  if (!up.ok) showError(`Cannot list the samples: ${detailOf(up)}`);
  else if (!sv.ok) showError(`Cannot list the services: ${detailOf(sv)}`);
  samples.clear();
  services.clear();
  el.samples.replaceChildren();
  el.uploads.replaceChildren();
  el.uploads.hidden = true;
  el.service.replaceChildren();
  for (const sample of (up.ok && up.body.samples) || []) {
    samples.set(sample.upload_id, sample);
    addOption(el.samples, sample.upload_id, `${sample.title} (${sample.filename})`, sample.summary);
  }
  for (const upload of rememberedUploads()) addUploadOption(upload);
  for (const service of (sv.ok && sv.body.services) || []) {
    services.set(service.name, service);
    addOption(el.service, service.name, service.name, service.description);
  }
}

function updateHint() {
  el.hint.replaceChildren();
  const sample = samples.get(view.upload);
  const service = services.get(view.service);
  const parts = [];
  if (sample) parts.push(["", sample.summary || sample.title]);
  else if (view.upload) parts.push(["Upload ", view.upload]);
  if (service) parts.push([" → ", `${service.name}: ${service.description}`]);
  for (const [prefix, text] of parts) {
    const b = document.createElement("b");
    b.textContent = text;
    el.hint.append(prefix, b);
  }
}

/* ---- run status, progress, elapsed, failure ------------------------------------------------ */
function setStatus(status) {
  el.status.dataset.status = status || "none";
  el.status.textContent = status || "no run";
  el.progress.dataset.status = status || "none";
  const busy = ACTIVE.has(status);
  el.generate.disabled = !view.upload || !view.service || busy;
  el.generate.textContent = busy ? "Running…" : "Generate";
  el.actions.hidden = status !== "succeeded";
  if (status === "succeeded") setProgress(100);
  if (!status) {
    el.meta.textContent = "";
    el.runError.hidden = true;
  }
  const key = view.upload && view.service ? `${view.upload}/${view.service}` : "";
  document.title = [status, key, "jobtail"].filter(Boolean).join(" · ");
}

function setProgress(pct) {
  if (pct === null || pct === undefined) {
    el.progressFill.style.width = "0";
    el.progressText.textContent = "–";
    el.progress.setAttribute("aria-valuenow", "0");
    return;
  }
  const value = Math.max(0, Math.min(100, Number(pct) || 0));
  el.progressFill.style.width = `${value}%`;
  el.progressText.textContent = `${Math.round(value)}%`;
  el.progress.setAttribute("aria-valuenow", String(Math.round(value)));
}

/** The run's clock: ticking while it runs, its duration once it is over. */
function tickElapsed() {
  const r = view.run;
  const began = r && Date.parse(r.started_at || r.created_at || "");
  if (!r || !Number.isFinite(began)) {
    el.elapsed.textContent = "";
    return;
  }
  const until = r.finished_at ? Date.parse(r.finished_at) : Date.now();
  el.elapsed.textContent = `${r.finished_at ? "took" : "elapsed"} ${duration(until - began)}`;
}

/** Absolute paths in a traceback say nothing to the reader and leak the server's layout. */
export function shortenPaths(text) {
  return text
    .replace(/(?:\/[^\s"'():]+)*\/(?:site|dist)-packages\//g, "")
    .replace(/(?:\/[^\s"'():/]+){3,}(\/[^\s"'():/]+\/[^\s"'():/]+)/g, "…$1");
}

function showFailure(error) {
  const text = shortenPaths(String(error)).trim();
  const rows = text.split("\n");
  // The error itself first; a traceback (or anything after the first line) folded.
  const traceAt = rows.findIndex((row) => row.startsWith("Traceback"));
  const last = rows.filter((row) => row.trim()).pop() || text;
  const headline = traceAt >= 0 ? last.trim() : rows[0];
  const rest = traceAt >= 0 ? rows.join("\n") : rows.slice(1).join("\n");
  el.runError.replaceChildren();
  const first = document.createElement("div");
  first.className = "first";
  first.textContent = `Failed: ${headline}`;
  el.runError.append(first);
  if (rest.trim()) {
    const details = document.createElement("details");
    const summary = document.createElement("summary");
    summary.textContent = traceAt >= 0 ? "Traceback" : "Details";
    const pre = document.createElement("pre");
    pre.textContent = rest;
    details.append(summary, pre);
    el.runError.append(details);
  }
  el.runError.hidden = false;
}

function applyRun(run) {
  view.run = { ...(view.run || {}), ...run };
  if (run.token) view.token = run.token;
  const r = view.run;
  setStatus(r.status);
  const parts = [];
  if (r.run_id) parts.push(["run ", r.run_id]);
  if (r.created_at) parts.push([" · started ", formatTime(r.created_at)]);
  if (r.omitted) parts.push([" · ", `${grouped(r.omitted)} lines omitted (line cap)`]);
  el.meta.replaceChildren();
  for (const [label, value] of parts) {
    const code = document.createElement("code");
    code.textContent = value;
    el.meta.append(label, code);
  }
  if (r.status === "failed" && r.error) showFailure(r.error);
  else el.runError.hidden = true;
  if (r.status === "succeeded") {
    el.resultLink.href = `${keyPath()}/result?${new URLSearchParams({ run_id: r.run_id })}`;
    el.resultLink.setAttribute("download", `${view.upload}_${view.service}.py`);
    const logQuery = new URLSearchParams({ run_id: r.run_id, format: "text" });
    if (view.token) logQuery.set("token", view.token);
    el.logLink.href = `${keyPath()}/logs/final?${logQuery}`;
    el.logLink.setAttribute("download", "");
  }
  if (r.started_at || r.created_at) el.log.setAttribute("started", r.started_at || r.created_at);
  clearInterval(view.timer);
  tickElapsed();
  if (ACTIVE.has(r.status)) view.timer = setInterval(tickElapsed, 1000);
}

async function refreshRuns() {
  const epoch = view.epoch;
  const res = await api(`${keyPath()}/runs?limit=50`);
  if (epoch !== view.epoch) return;
  const runs = (res.ok && res.body && res.body.runs) || [];
  el.runs.replaceChildren();
  el.runs.hidden = runs.length < 2;
  addOption(el.runs, "", `Latest attempt (${runs.length} in all)`);
  for (const run of runs) {
    const when = run.created_at ? localDateTime(run.created_at) : "";
    addOption(el.runs, run.run_id, `${when} · ${run.status} · ${run.lines} lines`, run.run_id);
  }
  el.runs.value = view.pinnedRun || "";
}

/* ---- the log element ------------------------------------------------------------------------ */
function resetView() {
  clearInterval(view.timer);
  view.run = null;
  view.token = null;
  el.log.removeAttribute("src");
  el.log.removeAttribute("started");
  el.log.reset();
  el.resultPanel.hidden = true;
  el.resultCode.textContent = "";
  el.elapsed.textContent = "";
  setStatus(null);
  setProgress(null);
}

function showLog(runId) {
  const query = new URLSearchParams({ run_id: runId });
  if (view.token) el.log.setAttribute("token", view.token);
  else el.log.removeAttribute("token");
  el.log.setAttribute("src", `${keyPath()}/logs?${query}`);
}

el.log.addEventListener("jobtail-state", (event) => {
  if (el.conn.dataset.state !== "error" || event.detail.state !== "ended") {
    setConn(event.detail.state, event.detail.label);
  }
});
el.log.addEventListener("jobtail-status", (event) => {
  if (event.detail.status) applyRun({ status: event.detail.status });
});
el.log.addEventListener("jobtail-lines", (event) => {
  const pct = event.detail.progress;
  if (pct !== null && pct !== undefined && !(view.run && view.run.status === "succeeded")) setProgress(pct);
});
el.log.addEventListener("jobtail-error", (event) => {
  if (event.detail.status) {
    setConn("error", "disconnected");
    showError(`The live log stopped: ${event.detail.detail}`);
  } else showError(event.detail.detail);
});
el.log.addEventListener("jobtail-end", async (event) => {
  const epoch = view.epoch;
  const end = event.detail;
  if (!end.status) {
    setConn("error", "disconnected");
    return;
  }
  applyRun({ ...end, active: false });
  setConn("ended");
  refreshRuns();
  const res = await api(`${keyPath()}/status?run_id=${enc(end.run_id || view.run.run_id)}`);
  if (epoch === view.epoch && res.ok) applyRun(res.body); // the timings the end does not carry
});
el.log.addEventListener("jobtail-select", () => {
  if (view.run && view.run.run_id && !view.pinnedRun) {
    view.pinnedRun = view.run.run_id; // a line link names its run
    writeUrl(true);
  }
});

/* ---- showing a key, generating, uploading ------------------------------------------------- */
async function showKey(prefetched = null) {
  const epoch = ++view.epoch;
  resetView();
  writeUrl(true);
  updateHint();
  setConn("idle");
  if (!view.upload || !view.service) return;
  const res = await (prefetched || api(statusPath()));
  if (epoch !== view.epoch) return;
  if (res.status === 404 && !view.pinnedRun) {
    el.runs.hidden = true;
    return;
  }
  if (!res.ok) {
    showError(`Cannot read the run: ${detailOf(res)}`);
    setConn("error", "error");
    return;
  }
  applyRun(res.body);
  showLog(res.body.run_id);
  refreshRuns();
}

async function generate() {
  clearError();
  el.generate.disabled = true;
  const res = await api(`${keyPath()}/generate`, { method: "POST" });
  if (res.status === 409 && res.body && res.body.run_id) {
    showError(`${detailOf(res)}: showing that run.`);
    view.pinnedRun = null;
    await showKey();
    return;
  }
  if (!res.ok) {
    showError(`Could not start: ${detailOf(res)}`);
    setStatus(view.run ? view.run.status : null);
    return;
  }
  view.epoch += 1;
  view.pinnedRun = null;
  resetView();
  writeUrl();
  applyRun({ run_id: res.body.run_id, status: "queued", token: res.body.token, active: true });
  showLog(res.body.run_id);
  refreshRuns();
  const epoch = view.epoch; // the 202 carries no timestamps: take them from the status route
  const status = await api(`${keyPath()}/status?run_id=${enc(res.body.run_id)}`);
  if (epoch === view.epoch && status.ok && view.run && !view.run.finished_at) {
    applyRun({ created_at: status.body.created_at, started_at: status.body.started_at });
  }
}

async function upload(file) {
  if (!file) return;
  clearError();
  el.uploadButton.textContent = `Uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  const res = await api(`${BASE}uploads`, { method: "POST", body: form });
  el.uploadButton.textContent = "Choose or drop a JSON / YAML file…";
  el.file.value = ""; // picking the same file again uploads it again
  if (!res.ok) {
    showError(`Upload of ${file.name} failed: ${detailOf(res)}`);
    return;
  }
  const saved = { upload_id: res.body.upload_id, filename: res.body.filename || file.name };
  rememberUpload(saved);
  addUploadOption(saved);
  el.sample.value = saved.upload_id;
  view.upload = saved.upload_id;
  view.pinnedRun = null;
  await showKey();
}

/* ---- wiring ---------------------------------------------------------------------------------- */
function pickKey(change) {
  change();
  view.pinnedRun = null;
  clearError();
  history.replaceState(null, "", location.pathname + location.search); // a line link is per run
  showKey();
}
el.sample.addEventListener("change", () => pickKey(() => (view.upload = el.sample.value)));
el.service.addEventListener("change", () => pickKey(() => (view.service = el.service.value)));
el.runs.addEventListener("change", () => {
  view.pinnedRun = el.runs.value || null;
  showKey();
});
el.generate.addEventListener("click", generate);
el.file.addEventListener("change", () => upload(el.file.files && el.file.files[0]));
const uploadField = el.file.closest(".upload");
document.addEventListener("dragover", (event) => {
  if (![...(event.dataTransfer?.types || [])].includes("Files")) return;
  event.preventDefault();
  uploadField.classList.add("dragging");
});
document.addEventListener("dragleave", (event) => {
  if (!event.relatedTarget) uploadField.classList.remove("dragging");
});
document.addEventListener("drop", (event) => {
  const file = event.dataTransfer?.files?.[0];
  uploadField.classList.remove("dragging");
  if (!file) return;
  event.preventDefault();
  upload(file);
});
$("error-close").addEventListener("click", clearError);
el.apiKey.value = sessionStorage.getItem("jobtail.apikey") || "";
el.apiKey.addEventListener("change", () => {
  if (apiKey() === (sessionStorage.getItem("jobtail.apikey") || "")) return;
  sessionStorage.setItem("jobtail.apikey", apiKey());
  clearError();
  start();
});
el.showResult.addEventListener("click", async () => {
  if (!view.run) return;
  const epoch = view.epoch;
  const res = await api(el.resultLink.getAttribute("href"));
  if (epoch !== view.epoch) return;
  if (!res.ok) {
    showError(`Cannot load the result: ${detailOf(res)}`);
    return;
  }
  el.resultTitle.textContent = el.resultLink.getAttribute("download") || "Generated code";
  el.resultCode.textContent = String(res.body);
  el.resultPanel.hidden = false;
});
$("hide-result").addEventListener("click", () => {
  el.resultPanel.hidden = true;
});
$("copy-result").addEventListener("click", async (event) => {
  try {
    await navigator.clipboard.writeText(el.resultCode.textContent);
    event.target.textContent = "Copied";
  } catch {
    event.target.textContent = "Copy failed";
  }
  setTimeout(() => {
    event.target.textContent = "Copy";
  }, 1500);
});
// Downloads need the bearer header when an API key is set: fetch them instead of navigating.
for (const link of [el.resultLink, el.logLink]) {
  link.addEventListener("click", async (event) => {
    if (!apiKey()) return;
    event.preventDefault();
    const resp = await fetch(link.href, { headers: { Authorization: `Bearer ${apiKey()}` } });
    if (!resp.ok) {
      showError(`Download failed: HTTP ${resp.status}`);
      return;
    }
    const url = URL.createObjectURL(await resp.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = link.getAttribute("download") || "download";
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });
}
window.addEventListener("pagehide", () => el.log.stop());
window.addEventListener("pageshow", (event) => {
  if (event.persisted) showKey(); // back/forward cache
});

/** Fill the pickers, select what the URL names, and show that key's run. */
async function start() {
  document.body.dataset.ready = "false";
  const wanted = readUrl();
  const pickers = loadPickers();
  // The run the URL names is shown while the pickers load: its log starts a round trip sooner.
  let shown = false;
  if (wanted.upload && wanted.service) {
    Object.assign(view, { upload: wanted.upload, service: wanted.service, pinnedRun: wanted.run || null });
    shown = true;
    await showKey();
  }
  await pickers;
  if (wanted.upload && ![...el.sample.options].some((o) => o.value === wanted.upload)) {
    addUploadOption({ upload_id: wanted.upload, filename: wanted.upload });
  }
  if (wanted.upload) el.sample.value = wanted.upload;
  if (wanted.service && services.has(wanted.service)) el.service.value = wanted.service;
  const same = shown && view.upload === el.sample.value && view.service === el.service.value;
  view.upload = el.sample.value;
  view.service = el.service.value;
  view.pinnedRun = wanted.run || null;
  if (same) updateHint(); // the pickers' descriptions, now that they are here
  else await showKey();
  document.body.dataset.ready = "true";
}
if (el.apiKey.value) $("access").open = true;
start();
