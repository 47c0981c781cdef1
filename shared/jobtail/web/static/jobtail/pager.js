/**
 * Lines by seq, fetched on demand from the paged JSON route (`…/logs/final?after=&before=`)
 * and kept in a bounded cache, so a view of a million-line run holds what a few screens hold.
 */

const PAGE = 500;

export class LinePager {
  /**
   * @param {string} url the paged route (`…/logs/final`), relative to the page
   * @param {object} options token, maxLines, onLoaded(), onError(detail)
   */
  constructor(url, options = {}) {
    this.url = url;
    this.token = options.token || null;
    this.maxLines = options.maxLines || 60000;
    this.onLoaded = options.onLoaded || (() => {});
    this.onError = options.onError || (() => {});
    this.lines = new Map(); // seq -> line, or {seq, missing: true} for a seq the run lacks
    this.inflight = new Set();
    this.focus = 0;
  }

  get(seq) {
    return this.lines.get(seq);
  }

  has(seq) {
    return this.lines.has(seq);
  }

  put(lines) {
    for (const line of lines) this.lines.set(line.seq, line);
    this.evict();
  }

  /** Ask for every seq of `seqs` not held yet (in pages of at most PAGE lines). */
  want(seqs, level = null) {
    const missing = seqs.filter((seq) => !this.lines.has(seq));
    for (let i = 0; i < missing.length; ) {
      const first = missing[i];
      let j = i;
      while (j + 1 < missing.length && j + 1 - i < PAGE && missing[j + 1] - first < PAGE * 8) j += 1;
      this.fetch(first, missing[j], level);
      i = j + 1;
    }
  }

  /** Lines with first <= seq <= last (at or above level); also returns them. */
  async fetch(first, last, level = null) {
    const key = `${first}-${last}-${level || ""}`;
    if (this.inflight.has(key)) return null;
    this.inflight.add(key);
    try {
      const u = new URL(this.url, document.baseURI);
      u.searchParams.set("after", String(first - 1));
      u.searchParams.set("before", String(last + 1));
      u.searchParams.set("limit", String(Math.min(5000, last - first + 1)));
      if (level) u.searchParams.set("level", level);
      if (this.token) u.searchParams.set("token", this.token);
      const resp = await fetch(u.href, { cache: "no-store" });
      if (!resp.ok) {
        this.onError(`cannot load lines ${first}–${last}: HTTP ${resp.status}`);
        return null;
      }
      const body = await resp.json();
      const got = Array.isArray(body.logs) ? body.logs : [];
      this.put(got);
      if (!level && body.next_after == null) {
        // seqs the run does not have (dropped by its line cap): remember, do not ask again
        const lastKnown = Number(body.last_seq) || 0;
        for (let seq = first; seq <= Math.min(last, lastKnown); seq += 1) {
          if (!this.lines.has(seq)) this.lines.set(seq, { seq, missing: true });
        }
      }
      this.onLoaded();
      return got;
    } catch (exc) {
      this.onError(`cannot load lines ${first}–${last}: ${exc}`);
      return null;
    } finally {
      this.inflight.delete(key);
    }
  }

  /** Drop the lines farthest from the focus once over the bound. */
  evict() {
    if (this.lines.size <= this.maxLines) return;
    const keep = this.maxLines / 2;
    for (const seq of this.lines.keys()) {
      if (Math.abs(seq - this.focus) > keep) this.lines.delete(seq);
    }
  }

  clear() {
    this.lines.clear();
  }
}
