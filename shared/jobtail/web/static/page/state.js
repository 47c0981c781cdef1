/**
 * What the page's modules share: its elements (looked up once), what it shows (the upload, the
 * service, the pinned run, the run, its token), the pickers' choices, the paths it asks, and the
 * URL state. Its own module so the page's other modules read the same state without a cycle.
 */

export const ACTIVE = new Set(["queued", "running"]);
export const $ = (id) => document.getElementById(id);
export const el = {
  sample: $("sample"), samples: $("samples-group"), uploads: $("uploads-group"),
  file: $("upload-file"), uploadButton: $("upload-button"), service: $("service"),
  generate: $("generate"), hint: $("hint"), error: $("error"), apiKey: $("api-key"),
  status: $("status"), meta: $("run-meta"), runs: $("runs"), progress: $("progress"),
  progressFill: $("progress-fill"), progressText: $("progress-text"), actions: $("actions"),
  showResult: $("show-result"), resultLink: $("result-link"), logLink: $("log-link"),
  runError: $("run-error"), resultPanel: $("result-panel"), resultTitle: $("result-title"),
  resultCode: $("result-code"), log: $("log"), conn: $("conn"), elapsed: $("elapsed"),
};

export const view = { epoch: 0, upload: "", service: "", pinnedRun: null, run: null, token: null, timer: null };
export const samples = new Map();
export const services = new Map();

export const enc = encodeURIComponent;
// Paths are relative to where the page is served, so it also works under a gateway's stage
// prefix (API Gateway's /Prod/) or any reverse-proxy sub-path.
export const BASE = location.pathname.endsWith("/") ? location.pathname : `${location.pathname}/`;
export const keyPath = () => `${BASE}runs/${enc(view.upload)}/${enc(view.service)}`;
export const apiKey = () => el.apiKey.value.trim();
export const statusPath = () => `${keyPath()}/status${view.pinnedRun ? `?run_id=${enc(view.pinnedRun)}` : ""}`;

/* ---- URL state: ?upload=&service=[&run=] so a reload or a shared link shows the same run ---- */
export function readUrl() {
  const params = new URLSearchParams(location.search);
  return { upload: params.get("upload"), service: params.get("service"), run: params.get("run") };
}
export function writeUrl(keepHash = false) {
  const params = new URLSearchParams();
  if (view.upload) params.set("upload", view.upload);
  if (view.service) params.set("service", view.service);
  if (view.pinnedRun) params.set("run", view.pinnedRun);
  history.replaceState(null, "", `${location.pathname}?${params}${keepHash ? location.hash : ""}`);
}
