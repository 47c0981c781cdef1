/**
 * The <jobtail-log> element's toolbar: its shadow markup (the level filter, search box, time
 * format, copy and download buttons, line count, and the jump-to-latest button), the handlers
 * its controls call, and what it shows (count, download links, time mode). Kept apart from
 * element.js so the element's life cycle reads on its own; the search itself is find.js.
 */

import { grouped } from "./lines.js";

export const TIME_KEY = "jobtail.time";
export const TEMPLATE = `
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

/** Mixed into JobtailLog (element.js): the toolbar's state and controls. */
export const Toolbar = (Base) => class extends Base {
  get level() {
    return this.$("level").value;
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

  /** The toolbar controls' listeners (the log's own clicks and keys: selection.js). */
  wireToolbar() {
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
  }
};
