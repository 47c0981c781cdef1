/**
 * One log line as DOM: `<div.line><a.seq><span.ts><span.lvl><span.body><span.msg>…`.
 * Text is only ever set with textContent; styles from ANSI become classes or style properties.
 */

import { BIDI, bidiEscape, fieldsText, formatTime, groupMarker, grouped, levelOf, parseAnsi, stripAnsi } from "./lines.js";

const STYLE_CLASSES = ["bold", "dim", "italic", "underline", "inverse", "strike"];

function span(className, text) {
  const el = document.createElement("span");
  el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** Spans for the ANSI segments of text; `marks` is a RegExp (global) to highlight, or null. */
export function renderText(target, text, marks = null) {
  for (const segment of parseAnsi(text)) {
    const { style } = segment;
    const classes = STYLE_CLASSES.filter((name) => style[name]);
    if (style.fg && style.fg.name) classes.push(`fg-${style.fg.name}`);
    if (style.bg && style.bg.name) classes.push(`bg-${style.bg.name}`);
    const plain = !classes.length && !(style.fg && style.fg.rgb) && !(style.bg && style.bg.rgb);
    const holder = plain ? target : span(classes.map((c) => `a-${c}`).join(" "));
    if (!plain) {
      if (style.fg && style.fg.rgb) holder.style.color = style.fg.rgb;
      if (style.bg && style.bg.rgb) holder.style.backgroundColor = style.bg.rgb;
      target.append(holder);
    }
    appendMarked(holder, segment.text, marks);
  }
}

/** Text with each bidi control character shown as a visible escape (span.bidi). */
function appendVisible(holder, text) {
  if (text.search(BIDI) < 0) {
    holder.append(text);
    return;
  }
  let at = 0;
  for (const match of text.matchAll(BIDI)) {
    holder.append(text.slice(at, match.index));
    const escape = span("bidi", bidiEscape(match[0]));
    escape.title = "bidirectional control character, shown instead of applied";
    holder.append(escape);
    at = match.index + 1;
  }
  holder.append(text.slice(at));
}

function appendMarked(holder, text, marks) {
  if (!marks) {
    appendVisible(holder, text);
    return;
  }
  let at = 0;
  marks.lastIndex = 0;
  for (const match of text.matchAll(marks)) {
    if (!match[0]) continue;
    appendVisible(holder, text.slice(at, match.index));
    const mark = document.createElement("mark");
    appendVisible(mark, match[0]);
    holder.append(mark);
    at = match.index + match[0].length;
  }
  appendVisible(holder, text.slice(at));
}

/**
 * @param {object} line a log line ({seq, timestamp, log_level, message, fields}) or a
 *   placeholder ({seq, missing}) or undefined while loading
 * @param {object} options seq, timeMode, start, marks, expanded, group ({name, collapsed,
 *   duration}), selected, current, permalinks
 */
export function renderRow(line, options) {
  const row = document.createElement("div");
  const seq = options.seq;
  row.className = "line";
  row.dataset.seq = String(seq);
  const number = document.createElement("a");
  number.className = "seq";
  number.textContent = String(seq);
  number.href = `#L${seq}`;
  number.setAttribute("aria-label", `line ${seq}`);
  if (!line) {
    row.classList.add("pending");
    row.append(number, span("ts"), span("lvl"), span("body", "…"));
    return row;
  }
  if (line.missing) {
    row.classList.add("omitted");
    row.append(number, span("ts"), span("lvl"), span("body", "(line not stored)"));
    return row;
  }
  const level = levelOf(line.log_level);
  row.dataset.level = level;
  const ts = span("ts", formatTime(line.timestamp, options.timeMode, options.start));
  ts.title = String(line.timestamp || "");
  const body = span("body");
  const message = String(line.message ?? "");
  const omitted = line.fields && Number(line.fields.omitted);
  if (omitted) {
    row.classList.add("omitted"); // the logger's marker where its line cap dropped lines
    if (!/omitted/.test(message)) body.append(span("omitted-note", `${grouped(omitted)} lines omitted`));
  }
  if (options.group) body.append(groupToggle(options.group, seq));
  const msg = span("msg");
  renderText(msg, message, options.marks);
  const plain = stripAnsi(message);
  const extraRows = plain.split("\n").length - 1;
  if (extraRows > 0 || plain.length > 160) {
    const more = document.createElement("button");
    more.type = "button";
    more.className = "more";
    more.dataset.action = "expand";
    more.setAttribute("aria-expanded", String(Boolean(options.expanded)));
    more.textContent = extraRows > 0 ? `+${extraRows} lines` : "wrap";
    more.setAttribute("aria-label", options.expanded ? `fold line ${seq}` : `unfold line ${seq}`);
    body.append(more);
  }
  body.append(msg);
  const extra = fieldsText(line.fields);
  if (extra) body.append(span("fields", `  ${extra.replace(BIDI, bidiEscape)}`));
  if (options.expanded) row.classList.add("expanded");
  if (options.selected) row.classList.add("selected");
  if (options.match) row.classList.add("match");
  if (options.current) row.classList.add("current");
  row.append(number, ts, span("lvl", level), body);
  return row;
}

function groupToggle(group, seq) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "group";
  button.dataset.action = "group";
  button.setAttribute("aria-expanded", String(!group.collapsed));
  const name = group.name.replace(BIDI, bidiEscape);
  button.setAttribute("aria-label", `${group.collapsed ? "unfold" : "fold"} group ${name} at line ${seq}`);
  button.textContent = `${group.collapsed ? "▸" : "▾"} ${name}`;
  if (group.duration) button.append(span("duration", ` ${group.duration}`));
  return button;
}

/** A line as the text export writes it (for copy). */
export function lineText(line) {
  if (!line || line.missing) return "";
  const stamp = String(line.timestamp || "");
  return `${stamp} ${levelOf(line.log_level).padEnd(8)} ${stripAnsi(String(line.message ?? ""))}`;
}

export { groupMarker };
