/**
 * The page's requests to jobtail's API (with the API key, if one is set) and how it reports
 * what went wrong: the error banner and the connection badge. Every other page module uses it.
 */

import { $, apiKey, el } from "./state.js";

export async function api(path, options = {}) {
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

export function detailOf(res) {
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

export function showError(message) {
  el.error.querySelector(".text").textContent = message;
  el.error.hidden = false;
}
export function clearError() {
  el.error.hidden = true;
  el.error.querySelector(".text").textContent = "";
}
export function setConn(state, label) {
  el.conn.dataset.state = state;
  el.conn.textContent = label || state;
}
