/**
 * Which seq each row of the view shows. Unfiltered, row i is seq i+1 except inside collapsed
 * groups (hidden seq ranges); with a level filter, rows are the sorted seqs the server matched.
 */

export function lowerBound(sorted, value) {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid] < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class Rows {
  constructor() {
    this.lastSeq = 0;
    this.filter = null; // sorted seqs, or null for every line
    this.hidden = []; // sorted, disjoint [first, last] seq ranges hidden by collapsed groups
  }

  count() {
    if (this.filter) return this.filter.length;
    let hidden = 0;
    for (const [a, b] of this.hidden) if (a <= this.lastSeq) hidden += Math.min(b, this.lastSeq) - a + 1;
    return Math.max(0, this.lastSeq - hidden);
  }

  seqAt(i) {
    if (this.filter) return this.filter[i];
    let seq = i + 1;
    for (const [a, b] of this.hidden) {
      if (a <= seq) seq += b - a + 1;
      else break;
    }
    return seq;
  }

  /** The row of seq (or of the row that stands for it: a collapsed group's header). */
  indexOf(seq) {
    if (this.filter) return Math.min(lowerBound(this.filter, seq), Math.max(0, this.filter.length - 1));
    let index = seq - 1;
    for (const [a, b] of this.hidden) {
      if (b < seq) index -= b - a + 1;
      else if (a <= seq) index -= seq - a + 1; // inside: its header, the row before the range
    }
    return Math.max(0, index);
  }

  isHidden(seq) {
    return !this.filter && this.hidden.some(([a, b]) => a <= seq && seq <= b);
  }

  /** Set the hidden ranges from [first, last] pairs (merged, sorted). */
  setHidden(ranges) {
    const sorted = ranges.filter(([a, b]) => a <= b).sort((x, y) => x[0] - y[0]);
    const merged = [];
    for (const [a, b] of sorted) {
      const prev = merged[merged.length - 1];
      if (prev && a <= prev[1] + 1) prev[1] = Math.max(prev[1], b);
      else merged.push([a, b]);
    }
    this.hidden = merged;
  }
}
