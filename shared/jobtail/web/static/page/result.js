/**
 * The page's result panel and downloads: the generated code shown and copied, and the result
 * and log downloads fetched with the API key when one is set (a link cannot send the header).
 */

import { api, detailOf, showError } from "./api.js";
import { $, apiKey, el, view } from "./state.js";

/** The result panel's buttons and the download links' clicks. */
export function wireResult() {
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
}
