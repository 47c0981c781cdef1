/**
 * follow(): a run's lines over Server-Sent Events, resumed by cursor, each line delivered once.
 *
 * EventSource reconnects by itself with Last-Event-ID (also after an id-only "window end"
 * event), but it cannot see status codes: once it gives up (a 204, a 401, a proxy's HTML page)
 * this client asks the same URL with fetch and reads the status. 204 means the run is over and
 * was read to its end; 401/403/404/410/422 are reported through onError and never retried;
 * anything else (5xx, 429, no network) is retried with backoff from the last seq delivered.
 *
 *   const stop = follow("/runs/u/s/logs", { tail: 500, onLines, onEnd, onError });
 *   stop.close();
 */

import { followStream } from "./streams.js";

const FATAL = new Set([400, 401, 403, 404, 405, 410, 422]);

/** Parse `<run_id>:<seq>`; null when it is not a cursor. */
export function parseEventId(id) {
  const match = /^(.+):(\d+)$/.exec(id || "");
  return match ? { runId: match[1], seq: Number(match[2]) } : null;
}

/**
 * @param {string} url the SSE route (relative URLs resolve against the page)
 * @param {object} options after, level, tail, token, runId, batchMs, onLines(lines),
 *   onStatus(data), onEnd(data), onError({status, detail}), onState(state, label);
 *   transport: "streams" reads the run's Durable Stream instead (cacheable by a CDN, see
 *   streams.js; `tail` does not apply: it reads from the start)
 * @returns {{close(): void, readonly last: number, readonly duplicates: number}}
 */
export function follow(url, options = {}) {
  if (options.transport === "streams") return followStream(url, options);
  const opts = { batchMs: 16, ...options };
  const given = new URL(url, document.baseURI).searchParams.get("after");
  const state = {
    last: Number(opts.after ?? given) || 0, // the highest seq delivered: the cursor to resume from
    runId: opts.runId || null,
    duplicates: 0,
    closed: false,
    es: null,
    pending: [],
    timer: null,
    retry: null,
    failures: 0,
    first: true,
  };
  const notify = (name, ...args) => {
    const fn = opts[name];
    if (typeof fn === "function") fn(...args);
  };

  function streamUrl() {
    const u = new URL(url, document.baseURI);
    if (state.runId && !u.searchParams.has("run_id")) u.searchParams.set("run_id", state.runId);
    if (opts.token) u.searchParams.set("token", opts.token);
    if (opts.level) u.searchParams.set("level", opts.level);
    u.searchParams.delete("after");
    u.searchParams.delete("tail");
    if (state.last > 0) u.searchParams.set("after", String(state.last));
    else if (state.first && opts.tail) u.searchParams.set("tail", String(opts.tail));
    return u.href;
  }

  function flush() {
    state.timer = null;
    if (!state.pending.length) return;
    const lines = state.pending;
    state.pending = [];
    notify("onLines", lines);
  }

  function take(event) {
    let line;
    try {
      line = JSON.parse(event.data);
    } catch {
      return;
    }
    if (!line || !Number.isInteger(line.seq)) return;
    const id = parseEventId(event.lastEventId);
    if (id && state.runId && id.runId !== state.runId) return; // another run's line
    if (id && !state.runId) state.runId = id.runId;
    if (line.seq <= state.last) {
      state.duplicates += 1;
      return;
    }
    state.last = line.seq;
    state.failures = 0;
    state.pending.push(line);
    if (state.timer === null) state.timer = setTimeout(flush, opts.batchMs);
  }

  function open() {
    if (state.closed) return;
    const es = new EventSource(streamUrl());
    state.first = false;
    state.es = es;
    notify("onState", "connecting", "connecting…");
    es.onopen = () => {
      if (state.es === es) notify("onState", "live", "live");
    };
    es.onmessage = (event) => {
      if (state.es === es) take(event);
    };
    es.addEventListener("status", (event) => {
      if (state.es !== es) return;
      const data = safeJson(event.data);
      if (data.run_id && !state.runId) state.runId = data.run_id;
      notify("onStatus", data);
    });
    es.addEventListener("end", (event) => {
      if (state.es !== es) return;
      end(safeJson(event.data));
    });
    es.onerror = () => {
      if (state.es !== es) return;
      if (es.readyState === EventSource.CLOSED) check();
      else notify("onState", "reconnecting", "reconnecting…");
    };
  }

  function end(data) {
    stop();
    flush();
    notify("onState", "ended", "ended");
    notify("onEnd", { run_id: state.runId, last_seq: state.last, ...data });
  }

  /** EventSource gave up: ask the URL itself what is wrong. */
  async function check() {
    if (state.es) state.es.close();
    state.es = null;
    flush();
    notify("onState", "connecting", "checking…");
    const abort = new AbortController();
    let status = 0;
    let detail = "";
    try {
      const resp = await fetch(streamUrl(), {
        headers: { Accept: "text/event-stream" },
        cache: "no-store",
        signal: abort.signal,
      });
      status = resp.status;
      if (!resp.ok || status === 204) detail = await errorText(resp);
      abort.abort(); // a 200 is a live stream: EventSource takes it from here
    } catch {
      status = 0;
    }
    if (state.closed) return;
    if (status === 204) {
      end({});
    } else if (FATAL.has(status)) {
      stop();
      notify("onState", "error", "disconnected");
      notify("onError", { status, detail: detail || `HTTP ${status}` });
    } else if (status === 200) {
      open();
    } else {
      state.failures += 1;
      const delay = Math.min(30000, 500 * 2 ** Math.min(state.failures - 1, 6));
      notify("onState", "reconnecting", `reconnecting in ${Math.ceil(delay / 1000)} s…`);
      state.retry = setTimeout(open, delay);
    }
  }

  function stop() {
    state.closed = true;
    if (state.es) state.es.close();
    state.es = null;
    clearTimeout(state.retry);
  }

  open();
  return {
    close() {
      stop();
      clearTimeout(state.timer);
      state.pending = [];
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

function safeJson(text) {
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" ? value : {};
  } catch {
    return {};
  }
}

/** The `detail` of a JSON error body, or a short text body. */
export async function errorText(resp) {
  const text = await resp.text().catch(() => "");
  try {
    const detail = JSON.parse(text).detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) return detail.map((d) => d.msg || String(d)).join("; ");
  } catch {
    /* not JSON */
  }
  return text.length < 300 ? text.trim() : "";
}
