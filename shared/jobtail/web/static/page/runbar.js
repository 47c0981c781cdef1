/**
 * The page's run bar: the run's status, progress, clock and failure, its result and log links,
 * and the list of attempts for the chosen document and service. Kept apart from app.js, which
 * decides which run to show; this module shows it.
 */

import { duration, formatTime, grouped, localDateTime } from "../jobtail/lines.js";
import { api } from "./api.js";
import { addOption } from "./pickers.js";
import { ACTIVE, el, keyPath, view } from "./state.js";

export function setStatus(status) {
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

export function setProgress(pct) {
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

export function applyRun(run) {
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

export async function refreshRuns() {
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
