/**
 * The element's own styles (in its shadow root). Colours come from custom properties a host
 * page may set (`--jt-log-bg`, `--jt-accent`…); the defaults pass WCAG AA on the dark log.
 */

export const css = `
:host { display: flex; flex-direction: column; min-height: 0; position: relative;
  --bg: var(--jt-log-bg, #0f1419); --fg: var(--jt-log-text, #d6dde6);
  --muted: var(--jt-log-muted, #9aa5b4); --accent: var(--jt-accent, #2f6fed);
  --panel: var(--jt-panel, Canvas); --panel-fg: var(--jt-panel-text, CanvasText);
  --border: var(--jt-border, #c9ced6); --debug: #9aa5b4; --info: #79c0ff; --warning: #f2b84b;
  --error: #ff8080; --critical: #ff6b8b; --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  font: 14px/1.45 system-ui, sans-serif; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; padding: 8px 12px;
  border-bottom: 1px solid var(--border); color: var(--panel-fg); }
.toolbar .spacer { flex: 1; }
select, input[type=search], button, a.button { font: inherit; font-size: 13px; color: var(--panel-fg);
  background: var(--panel); border: 1px solid var(--border); border-radius: 6px; padding: 3px 8px;
  min-height: 30px; }
button, a.button { cursor: pointer; text-decoration: none; display: inline-flex; align-items: center; }
button:disabled { opacity: .6; cursor: not-allowed; }
:focus-visible { outline: 2px solid var(--accent); outline-offset: 1px; }
.search { display: inline-flex; align-items: center; gap: 4px; }
.search input[type=search] { width: 200px; }
.search label.opt { display: inline-flex; align-items: center; gap: 2px; font-size: 12px; font-family: var(--mono); }
#search-count, #count { font-variant-numeric: tabular-nums; font-size: 13px; }
.logwrap { position: relative; flex: 1; min-height: 0; display: flex; }
#lines { flex: 1; overflow-y: auto; overflow-x: hidden; background: var(--bg); color: var(--fg);
  font: 12.5px/20px var(--mono); min-height: 0; position: relative; overflow-anchor: none; }
#lines:focus-visible { outline-offset: -2px; }
.sizer { position: relative; min-height: 100%; }
.rows { position: absolute; left: 0; right: 0; top: 0; will-change: transform; }
.empty { padding: 18px; color: var(--muted); font-family: system-ui, sans-serif; }
.line { display: grid; grid-template-columns: 4.8em 7.8em 5.6em minmax(0, 1fr); gap: 0 10px;
  padding: 0 12px; border-left: 3px solid transparent; height: 20px; overflow: hidden; }
.line.expanded { height: auto; }
.line:hover { background: rgba(255, 255, 255, .05); }
.line .seq { color: var(--muted); text-align: right; text-decoration: none; user-select: none; }
.line .seq:hover { text-decoration: underline; }
.line .ts { color: var(--muted); white-space: nowrap; overflow: hidden; }
.line .lvl { font-weight: 700; }
.line .body { white-space: pre; overflow: hidden; text-overflow: ellipsis; min-width: 0; }
.line.expanded .body { white-space: pre-wrap; overflow-wrap: anywhere; }
.line .fields { color: var(--muted); }
.line.pending .body { color: var(--muted); }
.line.omitted { background: rgba(242, 184, 75, .12); }
.omitted-note { color: var(--warning); font-weight: 700; margin-right: 8px; }
.line .more, .line .group { min-height: 0; padding: 0 6px; margin-right: 6px; font: inherit; font-size: 11px;
  line-height: 16px; color: var(--fg); background: transparent; border: 1px solid #4a5566; border-radius: 4px; }
.line .group { font-size: 12.5px; font-weight: 700; border-color: transparent; padding-left: 0; }
.line .group .duration { color: var(--muted); font-weight: 400; }
.line[data-level=DEBUG] .lvl, .line[data-level=DEBUG] .msg { color: var(--debug); }
.line[data-level=INFO] .lvl { color: var(--info); }
.line[data-level=WARNING] { border-left-color: var(--warning); }
.line[data-level=WARNING] .lvl, .line[data-level=WARNING] .msg { color: var(--warning); }
.line[data-level=ERROR] { border-left-color: var(--error); background: rgba(255, 107, 107, .08); }
.line[data-level=ERROR] .lvl, .line[data-level=ERROR] .msg { color: var(--error); }
.line[data-level=CRITICAL] { border-left-color: var(--critical); background: rgba(255, 77, 109, .14); }
.line[data-level=CRITICAL] .lvl, .line[data-level=CRITICAL] .msg { color: var(--critical); font-weight: 700; }
.line.match { background: rgba(255, 214, 0, .10); }
.line.current { box-shadow: inset 0 0 0 1px #ffd400; }
.line.selected { background: rgba(47, 111, 237, .30); border-left-color: #8fb3ff; }
mark { background: #ffd400; color: #111; border-radius: 2px; }
.bidi { outline: 1px dashed currentColor; border-radius: 2px; padding: 0 1px; margin: 0 1px; }
.a-bold { font-weight: 700; } .a-dim { opacity: .75; } .a-italic { font-style: italic; }
.a-underline { text-decoration: underline; } .a-strike { text-decoration: line-through; }
.a-inverse { filter: invert(1); }
.a-fg-black { color: #6e7681; } .a-fg-red { color: #ff7b72; } .a-fg-green { color: #3fb950; }
.a-fg-yellow { color: #d29922; } .a-fg-blue { color: #58a6ff; } .a-fg-magenta { color: #d2a8ff; }
.a-fg-cyan { color: #39c5cf; } .a-fg-white { color: #d6dde6; }
.a-fg-bright-black { color: #8b949e; } .a-fg-bright-red { color: #ffa198; } .a-fg-bright-green { color: #56d364; }
.a-fg-bright-yellow { color: #e3b341; } .a-fg-bright-blue { color: #79c0ff; } .a-fg-bright-magenta { color: #e2c5ff; }
.a-fg-bright-cyan { color: #56d4dd; } .a-fg-bright-white { color: #ffffff; }
.a-bg-black { background: #161b22; } .a-bg-red { background: #5d1a1a; } .a-bg-green { background: #12361d; }
.a-bg-yellow { background: #4b3a07; } .a-bg-blue { background: #0c2d6b; } .a-bg-magenta { background: #3c1e5a; }
.a-bg-cyan { background: #0b3b3f; } .a-bg-white { background: #6e7681; }
.a-bg-bright-black { background: #30363d; } .a-bg-bright-red { background: #8e1519; } .a-bg-bright-green { background: #1a7f37; }
.a-bg-bright-yellow { background: #7d4e00; } .a-bg-bright-blue { background: #1158c7; } .a-bg-bright-magenta { background: #6e40c9; }
.a-bg-bright-cyan { background: #1b7c83; } .a-bg-bright-white { background: #8b949e; }
#jump { position: absolute; right: 22px; bottom: 14px; background: var(--accent); color: #fff;
  border-color: var(--accent); box-shadow: 0 4px 14px rgba(0, 0, 0, .35); font-weight: 600; }
@media (max-width: 720px) {
  .line { grid-template-columns: 3.6em minmax(0, 1fr); }
  .line .ts, .line .lvl { display: none; }
  .search input[type=search] { width: 130px; }
  .toolbar { padding: 6px 8px; }
}
`;
