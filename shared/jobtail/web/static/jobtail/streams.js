/**
 * followStream(): a run's lines through its Durable Stream (`/v1/stream/runs/<run_id>`), the
 * reads a CDN can cache and collapse: catch-up reads from the start, then long-poll, echoing
 * `Stream-Cursor`, until `Stream-Closed`. Every viewer asks for the same URLs (offsets handed
 * out by the server, never made up here), so a thousand viewers cost the origin what one does.
 *
 * Lines are merged by `seq`: one a cache or a retry repeats is never delivered twice. A 4xx is
 * reported through onError once and never retried; network errors, 5xx and 429 are retried
 * from the same offset with backoff. follow(url, {transport: "streams"}) lands here; `url` may
 * be the stream itself or the SSE route (`…/runs/<upload>/<service>/logs?run_id=…`), whose
 * stream is found beside it.
 *
 *   const stop = followStream("/v1/stream/runs/019a…", { token, onLines, onEnd, onError });
 */

import { errorText } from "./follow.js";
import { LEVELS, levelOf } from "./lines.js";

const RETRY_STATUS = new Set([408, 425, 429]);

/** `<prefix>/runs/<upload>/<service>/logs` or `<prefix>/run/<id>/logs`, under any prefix. */
const SSE_ROUTE = /^(.*?\/)(?:runs\/([^/]+)\/([^/]+)|run\/([^/]+))\/logs\/?$/;

/** The run a URL names (`…/run/<id>/logs`, or `?run_id=`); null for a key's latest run. */
function runIdIn(u) {
  const byId = SSE_ROUTE.exec(u.pathname)?.[4];
  return byId ? decodeURIComponent(byId) : u.searchParams.get("run_id");
}

/** The run's stream URL, under the same prefix, for a stream URL or an SSE route. */
export function streamUrlOf(url, runId) {
  const u = new URL(url, document.baseURI);
  if (u.pathname.includes("/v1/stream/")) return `${u.origin}${u.pathname}`;
  const match = SSE_ROUTE.exec(u.pathname);
  if (!match) throw new TypeError(`not a run's log or stream URL: ${url}`);
  const id = runId || runIdIn(u);
  // By run id the reads are immutable (cacheable); by key they follow the key's latest run.
  const tail = id ? encodeURIComponent(id) : `${match[2]}/${match[3]}`;
  return `${u.origin}${match[1]}v1/stream/runs/${tail}`;
}

/**
 * @param {string} url the run's stream, or its SSE route
 * @param {object} options after, level, token, runId, onLines(lines), onStatus(data),
 *   onEnd(data), onError({status, detail}), onState(state, label); retryMs (first backoff)
 * @returns {{close(): void, readonly last: number, readonly duplicates: number}}
 */
export function followStream(url, options = {}) {
  const opts = { retryMs: 500, ...options };
  const given = new URL(url, document.baseURI).searchParams.get("after");
  const base = streamUrlOf(url, opts.runId);
  const minimum = opts.level ? LEVELS.indexOf(levelOf(opts.level)) : -1;
  const state = {
    last: Number(opts.after ?? given) || 0,
    runId: opts.runId || runIdIn(new URL(url, document.baseURI)),
    duplicates: 0,
    closed: false,
    abort: null,
    retry: null,
    failures: 0,
    running: false,
  };
  const notify = (name, ...args) => {
    const fn = opts[name];
    if (typeof fn === "function") fn(...args);
  };

  function readUrl(offset, live, cursor) {
    const u = new URL(base);
    if (offset === null) {
      if (opts.token) u.searchParams.set("token", opts.token);
      return u.href; // HEAD: the stream's state, never cached
    }
    // Sorted parameters: the same read is the same URL (one cache key) for every viewer.
    if (cursor) u.searchParams.set("cursor", cursor);
    if (live) u.searchParams.set("live", "long-poll");
    u.searchParams.set("offset", offset);
    if (opts.token) u.searchParams.set("token", opts.token);
    return u.href;
  }

  function take(lines) {
    const fresh = [];
    for (const line of Array.isArray(lines) ? lines : []) {
      if (!line || !Number.isInteger(line.seq)) continue;
      if (line.seq <= state.last) {
        state.duplicates += 1; // a cache's or a retry's repeat
        continue;
      }
      state.last = line.seq;
      if (minimum > 0 && LEVELS.indexOf(levelOf(line.log_level)) < minimum) continue;
      fresh.push(line);
    }
    if (fresh.length) notify("onLines", fresh);
  }

  async function run() {
    let offset = "-1";
    let cursor = "";
    let live = false;
    notify("onState", "connecting", "connecting…");
    while (!state.closed) {
      const abort = new AbortController();
      state.abort = abort;
      let resp;
      try {
        // The browser's own cache may keep reads too; a long-poll's cursor keeps it fresh.
        resp = await fetch(readUrl(offset, live, cursor), { signal: abort.signal });
      } catch {
        if (state.closed) return;
        await backoff();
        continue;
      }
      if (state.closed) return;
      const status = resp.status;
      if (status >= 500 || RETRY_STATUS.has(status)) {
        await backoff();
        continue;
      }
      if (status >= 400) {
        const detail = await errorText(resp);
        if (state.closed) return;
        stop();
        notify("onState", "error", "disconnected");
        notify("onError", { status, detail: detail || `HTTP ${status}` });
        return;
      }
      let lines = [];
      if (status === 200) {
        try {
          lines = await resp.json();
        } catch {
          if (state.closed) return;
          await backoff(); // a body cut short: read the same offset again
          continue;
        }
      }
      if (state.closed) return;
      state.failures = 0;
      const headers = resp.headers;
      take(lines);
      if (headers.get("Stream-Closed") === "true") {
        await end(headers.get("Jobtail-Run-Status"));
        return;
      }
      offset = headers.get("Stream-Next-Offset") || offset;
      cursor = headers.get("Stream-Cursor") || cursor;
      if (!live && headers.get("Stream-Up-To-Date") === "true") {
        live = true;
        notify("onState", "live", "live");
      }
      if (live && state.last > 0 && !state.running) {
        state.running = true; // lines at an open stream's edge: a worker claimed the run
        notify("onStatus", { run_id: state.runId, status: "running", last_seq: state.last });
      }
    }
  }

  async function backoff() {
    state.failures += 1;
    const delay = Math.min(30000, opts.retryMs * 2 ** Math.min(state.failures - 1, 6));
    notify("onState", "reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s…`);
    await new Promise((resolve) => {
      state.retry = setTimeout(resolve, delay);
    });
  }

  /** The stream is closed: every line is in. The outcome is the run's status. */
  async function end(status) {
    let outcome = status;
    if (!outcome) {
      try {
        const resp = await fetch(readUrl(null), { method: "HEAD", cache: "no-store" });
        outcome = resp.headers.get("Jobtail-Run-Status");
      } catch {
        outcome = null; // the caller may ask the run itself
      }
    }
    if (state.closed) return;
    stop();
    notify("onState", "ended", "ended");
    const data = { run_id: state.runId, last_seq: state.last };
    if (outcome) data.status = outcome;
    notify("onEnd", data);
  }

  function stop() {
    state.closed = true;
    if (state.abort) state.abort.abort();
    clearTimeout(state.retry);
  }

  run();
  return {
    close() {
      stop();
    },
    get last() {
      return state.last;
    },
    get duplicates() {
      return state.duplicates;
    },
    get runId() {
      return state.runId;
    },
  };
}
