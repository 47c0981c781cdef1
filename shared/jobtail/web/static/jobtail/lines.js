/**
 * What a line's text means on a terminal, as data: ANSI SGR styles parsed into segments (never
 * HTML), carriage-return progress collapsed to its last state, and group markers
 * (`::group::name` / `::endgroup::`, GitLab `section_start` / `section_end`, a `group` field).
 * Pure functions: the view turns segments into spans with textContent.
 */

export const LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

export function levelOf(value) {
  const level = String(value || "INFO").toUpperCase();
  if (level === "WARN") return "WARNING";
  if (level === "FATAL") return "CRITICAL";
  return LEVELS.includes(level) ? level : "INFO";
}

// CSI (ESC [ params final) and OSC (ESC ] ... BEL or ST) sequences; only SGR (final "m") styles.
const ESCAPES = /\x1b\[([0-9;:?]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]/g;

/** Keep what a terminal would show of carriage-return rewrites: each row's last state. */
export function collapseCarriageReturns(text) {
  if (!text.includes("\r")) return text;
  return text
    .split("\n")
    .map((row) => {
      const parts = row.split("\r");
      let last = parts.length - 1;
      while (last > 0 && stripAnsi(parts[last]) === "") last -= 1; // "abc\r" shows "abc"
      if (last === 0) return parts[0];
      const styles = parts.slice(0, last).join("").match(/\x1b\[[0-9;:]*m/g) || [];
      return styles.join("") + parts[last]; // colours set earlier still apply
    })
    .join("\n");
}

export function stripAnsi(text) {
  return text.replace(ESCAPES, "");
}

// Bidirectional overrides and isolates (U+202A-U+202E, U+2066-U+2069): they can make a line
// read differently from what it holds ("Trojan Source"), so the page shows them as escapes.
export const BIDI = /[\u202a-\u202e\u2066-\u2069]/g;

/** How the page shows a bidi control character: `<U+202E>`. */
export function bidiEscape(char) {
  return `<U+${char.codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}>`;
}

const BASE16 = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

function xterm256(n) {
  if (n < 16) return null; // a named colour: handled as a class
  if (n >= 232) {
    const v = 8 + (n - 232) * 10;
    return `rgb(${v}, ${v}, ${v})`;
  }
  const i = n - 16;
  const c = (x) => (x === 0 ? 0 : 55 + x * 40);
  return `rgb(${c(Math.floor(i / 36))}, ${c(Math.floor(i / 6) % 6)}, ${c(i % 6)})`;
}

function colour(codes, i, style, key) {
  // 38;5;n / 38;2;r;g;b (and 48 for the background); returns how many codes were used
  if (codes[i + 1] === 5 && codes.length > i + 2) {
    const n = codes[i + 2];
    if (n < 16) style[key] = { name: (n >= 8 ? "bright-" : "") + BASE16[n % 8] };
    else style[key] = { rgb: xterm256(n) };
    return 2;
  }
  if (codes[i + 1] === 2 && codes.length > i + 4) {
    const [r, g, b] = codes.slice(i + 2, i + 5).map((v) => Math.max(0, Math.min(255, v)));
    style[key] = { rgb: `rgb(${r}, ${g}, ${b})` };
    return 4;
  }
  return 0;
}

function applySgr(params, style) {
  const codes = params === "" ? [0] : params.split(/[;:]/).map((p) => Number(p) || 0);
  for (let i = 0; i < codes.length; i += 1) {
    const code = codes[i];
    if (code === 0) {
      for (const key of Object.keys(style)) delete style[key];
    } else if (code === 1) style.bold = true;
    else if (code === 2) style.dim = true;
    else if (code === 3) style.italic = true;
    else if (code === 4) style.underline = true;
    else if (code === 7) style.inverse = true;
    else if (code === 9) style.strike = true;
    else if (code === 22) delete style.bold, delete style.dim;
    else if (code === 23) delete style.italic;
    else if (code === 24) delete style.underline;
    else if (code === 27) delete style.inverse;
    else if (code === 29) delete style.strike;
    else if (code >= 30 && code <= 37) style.fg = { name: BASE16[code - 30] };
    else if (code >= 90 && code <= 97) style.fg = { name: `bright-${BASE16[code - 90]}` };
    else if (code >= 40 && code <= 47) style.bg = { name: BASE16[code - 40] };
    else if (code >= 100 && code <= 107) style.bg = { name: `bright-${BASE16[code - 100]}` };
    else if (code === 39) delete style.fg;
    else if (code === 49) delete style.bg;
    else if (code === 38) i += colour(codes, i, style, "fg");
    else if (code === 48) i += colour(codes, i, style, "bg");
  }
}

/**
 * Segments of text with their style: [{text, style}], style being {bold, dim, italic,
 * underline, inverse, strike, fg: {name}|{rgb}, bg: ...}. Other escapes are dropped.
 */
export function parseAnsi(text) {
  const source = collapseCarriageReturns(String(text ?? ""));
  const segments = [];
  const style = {};
  let at = 0;
  const push = (chunk) => {
    if (chunk) segments.push({ text: chunk, style: { ...style } });
  };
  for (const match of source.matchAll(ESCAPES)) {
    push(source.slice(at, match.index));
    at = match.index + match[0].length;
    if (match[2] === "m") applySgr(match[1], style);
  }
  push(source.slice(at));
  return segments;
}

/**
 * Group boundaries a line marks: {start: name, id?, at?, collapsed?} | {end: true|name} | null.
 * GitLab's `section_start:<time>:<id>[collapsed=true]` starts a section folded.
 */
export function groupMarker(line) {
  const text = stripAnsi(String(line.message ?? "")).trim();
  let m = /^::group::(.*)$/s.exec(text);
  if (m) return { start: m[1].trim() || "group" };
  if (/^::endgroup::/.test(text)) return { end: true };
  m = /section_start:(\d+):([A-Za-z0-9_.-]+)(\[[^\]]*\])?\r?(.*)$/s.exec(text);
  if (m) {
    const collapsed = /[[,]\s*collapsed\s*=\s*true\s*[\],]/i.test(m[3] || "");
    return { start: stripAnsi(m[4]).trim() || m[2], id: m[2], at: Number(m[1]) * 1000, collapsed };
  }
  m = /section_end:(\d+):([A-Za-z0-9_.-]+)/.exec(text);
  if (m) return { end: m[2], at: Number(m[1]) * 1000 };
  return null;
}

/** `key=value` text of a line's fields, without the ones the page shows elsewhere. */
export function fieldsText(fields) {
  if (!fields || typeof fields !== "object") return "";
  return Object.entries(fields)
    .filter(([key]) => !["progress", "group", "omitted"].includes(key))
    .map(([key, value]) => {
      const text = typeof value === "string" ? value : JSON.stringify(value);
      return `${key}=${text.length > 200 ? `${text.slice(0, 200)}…` : text}`;
    })
    .join(" ");
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** 1234567 -> "1,234,567" without Intl (whose first use loads locale data: ~90 ms on open). */
export function grouped(n) {
  return String(Math.trunc(Number(n) || 0)).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** An ISO time as local "YYYY-MM-DD HH:MM:SS" (no Intl, see grouped). */
export function localDateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso || "");
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${date} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** A timestamp as local time, UTC or relative to `start` (ms since the epoch). */
export function formatTime(iso, mode = "local", start = null) {
  const d = new Date(iso);
  const ms = d.getTime();
  if (Number.isNaN(ms)) return String(iso || "");
  if (mode === "relative" && start !== null && Number.isFinite(start)) {
    return `+${duration(ms - start, true)}`;
  }
  if (mode === "utc") {
    const hms = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
    return `${hms}.${pad(d.getUTCMilliseconds(), 3)}Z`;
  }
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${hms}.${pad(d.getMilliseconds(), 3)}`;
}

/** 83456 ms -> "1:23.456" (with millis) or "1:23"; hours when needed. */
export function duration(ms, millis = false) {
  const sign = ms < 0 ? "-" : "";
  const total = Math.abs(ms);
  const h = Math.floor(total / 3600000);
  const m = Math.floor(total / 60000) % 60;
  const s = Math.floor(total / 1000) % 60;
  const head = h ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
  return sign + (millis ? `${head}.${pad(Math.floor(total % 1000), 3)}` : head);
}
