/**
 * The <jobtail-log> element's level filter and search over every line: both ask the server
 * (search.js) and keep the matching seqs, the search its current match and highlights. Its own
 * module so that element.js holds the element's life cycle and the reading of lines only.
 */

import { grouped } from "./lines.js";
import { lowerBound } from "./rows.js";
import { SearchError, searchRun } from "./search.js";

/** Mixed into JobtailLog (element.js): the level filter and the search. */
export const Find = (Base) => class extends Base {
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
};
