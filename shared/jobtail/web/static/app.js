/**
 * jobtail's page: pick a document and a service, generate, and watch the run in <jobtail-log>.
 * This module is the page's own script: which run to show (from the URL, the pickers, Generate)
 * and what the element's events change on the page; the log itself is the element any other
 * page can use. The page's other controls are modules under page/, so no one file holds them
 * all: state.js (what they share), api.js (requests, the error banner), pickers.js, runbar.js
 * (the run's status and its attempts), upload.js and result.js. Data from the server is only
 * set with textContent.
 */

import "./jobtail/element.js";
import { api, clearError, detailOf, setConn, showError } from "./page/api.js";
import { addUploadOption, loadPickers, updateHint } from "./page/pickers.js";
import { wireResult } from "./page/result.js";
import { applyRun, refreshRuns, setProgress, setStatus } from "./page/runbar.js";
import { $, apiKey, el, enc, keyPath, readUrl, services, statusPath, view, writeUrl } from "./page/state.js";
import { wireUpload } from "./page/upload.js";

export { shortenPaths } from "./page/runbar.js";

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

/* ---- showing a key, generating ----------------------------------------------------------- */
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
wireUpload(showKey);
$("error-close").addEventListener("click", clearError);
el.apiKey.value = sessionStorage.getItem("jobtail.apikey") || "";
el.apiKey.addEventListener("change", () => {
  if (apiKey() === (sessionStorage.getItem("jobtail.apikey") || "")) return;
  sessionStorage.setItem("jobtail.apikey", apiKey());
  clearError();
  start();
});
wireResult();
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
