/**
 * <jobtail-log src="/runs/u/s/logs?run_id=…" token="…" tail="1000" permalinks>
 *
 * A run's log for any page: opens at the end (the last `tail` lines over SSE, then live), pages
 * earlier lines by seq as the user scrolls up, searches every line on the server, and keeps only
 * the rows in view in the DOM. jobtail's own page is one user of it; a React app is another.
 *
 * Attributes: src (the SSE route), final and search (default: src + "/final", "/search"),
 * token, tail, started (ISO time relative timestamps count from), permalinks (follow #L12 and
 * #L12-L20 in the page's URL), transport ("streams": read through the run's Durable Stream,
 * which a CDN can cache; see streams.js). Events (bubbling, composed): jobtail-status, jobtail-lines,
 * jobtail-end, jobtail-error, jobtail-state, jobtail-select.
 */

import { follow } from "./follow.js";
import { groupMarker, grouped, LEVELS, levelOf, duration } from "./lines.js";
import { LinePager } from "./pager.js";
import { lineText, renderRow } from "./row.js";
import { lowerBound, Rows } from "./rows.js";
import { SearchError, searchRun } from "./search.js";
import { css } from "./style.js";
import { VirtualList } from "./view.js";

const TIME_KEY = "jobtail.time";
const TEMPLATE = `
<div class="toolbar" part="toolbar">
  <label class="sr-only" for="level">Minimum level</label>
  <select id="level" data-testid="level" title="Minimum level">
    <option value="DEBUG">All levels</option>
    <option value="INFO">Info and above</option>
    <option value="WARNING">Warnings and errors</option>
    <option value="ERROR">Errors only</option>
  </select>
  <div class="search" role="search">
    <label class="sr-only" for="search">Search every line</label>
    <input type="search" id="search" data-testid="search" placeholder="Search every line…"
           autocomplete="off" spellcheck="false">
    <label class="opt" title="Match case"><input type="checkbox" id="search-case">Aa</label>
    <label class="opt" title="Regular expression"><input type="checkbox" id="search-regex">.*</label>
    <button type="button" id="search-prev" aria-label="Previous match" disabled>↑</button>
    <button type="button" id="search-next" aria-label="Next match" disabled>↓</button>
    <span id="search-count" data-testid="search-count" aria-live="polite"></span>
  </div>
  <label class="sr-only" for="time">Timestamps</label>
  <select id="time" data-testid="time" title="Timestamps">
    <option value="local">Local time</option>
    <option value="utc">UTC</option>
    <option value="relative">Since start</option>
  </select>
  <button type="button" id="copy" data-testid="copy" title="Copy the selected lines (click a line number; shift-click for a range)" disabled>Copy</button>
  <a class="button" id="download-text" data-testid="download-text" download>Download .log</a>
  <a class="button" id="download-jsonl" data-testid="download-jsonl" download>.jsonl</a>
  <span class="spacer"></span>
  <span id="count" data-testid="count" role="status">0 lines</span>
</div>
<div class="logwrap">
  <div id="lines" data-testid="lines" role="log" aria-label="Log lines" tabindex="0" data-duplicates="0"></div>
  <button type="button" id="jump" data-testid="jump" hidden>↓ Jump to latest</button>
</div>`;

function withPath(src, suffix) {
  const u = new URL(src, document.baseURI);
  u.pathname = u.pathname.replace(/\/$/, "") + suffix;
  for (const key of ["after", "tail", "level"]) u.searchParams.delete(key);
  return u.href;
}

export class JobtailLog extends HTMLElement {
  static observedAttributes = ["src", "transport"];

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    root.adoptedStyleSheets = [sheet];
    root.innerHTML = TEMPLATE; // static markup only; no data ever goes through innerHTML
    this.$ = (id) => root.getElementById(id);
    this.linesBox = this.$("lines");
    this.rows = new Rows();
    this.view = new VirtualList(this.linesBox, {
      count: () => this.rows.count(),
      seqAt: (i) => this.rows.seqAt(i),
      indexOf: (seq) => this.rows.indexOf(seq),
      render: (seq) => this.renderSeq(seq),
      onRange: (first, last, i0, i1) => this.onRange(first, last, i0, i1),
    });
    this.view.onFollow = (on, unseen) => {
      this.$("jump").hidden = on;
      this.$("jump").textContent = unseen ? `↓ Jump to latest (${unseen} new)` : "↓ Jump to latest";
    };
    this.timeMode = localStorage.getItem(TIME_KEY) || "local";
    this.$("time").value = this.timeMode;
    this.wire();
    this.reset();
  }

  connectedCallback() {
    this.view.measure(renderRow({ seq: 1, log_level: "INFO", message: "x" }, { seq: 1 }));
    if (this.hasAttribute("permalinks")) {
      this.onHash = () => this.followHash();
      window.addEventListener("hashchange", this.onHash);
    }
    if (!this.stream && this.getAttribute("src")) this.start();
  }

  disconnectedCallback() {
    this.stop();
    if (this.onHash) window.removeEventListener("hashchange", this.onHash);
  }

  attributeChangedCallback(name, old, value) {
    if ((name === "src" || name === "transport") && old !== value && this.isConnected && this.src) {
      this.start();
    }
  }

  // ---- state -----------------------------------------------------------------------------
  reset() {
    this.stop();
    this.rows = new Rows();
    this.pager = null;
    this.ended = null;
    this.progress = null;
    this.expanded = new Set();
    this.collapsed = new Map(); // header seq -> last hidden seq
    this.autoFolded = new Set(); // headers of sections that start collapsed, folded once
    this.groupCache = new Map();
    this.selection = null;
    this.search = { matches: [], current: -1, marks: null, abort: null };
    this.filterPending = [];
    this.filterReady = true;
    this.view.extras.clear();
    this.view.following = true;
    this.view.unseen = 0;
    this.$("jump").hidden = true;
    this.linesBox.dataset.duplicates = "0";
    this.view.invalidate();
    this.updateCount();
    this.updateSearchUi();
  }

  stop() {
    if (this.stream) this.stream.close();
    this.stream = null;
    if (this.search && this.search.abort) this.search.abort.abort();
  }

  emit(name, detail) {
    this.dispatchEvent(new CustomEvent(name, { detail, bubbles: true, composed: true }));
  }

  get src() {
    return this.getAttribute("src");
  }
  get token() {
    return this.getAttribute("token");
  }
  get finalUrl() {
    return this.getAttribute("final") || withPath(this.src, "/final");
  }
  get searchUrl() {
    return this.getAttribute("search") || withPath(this.src, "/search");
  }
  get started() {
    const at = Date.parse(this.getAttribute("started") || "");
    if (Number.isFinite(at)) return at;
    const first = this.pager && this.pager.get(1);
    return first && !first.missing ? Date.parse(first.timestamp) : null;
  }

  /** Follow the run `src` names from its last `tail` lines. */
  start() {
    this.reset();
    if (!this.src) return;
    this.pager = new LinePager(this.finalUrl, {
      token: this.token,
      onLoaded: () => this.view.invalidate(),
      onError: (detail) => this.emit("jobtail-error", { status: 0, detail }),
    });
    this.setDownloads();
    const tail = Number(this.getAttribute("tail")) || 1000;
    this.streamFloor = Infinity; // lines above it come over the stream: do not page them in
    this.stream = follow(this.src, {
      token: this.token,
      transport: this.getAttribute("transport") || "sse",
      tail,
      onLines: (lines) => this.take(lines),
      onStatus: (data) => {
        if (this.streamFloor === Infinity) this.streamFloor = Math.max(0, (Number(data.last_seq) || 0) - tail);
        this.grow(Number(data.last_seq) || 0, 0);
        this.emit("jobtail-status", data);
      },
      onEnd: (data) => this.finish(data),
      onError: (error) => {
        this.streamFloor = Infinity;
        this.emit("jobtail-error", error);
      },
      onState: (state, label) => {
        if (state !== "ended") this.emit("jobtail-state", { state, label }); // see finish()
      },
    });
    this.pendingHash = this.hasAttribute("permalinks") ? location.hash : "";
    if (this.level !== "DEBUG") this.applyLevel(); // the chosen filter and search carry over
    else if (this.$("search").value.trim()) this.runSearch();
  }

  take(lines) {
    this.pager.put(lines);
    let added = 0;
    for (const line of lines) {
      const pct = line.fields && line.fields.progress;
      if (typeof pct === "number" && (!this.progress || line.seq >= this.progress.seq)) {
        this.progress = { seq: line.seq, pct };
      }
      if (this.rows.filter) {
        if (LEVELS.indexOf(levelOf(line.log_level)) < LEVELS.indexOf(this.level)) continue;
        if (!this.filterReady) this.filterPending.push(line.seq);
        else if (!this.rows.filter.length || line.seq > this.rows.filter[this.rows.filter.length - 1]) {
          this.rows.filter.push(line.seq);
          added += 1;
        }
      }
    }
    const last = lines[lines.length - 1].seq;
    this.linesBox.dataset.duplicates = String(this.stream ? this.stream.duplicates : 0);
    this.grow(last, this.rows.filter ? added : Math.max(0, last - this.rows.lastSeq));
    this.view.schedule(); // rows shown as loading may be here now
    this.emit("jobtail-lines", { last_seq: this.rows.lastSeq, progress: this.progress && this.progress.pct });
    if (this.pendingHash) this.followHash();
  }

  grow(lastSeq, added) {
    if (lastSeq <= this.rows.lastSeq) return;
    if (!this.rows.filter) added = lastSeq - this.rows.lastSeq;
    this.rows.lastSeq = lastSeq;
    this.view.grew(added);
    this.updateCount();
  }

  async finish(data) {
    let end = data;
    if (!end.status) {
      // the stream stopped with a 204: the paged route says how the run ended
      end = { ...data, ...(await this.describe()) };
    }
    this.grow(Number(end.last_seq) || 0, 0);
    this.ended = end;
    this.streamFloor = Infinity; // whatever the stream did not bring (a 204 brings nothing)
    this.view.schedule();
    this.setDownloads();
    this.emit("jobtail-state", { state: "ended", label: "ended" });
    this.emit("jobtail-end", end);
    if (this.pendingHash) this.followHash();
  }

  async describe() {
    const u = new URL(this.finalUrl);
    u.searchParams.set("limit", "1");
    if (this.token) u.searchParams.set("token", this.token);
    try {
      const resp = await fetch(u.href, { cache: "no-store" });
      if (resp.ok) {
        const body = await resp.json();
        return { status: body.status, last_seq: body.last_seq, run_id: body.run_id };
      }
    } catch {
      /* reported below */
    }
    return {};
  }

  setDownloads() {
    for (const [id, format] of [["download-text", "text"], ["download-jsonl", "jsonl"]]) {
      const u = new URL(this.finalUrl);
      u.searchParams.set("format", format);
      if (this.token) u.searchParams.set("token", this.token);
      this.$(id).href = u.href;
    }
  }

  updateCount() {
    const total = this.rows.lastSeq;
    const noun = total === 1 ? "line" : "lines";
    const n = grouped;
    this.$("count").textContent = this.rows.filter
      ? `${n(this.rows.filter.length)} of ${n(total)} ${noun} shown${this.filterReady ? "" : "…"}`
      : `${n(total)} ${noun}`;
    this.$("count").dataset.total = String(total);
  }

  // ---- rows --------------------------------------------------------------------------------
  renderSeq(seq) {
    const line = this.pager && this.pager.get(seq);
    const header = line && !line.missing ? this.groupOf(seq, line) : null;
    return renderRow(line, {
      seq,
      timeMode: this.timeMode,
      start: this.started,
      marks: this.search.marks,
      match: this.isMatch(seq),
      current: this.search.matches[this.search.current] === seq,
      expanded: this.expanded.has(seq),
      selected: Boolean(this.selection && this.selection[0] <= seq && seq <= this.selection[1]),
      group: header,
    });
  }

  onRange(first, last, i0, i1) {
    if (!this.pager) return;
    const seqs = [];
    const live = this.stream && !this.ended && this.streamFloor !== Infinity;
    for (let i = i0; i <= i1; i += 1) {
      const seq = this.rows.seqAt(i);
      if (!(live && seq > this.streamFloor)) seqs.push(seq);
    }
    this.pager.focus = this.rows.seqAt(first);
    this.pager.want(seqs, this.rows.filter ? this.level : null);
  }

  get level() {
    return this.$("level").value;
  }

  /** A group header's toggle: {name, collapsed, duration}, or null for other lines. */
  groupOf(seq, line) {
    const marker = groupMarker(line);
    const fieldGroup = line.fields && typeof line.fields.group === "string" ? line.fields.group : null;
    let name = marker && marker.start ? marker.start : null;
    if (!name && fieldGroup) {
      const prev = this.pager.get(seq - 1);
      if (prev && !prev.missing && !(prev.fields && prev.fields.group === fieldGroup)) name = fieldGroup;
      if (seq === 1) name = fieldGroup;
    }
    if (!name) return null;
    if (marker && marker.collapsed && !this.autoFolded.has(seq)) {
      this.autoFolded.add(seq); // folded once, as the log asked; the reader may unfold it
      if (!this.collapsed.has(seq)) queueMicrotask(() => this.toggleGroup(seq));
    }
    const end = this.groupEnd(seq, line, 2000);
    let took = "";
    if (end) {
      const endLine = this.pager.get(end);
      const endMarker = endLine ? groupMarker(endLine) : null;
      const from = marker && marker.at ? marker.at : Date.parse(line.timestamp);
      const to = endMarker && endMarker.at ? endMarker.at : Date.parse(endLine.timestamp);
      if (Number.isFinite(from) && Number.isFinite(to)) took = `(${duration(to - from)})`;
    }
    return { name, collapsed: this.collapsed.has(seq), duration: took };
  }

  /** The last seq of the group starting at seq, from held lines (null if not held yet). */
  groupEnd(seq, line, budget) {
    if (this.groupCache.has(seq)) return this.groupCache.get(seq);
    const marker = groupMarker(line);
    const fieldGroup = !marker && line.fields ? line.fields.group : null;
    let depth = 0;
    for (let s = seq + 1; s <= Math.min(this.rows.lastSeq, seq + budget); s += 1) {
      const next = this.pager.get(s);
      if (!next) return null;
      if (next.missing) continue;
      if (fieldGroup) {
        if (!(next.fields && next.fields.group === fieldGroup)) return this.remember(seq, s - 1);
        continue;
      }
      const m = groupMarker(next);
      if (m && m.start && !(marker.id && m.id === marker.id)) depth += 1;
      if (m && m.end) {
        if (marker.id ? m.end === marker.id : depth === 0) return this.remember(seq, s);
        depth -= 1;
      }
    }
    if (fieldGroup && this.ended && seq + budget >= this.rows.lastSeq) return this.remember(seq, this.rows.lastSeq);
    return null;
  }

  remember(seq, end) {
    this.groupCache.set(seq, end);
    return end;
  }

  async toggleGroup(seq) {
    if (this.collapsed.has(seq)) {
      this.collapsed.delete(seq);
    } else {
      let end = this.groupEnd(seq, this.pager.get(seq), 50000);
      for (let page = 0; end === null && page < 10; page += 1) {
        const from = seq + 1 + page * 5000;
        if (from > this.rows.lastSeq) break;
        await this.pager.fetch(from, Math.min(this.rows.lastSeq, from + 4999));
        end = this.groupEnd(seq, this.pager.get(seq), 50000);
      }
      if (end === null) end = this.rows.lastSeq; // an open group: fold what there is
      this.collapsed.set(seq, end);
    }
    this.rows.setHidden([...this.collapsed].map(([a, b]) => [a + 1, b]));
    this.view.invalidate();
  }

  toggleExpanded(seq) {
    if (this.expanded.has(seq)) {
      this.expanded.delete(seq);
      this.view.extras.delete(seq);
    } else this.expanded.add(seq);
    this.view.forget(seq);
    this.view.render();
  }

  // ---- filter, search, time ---------------------------------------------------------------
  async applyLevel() {
    const level = this.level;
    if (this.search.abort) this.search.abort.abort();
    if (level === "DEBUG") {
      this.rows.filter = null;
      this.filterReady = true;
    } else {
      this.rows.filter = [];
      this.filterReady = false;
      this.filterPending = [];
    }
    this.view.invalidate();
    this.updateCount();
    if (level !== "DEBUG") await this.loadFilter(level);
    if (this.$("search").value.trim()) this.runSearch();
  }

  async loadFilter(level) {
    const filter = this.rows.filter;
    const abort = new AbortController();
    this.filterAbort = abort;
    try {
      const { matches, lastSeq } = await searchRun(this.searchUrl, {
        level,
        token: this.token,
        signal: abort.signal,
        onProgress: (seqs) => {
          if (this.rows.filter !== filter) return;
          filter.length = 0;
          for (const seq of seqs) filter.push(seq);
          this.updateCount();
          this.view.schedule();
        },
      });
      if (this.rows.filter !== filter) return;
      filter.length = 0;
      for (const seq of matches) filter.push(seq);
      for (const seq of this.filterPending) if (seq > lastSeq && seq > (filter[filter.length - 1] || 0)) filter.push(seq);
      this.filterReady = true;
      this.updateCount();
      this.view.invalidate();
    } catch (exc) {
      if (exc.name !== "AbortError") this.emit("jobtail-error", { status: exc.status || 0, detail: `filter: ${exc.message}` });
    }
  }

  marksFor(q, regex, caseSensitive) {
    try {
      const source = regex ? q : q.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
      return new RegExp(source, caseSensitive ? "g" : "gi");
    } catch {
      return null; // a Python-only pattern: rows are still marked as matches
    }
  }

  async runSearch() {
    const q = this.$("search").value;
    if (this.search.abort) this.search.abort.abort();
    const regex = this.$("search-regex").checked;
    const caseSensitive = this.$("search-case").checked;
    const abort = new AbortController();
    this.search = { matches: [], current: -1, marks: null, abort, busy: Boolean(q.trim()), query: q };
    this.view.invalidate();
    this.updateSearchUi();
    if (!q.trim()) return;
    const started = performance.now();
    try {
      const { matches } = await searchRun(this.searchUrl, {
        q,
        regex,
        caseSensitive,
        level: this.level === "DEBUG" ? null : this.level,
        token: this.token,
        signal: abort.signal,
        onProgress: (seqs) => {
          this.search.matches = seqs;
          this.updateSearchUi();
        },
      });
      if (this.search.abort !== abort) return;
      this.search.matches = matches;
      this.search.busy = false;
      this.search.marks = this.marksFor(q, regex, caseSensitive);
      this.search.ms = performance.now() - started;
      this.view.invalidate();
      this.updateSearchUi();
      if (matches.length) this.gotoMatch(this.firstMatchInView());
    } catch (exc) {
      if (exc.name === "AbortError") return;
      this.search.busy = false;
      this.search.error = exc instanceof SearchError ? exc.message : String(exc);
      this.updateSearchUi();
    }
  }

  firstMatchInView() {
    const top = this.rows.seqAt(this.view.indexAt(this.linesBox.scrollTop));
    const i = lowerBound(this.search.matches, top);
    return i < this.search.matches.length ? i : 0;
  }

  isMatch(seq) {
    const m = this.search.matches;
    if (!m.length) return false;
    const i = lowerBound(m, seq);
    return m[i] === seq;
  }

  gotoMatch(i) {
    const m = this.search.matches;
    if (!m.length) return;
    this.search.current = (i + m.length) % m.length;
    this.scrollToSeq(m[this.search.current]);
    this.updateSearchUi();
  }

  updateSearchUi() {
    const s = this.search;
    const n = s.matches.length;
    let text = "";
    if (s.error) text = s.error;
    else if (s.busy) text = `${grouped(n)} matches so far…`;
    else if (s.query && s.query.trim()) {
      text = n ? `${s.current >= 0 ? grouped(s.current + 1) : "–"} of ${grouped(n)} matches` : "no matches";
    }
    this.$("search-count").textContent = text;
    this.$("search-prev").disabled = !n;
    this.$("search-next").disabled = !n;
  }

  setTimeMode(mode) {
    this.timeMode = mode;
    try {
      localStorage.setItem(TIME_KEY, mode);
    } catch {
      /* private mode */
    }
    this.view.invalidate();
  }

  // ---- permalinks, selection, copy --------------------------------------------------------
  /** Show seq: load it if needed, unfold its group, centre it. */
  scrollToSeq(seq) {
    for (const [header, end] of this.collapsed) {
      if (header < seq && seq <= end) this.collapsed.delete(header);
    }
    this.rows.setHidden([...this.collapsed].map(([a, b]) => [a + 1, b]));
    this.view.invalidate();
    this.view.scrollToIndex(this.rows.indexOf(seq));
  }

  select(first, last = first) {
    this.selection = [Math.min(first, last), Math.max(first, last)];
    this.$("copy").disabled = false;
    this.view.invalidate();
    this.emit("jobtail-select", { first: this.selection[0], last: this.selection[1] });
  }

  /** #L12 or #L12-L20: once the run is known to reach that far, show and select it. */
  followHash() {
    const hash = this.pendingHash !== undefined && this.pendingHash !== "" ? this.pendingHash : location.hash;
    const m = /^#L(\d+)(?:-L?(\d+))?$/.exec(hash || "");
    if (!m) {
      this.pendingHash = "";
      return;
    }
    const first = Number(m[1]);
    const last = Number(m[2] || m[1]);
    if (Math.max(first, last) > this.rows.lastSeq && !this.ended) {
      this.pendingHash = hash; // not that far yet
      return;
    }
    this.pendingHash = "";
    this.select(first, Math.min(last, Math.max(first, this.rows.lastSeq)));
    this.scrollToSeq(Math.min(first, last));
  }

  async copySelection() {
    if (!this.selection) return;
    const [first, last] = this.selection;
    const lines = [];
    for (let from = first; from <= last; from += 5000) {
      const to = Math.min(last, from + 4999);
      let held = true;
      for (let s = from; s <= to && held; s += 1) held = this.pager.has(s);
      if (!held) await this.pager.fetch(from, to);
      for (let s = from; s <= to; s += 1) lines.push(lineText(this.pager.get(s)));
    }
    const button = this.$("copy");
    try {
      await navigator.clipboard.writeText(`${lines.join("\n")}\n`);
      button.textContent = `Copied ${lines.length === 1 ? "1 line" : `${lines.length} lines`}`;
    } catch {
      button.textContent = "Copy failed";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2000);
  }

  // ---- wiring -----------------------------------------------------------------------------
  wire() {
    this.$("jump").addEventListener("click", () => {
      this.view.jumpToEnd();
      this.$("jump").hidden = true;
    });
    this.$("level").addEventListener("change", () => this.applyLevel());
    let timer = null;
    this.$("search").addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.runSearch(), 250);
    });
    this.$("search").addEventListener("keydown", (event) => {
      if (event.key !== "Enter") return;
      event.preventDefault();
      if (this.search.query !== this.$("search").value) this.runSearch();
      else this.gotoMatch(this.search.current + (event.shiftKey ? -1 : 1));
    });
    for (const id of ["search-case", "search-regex"]) this.$(id).addEventListener("change", () => this.runSearch());
    this.$("search-next").addEventListener("click", () => this.gotoMatch(this.search.current + 1));
    this.$("search-prev").addEventListener("click", () => this.gotoMatch(this.search.current - 1));
    this.$("time").addEventListener("change", () => this.setTimeMode(this.$("time").value));
    this.$("copy").addEventListener("click", () => this.copySelection());
    this.linesBox.addEventListener("click", (event) => {
      const target = event.target.closest("[data-action], a.seq");
      if (!target) return;
      const seq = Number(target.closest(".line").dataset.seq);
      if (target.matches("a.seq")) {
        event.preventDefault();
        const anchor = event.shiftKey && this.selection ? this.selection[0] : seq;
        const [a, b] = [Math.min(anchor, seq), Math.max(anchor, seq)];
        if (this.hasAttribute("permalinks")) history.replaceState(null, "", a === b ? `#L${a}` : `#L${a}-L${b}`);
        this.select(a, b);
      } else if (target.dataset.action === "expand") this.toggleExpanded(seq);
      else if (target.dataset.action === "group") this.toggleGroup(seq);
    });
    this.linesBox.addEventListener("keydown", (event) => {
      if (event.key === "End" && !event.target.closest("button, a")) this.view.jumpToEnd();
    });
  }
}

if (!customElements.get("jobtail-log")) customElements.define("jobtail-log", JobtailLog);
