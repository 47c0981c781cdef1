/**
 * A virtualized list of fixed-height rows: only the rows in view (plus a margin) are in the
 * DOM, so a million-line run costs what a screen costs. Rows that grow (an expanded multi-line
 * message) report their extra height, which the offsets account for.
 *
 * Follows the end while the user has not scrolled up; a scroll by the user (wheel, touch, key,
 * pointer) pauses following, and the "jump to latest" button says how many lines arrived since.
 */

const MARGIN = 25;

export class VirtualList {
  /**
   * @param {HTMLElement} scroller the scrolling box (holds a sizer and the rows)
   * @param {object} hooks count(), seqAt(i), render(seq) -> Element, onRange(first, last)
   */
  constructor(scroller, hooks) {
    this.scroller = scroller;
    this.hooks = hooks;
    this.sizer = document.createElement("div");
    this.sizer.className = "sizer";
    this.box = document.createElement("div");
    this.box.className = "rows";
    this.box.setAttribute("role", "presentation");
    this.sizer.append(this.box);
    scroller.append(this.sizer);
    this.rowHeight = 20;
    this.extras = new Map(); // seq -> extra px of a grown row
    this.rendered = new Map(); // seq -> element in the DOM
    this.stale = new Map(); // seq -> element rendered before an invalidate, until the next render
    this.following = true;
    this.unseen = 0;
    this.scheduled = false;
    this.userScrollUntil = 0;
    this.onFollow = () => {};
    for (const type of ["wheel", "touchmove", "keydown", "pointerdown"]) {
      scroller.addEventListener(
        type,
        (event) => {
          if (type === "keydown" && !["ArrowUp", "PageUp", "Home", "ArrowDown", "PageDown", "End", " "].includes(event.key))
            return;
          this.userScrollUntil = performance.now() + 1000;
        },
        { passive: true },
      );
    }
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    new ResizeObserver(() => this.schedule()).observe(scroller);
  }

  measure(probe) {
    this.box.append(probe);
    const height = probe.getBoundingClientRect().height;
    probe.remove();
    if (height > 0) this.rowHeight = height;
  }

  /** Extra height of the rows before index i (only grown rows count). */
  extraBefore(i) {
    let sum = 0;
    for (const [seq, px] of this.extras) if (this.hooks.indexOf(seq) < i) sum += px;
    return sum;
  }

  offsetOf(i) {
    return i * this.rowHeight + (this.extras.size ? this.extraBefore(i) : 0);
  }

  totalHeight() {
    let extra = 0;
    for (const px of this.extras.values()) extra += px;
    return this.hooks.count() * this.rowHeight + extra;
  }

  /** The first row at or above a scroll offset. */
  indexAt(top) {
    const n = this.hooks.count();
    let i = Math.min(n - 1, Math.max(0, Math.floor(top / this.rowHeight)));
    while (i > 0 && this.offsetOf(i) > top) i -= 1;
    return Math.max(0, i);
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < this.rowHeight + 4;
  }

  onScroll() {
    if (this.atBottom()) {
      if (!this.following) this.setFollowing(true);
    } else if (this.following && performance.now() < this.userScrollUntil) {
      this.setFollowing(false);
    } else if (this.following) {
      this.scroller.scrollTop = this.scroller.scrollHeight; // not the user: stay pinned
    }
    this.schedule();
  }

  setFollowing(on) {
    this.following = on;
    if (on) this.unseen = 0;
    this.onFollow(on, this.unseen);
  }

  /** New rows arrived at the end: follow them, or count them for the jump button. */
  grew(added) {
    if (!this.following && added > 0) {
      this.unseen += added;
      this.onFollow(false, this.unseen);
    }
    this.schedule();
  }

  jumpToEnd() {
    this.setFollowing(true);
    this.render();
  }

  /** Bring row i into view (centred) and stop following. */
  scrollToIndex(i) {
    this.following = false;
    this.onFollow(false, this.unseen);
    const top = this.offsetOf(i) - this.scroller.clientHeight / 2 + this.rowHeight / 2;
    this.sizer.style.height = `${this.totalHeight()}px`;
    this.scroller.scrollTop = Math.max(0, top);
    this.render();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    const run = () => {
      if (this.scheduled) this.render();
    };
    requestAnimationFrame(run);
    setTimeout(run, 100); // hidden tabs get no frames: keep them current anyway
  }

  /** Render every row anew (their content may have changed: a filter, a time format, lines
   *  loaded around them). One that comes out the same keeps its node: a click whose mousedown
   *  and mouseup land on different nodes is lost, and pages load while the reader clicks. */
  invalidate() {
    for (const [seq, node] of this.rendered) this.stale.set(seq, node);
    this.rendered.clear();
    this.schedule();
  }

  forget(seq) {
    this.rendered.delete(seq);
  }

  render() {
    this.scheduled = false;
    const n = this.hooks.count();
    this.sizer.style.height = `${this.totalHeight()}px`;
    if (this.following) this.scroller.scrollTop = this.scroller.scrollHeight;
    const top = this.scroller.scrollTop;
    const visible = Math.ceil(this.scroller.clientHeight / this.rowHeight) + 1;
    const first = n ? this.indexAt(top) : 0;
    const i0 = Math.max(0, first - MARGIN);
    const i1 = Math.min(n, first + visible + MARGIN);
    const keep = new Map();
    const rows = [];
    for (let i = i0; i < i1; i += 1) {
      const seq = this.hooks.seqAt(i);
      let row = this.rendered.get(seq);
      if (!row || row.classList.contains("pending")) {
        const fresh = this.hooks.render(seq); // loaded since? changed since?
        const old = row || this.stale.get(seq);
        row = old && old.outerHTML === fresh.outerHTML ? old : fresh;
      }
      keep.set(seq, row);
      rows.push(row);
    }
    this.rendered = keep;
    this.stale.clear();
    // replaceChildren keeps nodes that stay (focus and selection survive a re-render)
    const current = [...this.box.children];
    if (current.length !== rows.length || current.some((node, k) => node !== rows[k])) {
      this.box.replaceChildren(...rows);
    }
    this.box.style.transform = `translateY(${this.offsetOf(i0)}px)`;
    this.measureGrown(rows);
    if (n) this.hooks.onRange(first, Math.min(n - 1, first + visible), i0, i1 - 1);
  }

  /** Rows taller than one line (expanded) record their extra height. */
  measureGrown(rows) {
    let changed = false;
    for (const row of rows) {
      if (!row.classList.contains("expanded")) continue;
      const seq = Number(row.dataset.seq);
      const extra = Math.max(0, Math.round(row.getBoundingClientRect().height - this.rowHeight));
      if (this.extras.get(seq) !== extra) {
        this.extras.set(seq, extra);
        changed = true;
      }
    }
    if (changed) this.schedule();
  }
}
