/**
 * The <jobtail-log> element's line selection: permalinks (#L12, #L12-L20), clicks on line
 * numbers (shift-click for a range), copy of the selected lines, and the log's own clicks and
 * keys (group toggles, expand, End). Its own module: all that the reader does to the lines.
 */

import { lineText } from "./row.js";

/** Mixed into JobtailLog (element.js): selection, permalinks, copy, and the log's input. */
export const Selection = (Base) => class extends Base {
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
    // mark the rows in view in place: rendered anew, their nodes were replaced under the
    // pointer, and a click whose mousedown and mouseup land on different nodes is lost
    const [a, b] = this.selection;
    for (const [seq, node] of this.view.rendered) node.classList.toggle("selected", a <= seq && seq <= b);
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

  /** Clicks on line numbers and row buttons, and End, in the log itself. */
  wireLines() {
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
};
