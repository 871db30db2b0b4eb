"""One self-contained ``report.html``: inline CSS, images embedded as base64 data URIs, no external references.

The page opens from disk in any browser, without a server or network. Text given as ``text``,
``pre``, headings, captions and table cells is HTML-escaped; only ``Section.html`` is inserted as is
(use it for fragments built here, such as :func:`findings_table`).
"""
from __future__ import annotations

import base64
import html
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..files import write_atomic

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".svg": "image/svg+xml"}
KIND_CLASS = {"healthy": "ok", "vanishing": "bad", "exploding": "bad", "dead_units": "warn", "saturation": "warn",
              "not_learning": "bad", "spike": "note"}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px;
       margin: 1.5em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #666; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: right; vertical-align: top; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; }
pre { background: #f7f7f7; padding: .7em; overflow-x: auto; font-size: .85em; }
.kind { font-weight: bold; padding: .1em .45em; border-radius: 3px; color: #fff; white-space: nowrap; }
.kind.ok { background: #1e8449; } .kind.bad { background: #c0392b; } .kind.warn { background: #d35400; }
.kind.note { background: #7f8c8d; }
.when { color: #555; font-size: .9em; }
ul.remedies { margin: 0; padding-left: 1.1em; text-align: left; }
.scroll { overflow-x: auto; }
"""


@dataclass
class Section:
    """One part of the page, rendered in this order: heading, text, html, images, table, pre.

    heading: the section title (escaped). html: a trusted HTML fragment inserted as is (e.g.
    findings_table's output; it must not refer to anything outside the page). images: image files
    (PNG) to embed; None entries (a plot that did not apply) are skipped. table: a DataFrame shown
    as an HTML table (escaped). pre: preformatted text (escaped). text: plain text, a blank line
    starts a new paragraph (escaped).
    """

    heading: str
    html: str = ""
    images: list[Path | None] = field(default_factory=list)
    table: pd.DataFrame | None = None
    pre: str | None = None
    text: str = ""


def write_html(path: Path, title: str, sections: list[Section]) -> Path:
    """Write ``sections`` as one self-contained HTML page at ``path``; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(render_section(s) for s in sections)
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")
    write_atomic(path, page)
    return path


def render_section(section: Section) -> str:
    """One section as HTML."""
    parts = [f"<section>\n<h2>{html.escape(section.heading)}</h2>"]
    parts += [f"<p>{html.escape(p.strip())}</p>" for p in section.text.split("\n\n") if p.strip()]
    if section.html:
        parts.append(section.html)
    parts += [image_tag(Path(p)) for p in section.images if p is not None]
    if section.table is not None:
        parts.append(table_html(section.table))
    if section.pre is not None:
        parts.append(f"<pre>{html.escape(section.pre)}</pre>")
    return "\n".join(parts) + "\n</section>"


def data_uri(path: Path) -> str:
    """The file's bytes as a ``data:`` URI (base64)."""
    mime = MIME.get(Path(path).suffix.lower(), "image/png")
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def image_tag(path: Path) -> str:
    """An embedded image with its file name as alt text and caption."""
    name = html.escape(Path(path).name)
    return f'<figure><img src="{data_uri(path)}" alt="{name}"><figcaption>{name}</figcaption></figure>'


def fmt(value) -> str:
    """A number with 3 significant digits (ints and text as they are)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    value = float(value)
    return f"{value:.3g}" if math.isfinite(value) else str(value)


def table_html(frame: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as an escaped HTML table; floats with ``digits`` significant digits."""
    show_index = not isinstance(frame.index, pd.RangeIndex)
    table = frame.to_html(escape=True, index=show_index, border=0, na_rep="",
                          float_format=lambda v: f"{v:.{digits}g}")
    return f'<div class="scroll">{table}</div>'


def findings_table(findings: list[dict]) -> str:
    """Diagnosis findings as an HTML table: kind (coloured), layer, message, evidence, remedies.

    A "run" column comes first when findings carry a ``run`` key (a sweep's findings, by run). A finding
    that is not a failure (a spike the run recovered from, a problem training cured: evidence
    ``at_end`` false, or ``learned_regardless``) is shown as a grey note, with when it held under its kind.
    """
    if not findings:
        return "<p>No findings.</p>"
    by_run = any("run" in f for f in findings)
    rows = "\n".join(_finding_row(f, by_run) for f in findings)
    titles = ("run",) * by_run + ("kind", "layer", "what", "evidence", "what to try")
    head = "".join(f'<th class="text">{h}</th>' for h in titles)
    return f'<table class="findings">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>'


def _finding_row(finding: dict, by_run: bool = False) -> str:
    """One finding as a table row (with its run first when ``by_run``)."""
    kind = str(finding.get("kind", ""))
    layer = finding.get("layer")
    ev = finding.get("evidence") or {}
    evidence = "<br>".join(f"{html.escape(str(k))} = {html.escape(_evidence_value(v))}" for k, v in ev.items())
    remedies = "".join(f"<li>{html.escape(str(r))}</li>" for r in finding.get("remedies") or [])
    note = ev.get("at_end") is False or bool(ev.get("learned_regardless"))
    css = "note" if note else KIND_CLASS.get(kind, "warn")
    when = f'<br><span class="when">{html.escape(str(ev["when"]))}</span>' if ev.get("when") else ""
    cells = [f'<span class="kind {css}">{html.escape(kind)}</span>{when}',
             "all" if layer is None else html.escape(str(layer)),
             html.escape(str(finding.get("message", ""))), evidence,
             f'<ul class="remedies">{remedies}</ul>' if remedies else ""]
    if by_run:
        cells.insert(0, html.escape(str(finding.get("run", ""))))
    return "<tr>" + "".join(f'<td class="text">{c}</td>' for c in cells) + "</tr>"


def _evidence_value(value) -> str:
    """An evidence value: numbers with 3 significant digits, lists element by element."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return fmt(value)
