/**
 * The <jobtail-log> element's attributes as properties: the routes it reads (src, and final and
 * search derived from it unless given), its token, and the time relative timestamps count from.
 * Kept apart so that element.js holds the element's life cycle and its reading of lines only.
 */

function withPath(src, suffix) {
  const u = new URL(src, document.baseURI);
  u.pathname = u.pathname.replace(/\/$/, "") + suffix;
  for (const key of ["after", "tail", "level"]) u.searchParams.delete(key);
  return u.href;
}

/** Mixed into JobtailLog (element.js): the attribute-backed getters. */
export const Attributes = (Base) => class extends Base {
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
};
