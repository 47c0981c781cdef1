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
 *
 * This module is the element's life cycle and the reading of lines (follow, page, grow); the
 * rest is mixed in, one module per concern: attributes.js (attribute-backed properties),
 * toolbar.js (its markup and controls), groups.js (folding), find.js (level filter and search),
 * selection.js (permalinks, selection, copy, the log's clicks and keys).
 */

import { Attributes } from "./attributes.js";
import { Find } from "./find.js";
import { follow } from "./follow.js";
import { Groups } from "./groups.js";
import { LEVELS, levelOf } from "./lines.js";
import { LinePager } from "./pager.js";
import { renderRow } from "./row.js";
import { Rows } from "./rows.js";
import { Selection } from "./selection.js";
import { css } from "./style.js";
import { TEMPLATE, TIME_KEY, Toolbar } from "./toolbar.js";
import { VirtualList } from "./view.js";

export class JobtailLog extends Selection(Find(Groups(Toolbar(Attributes(HTMLElement))))) {
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
    this.wireToolbar();
    this.wireLines();
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
}

if (!customElements.get("jobtail-log")) customElements.define("jobtail-log", JobtailLog);
