/**
 * Server-side search of a whole run (`…/logs/search`): the server scans by seq within a time
 * budget per request and says where to go on; this walks those pages and reports progress.
 */

import { errorText } from "./follow.js";

/**
 * @param {string} url the search route
 * @param {object} query q, regex, caseSensitive, level, token, signal, onProgress(seqs, body)
 * @returns {Promise<{matches: number[], lastSeq: number, truncated: boolean}>}
 */
export async function searchRun(url, query) {
  const matches = [];
  let after = 0;
  let lastSeq = 0;
  let truncated = false;
  for (let page = 0; page < 10000; page += 1) {
    const u = new URL(url, document.baseURI);
    if (query.q) u.searchParams.set("q", query.q);
    if (query.regex) u.searchParams.set("regex", "true");
    if (query.caseSensitive) u.searchParams.set("case", "true");
    if (query.level) u.searchParams.set("level", query.level);
    if (query.token) u.searchParams.set("token", query.token);
    if (query.upto) u.searchParams.set("upto", String(query.upto));
    u.searchParams.set("after", String(after));
    const resp = await fetch(u.href, { cache: "no-store", signal: query.signal });
    if (!resp.ok) throw new SearchError(resp.status, await errorText(resp));
    const body = await resp.json();
    for (const seq of body.matches) matches.push(seq);
    lastSeq = body.upto;
    query = { ...query, upto: body.upto }; // every page scans the same run prefix
    truncated = truncated || Boolean(body.truncated);
    if (query.onProgress) query.onProgress(matches, body);
    if (body.next_after == null) break;
    after = body.next_after;
  }
  return { matches, lastSeq, truncated };
}

export class SearchError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
  }
}
