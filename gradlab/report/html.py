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
body.wide { max-width: 1320px; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ccc; padding-bottom: .2em; overflow-wrap: anywhere; }
h2 { font-size: 1.25em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
p.model { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .95em; margin-top: -.4em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85em; color: #666; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 0 1em; }
table { border-collapse: collapse; font-size: .85em; margin: .8em 0; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: .25em .55em; text-align: right; vertical-align: top;
         overflow-wrap: break-word; }
th { background: #f4f4f4; }
td.text, th.text { text-align: left; }
table.findings { width: 100%; table-layout: fixed; }
table.findings td { overflow-wrap: anywhere; }
table.findings .c-run { width: 14%; } table.findings .c-kind { width: 10%; } table.findings .c-where { width: 9%; }
table.findings .c-what { width: 31%; } table.findings .c-evidence { width: 26%; } table.findings .c-try { width: 24%; }
td.evidence div { margin-bottom: .15em; }
table.compact { font-size: .8em; }
table.summary, table.pivot { width: 100%; }
table.pivot details[open] { padding-bottom: .4em; }
table.compact td, table.compact th { padding: .15em .4em; }
pre { background: #f7f7f7; padding: .7em; font-size: .85em; white-space: pre-wrap; overflow-wrap: anywhere; }
.kind { font-weight: bold; padding: .1em .45em; border-radius: 3px; color: #fff; white-space: nowrap; }
.kind.ok { background: #1e8449; } .kind.bad { background: #c0392b; } .kind.warn { background: #d35400; }
.kind.note { background: #7f8c8d; }
.word { font-weight: bold; white-space: nowrap; }
.word.ok { color: #1e8449; } .word.bad { color: #c0392b; } .word.warn { color: #d35400; } .word.note { color: #7f8c8d; }
.when { color: #555; font-size: .9em; }
.far { background: #fdebd0; font-weight: bold; }
ul.remedies { margin: 0; padding-left: 1.1em; text-align: left; }
ul.lint { padding-left: 1.2em; } ul.lint li { margin: .2em 0; }
code { overflow-wrap: anywhere; }
details { margin: .3em 0; } summary { cursor: pointer; }
.scroll { overflow-x: auto; max-width: 100%; }
"""


@dataclass
class Section:
    """One part of the page, rendered in this order: heading, text, html, images, table, pre.

    heading: the section title (escaped). html: a trusted HTML fragment inserted as is (e.g.
    findings_table's output; it must not refer to anything outside the page). images: image files
    (PNG) to embed; None entries (a plot that did not apply) are skipped; ``grid`` lays them out side
    by side where the page is wide enough. table: a DataFrame shown as an HTML table (escaped). pre:
    preformatted text (escaped, wrapped). text: plain text, a blank line starts a new paragraph (escaped).
    """

    heading: str
    html: str = ""
    images: list[Path | None] = field(default_factory=list)
    table: pd.DataFrame | None = None
    pre: str | None = None
    text: str = ""
    grid: bool = False


def write_html(path: Path, title: str, sections: list[Section], subtitle: str = "", wide: bool = False) -> Path:
    """Write ``sections`` as one self-contained HTML page at ``path``; return the path. ``subtitle`` (the
    model in one line) goes under the title; ``wide`` lets the page use a 1400 px window's width."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(render_section(s) for s in sections)
    sub = f'<p class="model">{html.escape(subtitle)}</p>\n' if subtitle else ""
    css = ' class="wide"' if wide else ""
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body{css}>\n"
            f"<h1>{html.escape(title)}</h1>\n{sub}{body}\n</body>\n</html>\n")
    write_atomic(path, page)
    return path


def render_section(section: Section) -> str:
    """One section as HTML."""
    parts = [f"<section>\n<h2>{html.escape(section.heading)}</h2>"]
    parts += [f"<p>{html.escape(p.strip())}</p>" for p in section.text.split("\n\n") if p.strip()]
    if section.html:
        parts.append(section.html)
    figures = [image_tag(Path(p)) for p in section.images if p is not None]
    if section.grid and len(figures) > 1:
        figures = ['<div class="figures">', *figures, "</div>"]
    parts += figures
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


def table_html(frame: pd.DataFrame, digits: int = 3, css: str = "") -> str:
    """A DataFrame as an escaped HTML table; floats with ``digits`` significant digits."""
    show_index = not isinstance(frame.index, pd.RangeIndex)
    table = frame.to_html(escape=True, index=show_index, border=0, na_rep="", classes=css or None,
                          float_format=lambda v: f"{v:.{digits}g}")
    return f'<div class="scroll">{table}</div>'


def cells_table(header: list[str], rows: list[list[tuple[str, str]]], css: str = "") -> str:
    """A table of trusted cells: ``header`` texts (escaped, may wrap after an underscore) and rows of (HTML,
    td class) pairs."""
    head = "".join(f'<th class="text">{html.escape(h).replace("_", "_<wbr>")}</th>' for h in header)
    body = "\n".join("<tr>" + "".join(f'<td class="{c}">{h}</td>' if c else f"<td>{h}</td>" for h, c in row)
                     + "</tr>" for row in rows)
    return f'<table class="{css}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>'


def kind_css(finding: dict) -> str:
    """The colour class of a finding: a note (grey) when it is not a failure at the end of the run."""
    ev = finding.get("evidence") or {}
    note = ev.get("at_end") is False or bool(ev.get("learned_regardless"))
    return "note" if note else KIND_CLASS.get(str(finding.get("kind", "")), "warn")


def findings_table(findings: list[dict], layers: tuple[int, int] | None = None) -> str:
    """Diagnosis findings as an HTML table: kind (coloured), where, message, evidence, remedies.

    ``layers``: the run's first and last hidden layer, which the evidence's labels name. A "run" column
    comes first when findings carry a ``run`` key (a sweep's findings, by run). A finding that is not a
    failure (a spike the run recovered from, a problem training cured: evidence ``at_end`` false, or
    ``learned_regardless``) is shown as a grey note, with when it held under its kind.
    """
    if not findings:
        return "<p>No findings.</p>"
    by_run = any("run" in f for f in findings)
    rows = "\n".join(_finding_row(f, by_run, layers) for f in findings)
    titles = ("run",) * by_run + ("kind", "where", "what", "evidence", "what to try")
    cols = "".join(f'<col class="c-{t.split()[-1]}">' for t in titles)
    head = "".join(f'<th class="text">{h}</th>' for h in titles)
    return (f'<table class="findings">\n<colgroup>{cols}</colgroup>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            f'{rows}\n</tbody>\n</table>')


def _finding_row(finding: dict, by_run: bool = False, layers: tuple[int, int] | None = None) -> str:
    """One finding as a table row (with its run first when ``by_run``)."""
    kind = str(finding.get("kind", ""))
    ev = finding.get("evidence") or {}
    evidence = "".join(f"<div>{html.escape(k)} = {html.escape(v)}</div>"
                       for k, v in evidence_items(ev, layers))
    remedies = "".join(f"<li>{html.escape(str(r))}</li>" for r in finding.get("remedies") or [])
    when = f'<br><span class="when">{html.escape(str(ev["when"]))}</span>' if ev.get("when") else ""
    cells = [f'<span class="kind {kind_css(finding)}">{html.escape(kind)}</span>{when}',
             html.escape(where(finding)), html.escape(str(finding.get("message", ""))), evidence,
             f'<ul class="remedies">{remedies}</ul>' if remedies else ""]
    if by_run:
        cells.insert(0, html.escape(str(finding.get("run", ""))))
    css = ["text"] * len(cells)
    css[-2] = "text evidence"
    return "<tr>" + "".join(f'<td class="{k}">{c}</td>' for k, c in zip(css, cells)) + "</tr>"


def where(finding: dict) -> str:
    """What a finding's layer means: where the problem starts, counted as the user reads the net."""
    layer, ev, kind = finding.get("layer"), finding.get("evidence") or {}, finding.get("kind")
    if layer is None:
        return "whole net"
    # a conv net's layers by name too: 'from layer 7 (conv7) down'
    shown = f"{layer} ({ev['layer_name']})" if ev.get("layer_name") else layer
    if "T" in ev and kind in ("vanishing", "exploding"):
        return f"recurrent layer {layer}, through time"
    if kind in ("dead_units", "saturation"):
        over = ev.get("frac_dead" if kind == "dead_units" else "frac_saturated")
        return f"{layer_ranges(over)} (over 50%)" if isinstance(over, dict) and over else f"from layer {shown}"
    if kind in ("vanishing", "exploding") and "delta_ratio_first_last_hidden" in ev:
        return f"from layer {shown} down"
    if kind == "exploding" and ev.get("diverged_layer") == layer:
        return f"layer {shown}, first NaN/Inf"
    return f"layer {shown}"


# ------------------------------------------------------------------------------------------- evidence

# evidence key -> label; {first} and {last} are the run's first and last hidden layer
LABELS = {
    "delta_ratio_first_last_hidden": "gradient reaching layer {first} / layer {last}",
    "first_hidden_delta_norm": "gradient reaching layer {first} (delta_norm)",
    "last_hidden_delta_norm": "gradient reaching layer {last} (delta_norm)",
    "fitted_gain_per_layer": "average gain per layer, going down",
    "depth": "hidden layers",
    "T": "sequence length T",
    "time_ratio_first_last": "gradient reaching time step 1 / step T",
    "fitted_gain_per_step": "average gain per time step, going back",
    "full_time_ratio_first_last": "full-sequence gradient at step 1 / step T",
    "full_ratio_before_last_chunk": "full-sequence gradient before the last chunk / step T",
    "steps_the_truncated_gradient_reaches": "time steps the truncated gradient reaches",
    "truncate": "truncated BPTT chunk k",
    "step": "at step", "since": "since step", "gone_by": "gone by step",
    "at_end": "still there at the end", "learned": "learned", "learned_regardless": "learned regardless",
    "loss_first": "loss at the first logged step", "loss_end": "loss at the end",
    "chance_loss": "loss of chance", "accuracy": "accuracy", "chance_accuracy": "accuracy of chance",
    "sigmoid_derivative_max": "sigmoid's largest derivative",
    "sigmoid_bound_over_net": "at most this much of the gradient passes the sigmoids",
    "init_std": "init std of W", "prescribed_std": "std the activation wants",
    "loss_max": "highest loss", "spike_factor": "times the losses before it",
    "loss": "loss at the spike", "factor": "times the losses before it",
    "diverged_at": "NaN/Inf at step", "diverged_layer": "first in layer", "diverged_where": "first in the pass",
    "global_norms": "global gradient norm over the run", "global_norm_growth": "global norm, last fifth / first fifth",
    "loss_swings": "steps where the loss swings 2x", "suggested_clip": "suggested clip threshold",
    "frac_dead": "dead units", "frac_saturated": "saturated units",
    "layers_over_half": "layers over 50%", "hidden_layers": "hidden layers",
    "clip_threshold": "clip threshold", "clipped_steps": "clipped steps", "logged_steps": "logged steps",
    "update_ratio": "update / weights per step (about 1e-3 is usual)",
    "learned_well": "learned well", "cured": "cured by training",
    "first_update_norm": "first update (lr x step)", "first_weight_norm": "weights' norm at the first step",
    "first_update_ratio": "first update / weights (about 1e-3 is usual)",
    "weight_growth": "weights' norm, last / first logged step", "loss_end_over_chance": "loss at the end / chance",
    "loss_end_from": "loss at the end, from", "eval_loss_end": "eval-mode loss at the end (does not compare)",
    "running_stats_steps": "steps of batch norm's running statistics",
    "running_stats_warmup": "steps they need (1 / momentum)",
}
AT_STEP = {"delta_ratio": "gradient reaching layer {first} / layer {last}, step {step}",
           "time_ratio": "gradient reaching time step 1 / step T, step {step}"}
PERCENT = ("loss_swings",)
HIDDEN = ("when", "layer_name")  # shown under the finding's kind; in the where column


def evidence_items(ev: dict, layers: tuple[int, int] | None = None) -> list[tuple[str, str]]:
    """(label, value) of each piece of evidence, readable: numbers with 3 significant digits, layers named."""
    first, last = layers if layers else ("1", "L")
    out = []
    for key, value in ev.items():
        if key in HIDDEN:
            continue
        out.append((_label(str(key), first, last), _evidence_value(value, key)))
    return out


def _label(key: str, first, last) -> str:
    name, sep, step = key.partition("_at_step_")
    if sep and name in AT_STEP:
        return AT_STEP[name].format(first=first, last=last, step=step)
    return LABELS.get(key, key).format(first=first, last=last)


def _evidence_value(value, key: str = "") -> str:
    """An evidence value: numbers with 3 significant digits, lists element by element, fractions by layer
    as ranges of layers, a spread of norms as min, median and max; yes/no for true/false."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "not finite"
    if key in PERCENT and isinstance(value, numbers.Real):
        return f"{float(value):.0%}"
    if isinstance(value, dict):
        if key in ("frac_dead", "frac_saturated"):
            return fractions_by_layer(value)
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items() if k in ("min", "median", "max")) or \
            ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(fmt(v) for v in value) + "]"
    return fmt(value)


def _runs_of(layers: list[int]) -> list[tuple[int, int]]:
    """Consecutive layer numbers as (first, last) pairs."""
    out: list[tuple[int, int]] = []
    for l in sorted(layers):
        if out and l == out[-1][1] + 1:
            out[-1] = (out[-1][0], l)
        else:
            out.append((l, l))
    return out


def layer_ranges(by_layer: dict) -> str:
    """``layers 2-19, 21`` for the keys of ``{layer: ...}`` (ints, or digits as JSON gives them back)."""
    spans = _runs_of([int(l) for l in by_layer])
    text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in spans)
    return ("layers " if len(by_layer) > 1 else "layer ") + text


def fractions_by_layer(by_layer: dict) -> str:
    """``layers 2-19: 62-100%`` for ``{layer: fraction}``, one part per run of consecutive layers."""
    values = {int(l): float(v) for l, v in by_layer.items()}
    parts = []
    for a, b in _runs_of(list(values)):
        vs = [values[l] for l in range(a, b + 1)]
        lo, hi = f"{min(vs):.0%}", f"{max(vs):.0%}"
        span = f"layers {a}-{b}" if a != b else f"layer {a}"
        parts.append(f"{span}: {lo if lo == hi else lo[:-1] + '-' + hi}")
    return ", ".join(parts)


# ------------------------------------------------------------------------------------------- run page parts

def theory_table(groups: list[dict]) -> str:
    """theory.collapse's rows: one per run of layers with the same prediction; a measured gain's cell shows
    the geometric mean over those layers (and their range), highlighted when far from the prediction."""
    if not groups:
        return ""
    columns = [k for k in groups[0] if k not in ("layers", "far")]
    rows = []
    for g in groups:
        cells = [(html.escape(g["layers"]), "")]
        for c in columns:
            if not isinstance(g[c], tuple):
                cells.append((html.escape(fmt(g[c])), "text" if isinstance(g[c], str) else ""))
                continue
            if len(g[c]) == 2:  # a value that drifts over the layers: first to last
                a, b = map(fmt, g[c])
                cells.append((html.escape(a if a == b else f"{a} to {b}"), ""))
                continue
            mean, lo, hi = g[c]
            spread = f" ({fmt(lo)} to {fmt(hi)})" if fmt(lo) != fmt(hi) else ""
            cells.append((html.escape(fmt(mean) + spread), "far" if c in g["far"] else ""))
        rows.append(cells)
    return cells_table(["layers", *columns], rows, "compact theory")


def lint_list(lints: list[str]) -> str:
    """The config lint as a list, each mismatch's key path first; 'no known mismatch' when empty."""
    if not lints:
        return "<p>No known mismatch.</p>"
    items = []
    for text in lints:
        key, sep, message = text.partition(": ")
        items.append(f"<li><code>{html.escape(key)}</code>: {html.escape(message)}</li>" if sep
                     else f"<li>{html.escape(text)}</li>")
    return '<ul class="lint">' + "".join(items) + "</ul>"
