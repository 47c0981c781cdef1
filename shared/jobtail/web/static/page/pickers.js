/**
 * The page's document and service pickers: the bundled samples and services the server lists,
 * the uploads this browser remembers, and the hint that describes the chosen pair.
 */

import { api, detailOf, showError } from "./api.js";
import { BASE, el, samples, services, view } from "./state.js";

const UPLOADS_KEY = "jobtail.uploads";

export function addOption(parent, value, label, title) {
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
export function rememberUpload(upload) {
  const list = rememberedUploads().filter((u) => u.upload_id !== upload.upload_id);
  list.unshift({ upload_id: upload.upload_id, filename: upload.filename || upload.upload_id });
  try {
    localStorage.setItem(UPLOADS_KEY, JSON.stringify(list.slice(0, 20)));
  } catch {
    /* private mode */
  }
}
export function addUploadOption(upload) {
  if ([...el.sample.options].some((o) => o.value === upload.upload_id)) return;
  el.uploads.hidden = false;
  addOption(el.uploads, upload.upload_id, upload.filename || upload.upload_id, upload.upload_id);
}

export async function loadPickers() {
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

export function updateHint() {
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
