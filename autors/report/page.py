"""The page itself: one HTML file with its CSS and script inline (no CDN, no web font, no
file beside it), and the helpers every section uses to write escaped HTML.

Every text that comes from a run (names, paths, errors, architecture summaries) goes through
`esc`; the script only sets `textContent` and attributes, never `innerHTML`, so a class or
sensor name cannot inject markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

READY = "autors-report: ready"  # the script logs this once it has run (tests wait for it)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
 margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:20px} header p{margin:4px 0 0;color:#cfd8dc}
nav{padding:6px 24px;background:#eceff1;position:sticky;top:0;z-index:2}
nav a{margin-right:14px;color:#37474f;text-decoration:none} nav a:hover{text-decoration:underline}
main{padding:8px 24px 40px;max-width:1280px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;padding:10px 18px 16px;
 margin:14px 0}
h2{font-size:17px;margin:6px 0 10px} h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #e0e0e0;padding:3px 7px;text-align:right;vertical-align:top}
th{background:#f5f5f5} td.l,th.l{text-align:left} td.l{max-width:440px;overflow-wrap:anywhere}
.scroll{overflow-x:auto;max-width:100%}
table.sortable th{cursor:pointer;user-select:none} table.sortable th:hover{background:#e3f2fd}
th[aria-sort=ascending]::after{content:" \\25B2"} th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{color:#b71c1c} tr.muted td{color:#777}
.note{color:#555;font-style:italic} .warn{color:#b71c1c}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0} figcaption{font-size:12px;color:#555;max-width:320px}
img.thumb{image-rendering:pixelated;border:1px solid #ccc;max-width:280px}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #999;margin-right:4px;
 vertical-align:-2px}
svg text{font-family:system-ui,sans-serif}
code{font-size:12px;background:#f3f3f3;padding:0 3px}
#tip{position:fixed;display:none;pointer-events:none;background:#263238;color:#fff;
 padding:6px 8px;border-radius:4px;font-size:12px;white-space:pre-line;max-width:520px;z-index:9}
"""

# Hover details (any element with data-tip), sortable tables (click a header; the page
# address may name a sort: #sort=<table id>:<column>[:desc]).
JS = """
(function(){
 var tip=document.getElementById('tip');
 document.addEventListener('mouseover',function(e){
  var t=e.target.closest?e.target.closest('[data-tip]'):null;
  if(!t){tip.style.display='none';return;}
  tip.textContent=t.getAttribute('data-tip');tip.style.display='block';});
 document.addEventListener('mousemove',function(e){
  if(tip.style.display!=='block')return;
  var x=e.clientX+14,y=e.clientY+14;
  if(x+tip.offsetWidth>window.innerWidth)x=e.clientX-tip.offsetWidth-14;
  if(y+tip.offsetHeight>window.innerHeight)y=e.clientY-tip.offsetHeight-14;
  tip.style.left=x+'px';tip.style.top=y+'px';});
 function key(cell){
  var v=cell.hasAttribute('data-v')?cell.getAttribute('data-v'):cell.textContent.trim();
  var n=parseFloat(v);return (v!==''&&isFinite(n)&&String(n)!=='NaN'&&/^[-+0-9.eE]+$/.test(v))?n:v;}
 function sortTable(table,col,desc){
  var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
  rows.sort(function(a,b){
   var x=key(a.cells[col]),y=key(b.cells[col]);
   var bothNum=typeof x==='number'&&typeof y==='number';
   var c;
   if(x===''&&y!=='')return 1; if(y===''&&x!=='')return -1;
   if(bothNum)c=x-y;else c=String(x).localeCompare(String(y),undefined,{numeric:true});
   return desc?-c:c;});
  rows.forEach(function(r){body.appendChild(r);});
  var ths=table.tHead.rows[0].cells;
  for(var i=0;i<ths.length;i++)ths[i].removeAttribute('aria-sort');
  ths[col].setAttribute('aria-sort',desc?'descending':'ascending');}
 Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(table){
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){
   th.title='click to sort';
   th.addEventListener('click',function(){
    sortTable(table,i,th.getAttribute('aria-sort')==='ascending');});});});
 var m=/^#sort=([\\w-]+):([\\w%.-]+)(:desc)?$/.exec(location.hash);
 if(m){var table=document.getElementById(m[1]);
  if(table&&table.tHead){var ths=table.tHead.rows[0].cells;
   for(var i=0;i<ths.length;i++){
    if(ths[i].getAttribute('data-key')===decodeURIComponent(m[2])){sortTable(table,i,!!m[3]);}}}}
 console.log('""" + READY + """');
})();
"""


def esc(value: object) -> str:
    """HTML-escaped text of any value (quotes too: safe inside attributes)."""
    return html.escape(str(value), quote=True)


def fmt(value: object, digits: int = 4) -> str:
    """A number for a table: integers with thousands separators, floats rounded, '' for none."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}" if abs(value) >= 10 ** digits else f"{value:.{digits}f}"
    return str(value)


@dataclass(frozen=True)
class Cell:
    """A table cell: shown text, the value it sorts by, left-aligned or not. `markup`: the
    text is HTML this package built (its data parts escaped), not text to escape."""

    text: str
    sort: object = None
    left: bool = False
    markup: bool = False


def cell(value: object, digits: int = 4) -> Cell:
    """A cell of a plain value: numbers sort as numbers and align right."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Cell(fmt(value, digits), value)
    return Cell(fmt(value, digits), left=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | object]], *,
          table_id: str | None = None, sortable: bool = False,
          row_classes: Sequence[str] | None = None, keys: Sequence[str] | None = None) -> str:
    """An HTML table; cells are `Cell`s or plain values (`cell`); `keys` name the columns
    for `#sort=` addresses."""
    attrs = (f' id="{esc(table_id)}"' if table_id else "") + (' class="sortable"'
                                                              if sortable else "")
    head = "".join(
        f'<th class="l"{_key(keys, i)}>{esc(h)}</th>' if i == 0 else
        f"<th{_key(keys, i)}>{esc(h)}</th>" for i, h in enumerate(headers))
    body = []
    for i, row in enumerate(rows):
        cls = row_classes[i] if row_classes and row_classes[i] else ""
        tds = []
        for value in row:
            c = value if isinstance(value, Cell) else cell(value)
            td = (' class="l"' if c.left else "") + (
                "" if c.sort is None else f' data-v="{esc(c.sort)}"')
            tds.append(f"<td{td}>{c.text if c.markup else esc(c.text)}</td>")
        tr = f'<tr class="{esc(cls)}">' if cls else "<tr>"
        body.append(tr + "".join(tds) + "</tr>")
    return (f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table></div>")


def _key(keys: Sequence[str] | None, i: int) -> str:
    return f' data-key="{esc(keys[i])}"' if keys else ""


def note(text: str, warn: bool = False) -> str:
    return f'<p class="{"warn" if warn else "note"}">{esc(text)}</p>'


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{body}</section>'


def document(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole page: header, a menu of the sections, the sections, the script."""
    menu = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(section(sid, name, content) for sid, name, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>"
        f"<nav>{menu}</nav><main>{body}</main><div id=\"tip\"></div>"
        f"<script>{JS}</script></body></html>\n"
    )
