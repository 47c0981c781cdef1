/**
 * The <jobtail-log> element's collapsible groups (::group::, GitLab sections, a `group` field)
 * and expanded long lines: where a group ends, its duration, folding and unfolding. Its own
 * module because finding a group's end across paged lines is a concern of its own.
 */

import { duration, groupMarker } from "./lines.js";

/** Mixed into JobtailLog (element.js): group headers, folding, and expanded rows. */
export const Groups = (Base) => class extends Base {
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
};
