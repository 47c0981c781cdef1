/**
 * The page's upload form: a JSON or YAML document picked or dropped anywhere on the page is
 * uploaded, remembered in this browser, chosen, and shown (through the `show` app.js passes).
 */

import { api, clearError, detailOf, showError } from "./api.js";
import { addUploadOption, rememberUpload } from "./pickers.js";
import { BASE, el, view } from "./state.js";

async function upload(file, show) {
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
  await show();
}

/** The file input's change and drag and drop onto the page; `show` shows the chosen key. */
export function wireUpload(show) {
  el.file.addEventListener("change", () => upload(el.file.files && el.file.files[0], show));
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
    upload(file, show);
  });
}
