"""The report of a sweep folder: its summary table, figures and a diagnosis that compares the runs.

The page reads at 1400 px without a sideways scroll: the summary table shows the run, the swept keys and
the main figures (every column of summary.csv is one click away, folded); the diagnosis is a pivot, one
row per combination of the swept keys with the kind of each finding as a coloured word (repeated seeds
as counts), each run's findings folded under it.
"""
from __future__ import annotations

import html as escaping
import math
import numbers
from collections import Counter
from pathlib import Path

import yaml

from ..config import ConfigError
from ..files import refuse_symlinks
from . import Report
from .diagnose import diagnose
from .load import SweepData, load_run

MAIN = ("status", "final_train_loss", "final_val_loss", "final_val_accuracy", "delta_ratio_at_first_step",
        "delta_ratio_at_last_step")
LABELS = {"final_train_loss": "final train loss", "final_val_loss": "final val loss",
          "final_val_accuracy": "final val accuracy", "delta_ratio_at_first_step": "delta ratio at first step",
          "delta_ratio_at_last_step": "delta ratio at last step"}
STATUS_CLASS = {"completed": "ok", "diverged": "bad"}  # anything else (failed, interrupted): warn
PIVOT_NOTE = ("One row per combination of the swept keys; a grey kind is a note, not a failure at the end of the "
              "run. Click a diagnosis for its findings: what was measured, the evidence and what to try.")
GROUP = 10  # columns per folded table of summary.csv's other columns
RATIO_NOTE = ("delta ratio: delta_norm of the first hidden layer over the last one's; near 1 the gradient "
              "reaches layer 1 intact, far below 1 it vanishes on the way down, far above it explodes.")


def sweep_report(sweep: SweepData, write: bool) -> Report:
    findings, notes, by_run = [], list(sweep.notes), {}
    for row in sweep.summary.itertuples():
        found, note, layers = _diagnosed(sweep.dir, str(row.run), str(row.status))
        findings += found
        notes += [note] if note else []
        by_run[str(row.run)] = (found, layers)
    rep = Report("sweep", sweep.dir, findings=findings, notes=notes)
    if write:
        from . import html, sweep_plots

        refuse_symlinks(sweep.dir, ["report.html", *sweep_plots.SWEEP_PLOTS])  # before anything is written
        rep.images = sweep_plots.write_sweep_plots(sweep, sweep.dir)
        spec = yaml.safe_dump(sweep.spec, sort_keys=False)
        sections = [
            html.Section("Summary", text=overview(sweep), html=summary_html(sweep)),
            html.Section("Figures", images=rep.images, grid=True),
            html.Section("Diagnosis by combination", text=PIVOT_NOTE, html=pivot_html(sweep, by_run),
                         pre="\n".join(notes) or None),
            html.Section("Sweep", html=folded("sweep.yaml", f"<pre>{escaping.escape(spec)}</pre>")),
        ]
        rep.html = html.write_html(sweep.dir / "report.html", f"gradlab sweep report: {sweep.name}", sections,
                                   wide=True)
    return rep


def _diagnosed(folder: Path, run: str, status: str) -> tuple[list[dict], str | None, tuple[int, int] | None]:
    """The findings of one run of a sweep, or a note saying why it is not diagnosed, with the run's first and
    last hidden layer (for the evidence's labels). Only a folder directly inside the sweep's is read:
    summary.csv names it."""
    if run in ("", ".", "..") or run != Path(run).name:
        return [], f"{run}: not a folder name inside the sweep (summary.csv, column 'run'); not read", None
    if (folder / run).is_symlink():
        return [], f"{run}: a symbolic link, not a run folder gradlab wrote; not read", None
    if status not in ("completed", "diverged"):
        return [], f"{run}: {status}, not diagnosed (see its error.txt)", None
    if not (folder / run / "metrics.csv").exists():
        return [], None, None
    try:
        data = load_run(folder / run)
    except (ConfigError, OSError) as exc:  # one unreadable run is a note, not the end of the sweep's report
        return [], f"{run}: not diagnosed: {exc}", None
    layers = (data.hidden[0], data.hidden[-1]) if data.layer_ids else None
    return [{"run": run, **f.as_dict()} for f in diagnose(data)], None, layers


# --------------------------------------------------------------------------- the summary

def overview(sweep: SweepData) -> str:
    """How many runs ended how, and the config values every run shares (summary.csv's columns after error)."""
    s = sweep.summary
    counts = Counter(str(v) for v in s.status) if "status" in s.columns else Counter()
    text = f"{len(s)} runs" + (": " + ", ".join(f"{n} {k}" for k, n in counts.most_common()) if counts else "") + "."
    shared = [f"{c} {_text(s[c].iloc[0]) or 'null'}" for c in _constant(sweep)]
    if shared and len(s):
        text += " The same in every run: " + ", ".join(shared) + "."
    return text + "\n\n" + RATIO_NOTE


def _config_columns(sweep: SweepData) -> list[str]:
    """The config values summary.csv holds after its 'error' column (those not swept)."""
    cols = list(sweep.summary.columns)
    return cols[cols.index("error") + 1:] if "error" in cols else []


def summary_html(sweep: SweepData) -> str:
    """The run, the swept keys and the main figures; every other column folded below."""
    s = sweep.summary
    shown = [*sweep.keys, *[c for c in MAIN if c in s.columns]]
    main = runs_table(sweep, shown, [LABELS.get(c, c) for c in shown])
    rest = [c for c in s.columns if c not in ("run", *shown) and c not in _constant(sweep)]
    if not rest:
        return main
    tables = [runs_table(sweep, rest[i:i + GROUP]) for i in range(0, len(rest), GROUP)]
    return main + "\n" + folded(f"The other columns of summary.csv ({len(rest)})", "\n".join(tables))


def runs_table(sweep: SweepData, columns: list[str], labels: list[str] | None = None) -> str:
    """The run (wrapping at its commas) and ``columns`` of summary.csv, a row per run sorted by the swept keys."""
    from .html import cells_table

    rows = [[(_run_name(r["run"]), "text run"), *[(_cell(c, r[c])) for c in columns]]
            for r in _ordered(sweep).to_dict("records")]
    return cells_table(["run", *(labels or columns)], rows, "compact summary")


def _constant(sweep: SweepData) -> list[str]:
    """Config columns with one value over the sweep (the overview names them)."""
    s = sweep.summary
    return [c for c in _config_columns(sweep) if s[c].nunique(dropna=False) == 1]


def _ordered(sweep: SweepData):
    """The summary's rows sorted by the swept keys, numbers as numbers (depth 5 before depth 10)."""
    keys = [k for k in sweep.keys if k in sweep.summary.columns]
    if not keys or sweep.summary.empty:
        return sweep.summary
    order = sorted(range(len(sweep.summary)), key=lambda i: [_sort_key(sweep.summary[k].iloc[i]) for k in keys])
    return sweep.summary.iloc[order]


def _sort_key(value) -> tuple:
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not _missing(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _run_name(run) -> str:
    """A run folder's name that may wrap after each comma."""
    return ",<wbr>".join(escaping.escape(part) for part in str(run).split(","))


def _text(value) -> str:
    from .html import fmt

    if _missing(value):
        return ""
    if isinstance(value, float) and abs(value) < 1e15 and value == int(value):
        return str(int(value))  # a whole number read back as float (a column with empty cells)
    return fmt(value)


def _missing(value) -> bool:
    """An empty cell of summary.csv (NaN)."""
    return isinstance(value, float) and math.isnan(value)


def _cell(column: str, value) -> tuple[str, str]:
    """A summary cell: the status as a coloured word, numbers with 3 significant digits."""
    if column == "status":
        css = STATUS_CLASS.get(str(value), "warn")
        return f'<span class="word {css}">{escaping.escape(str(value))}</span>', "text"
    numeric = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return escaping.escape(_text(value)), "" if numeric else "text"


# --------------------------------------------------------------------------- the diagnosis

def combinations(sweep: SweepData) -> list[tuple[tuple, list[str]]]:
    """(values of the swept keys but seed, the runs of that combination) in the summary's sorted order."""
    keys = [k for k in sweep.keys if k != "seed"]
    out: dict[tuple, list[str]] = {}
    for row in _ordered(sweep).to_dict("records"):
        out.setdefault(tuple(row[k] for k in keys), []).append(str(row["run"]))
    return list(out.items())


def kind_words(findings: list[dict], runs: int = 1) -> str:
    """Each kind found as a coloured word (grey: a note, not a failure at the end); over several runs (seeds)
    with how many of them it was found in."""
    from .html import kind_css

    seen: Counter = Counter()
    for f in findings:
        seen[(str(f.get("kind", "")), kind_css(f))] += 1
    words = [f'<span class="word {css}">{escaping.escape(kind.replace("_", " "))}</span>'
             + (f" {n}/{runs}" if runs > 1 else "") for (kind, css), n in seen.items()]
    return " ".join(words)


def pivot_html(sweep: SweepData, by_run: dict) -> str:
    """One row per combination of the swept keys: how its runs ended and the kinds the diagnosis found."""
    from .html import cells_table

    keys = [k for k in sweep.keys if k != "seed"]
    status = dict(zip(sweep.summary.run.astype(str), sweep.summary.status.astype(str)))
    rows = []
    for values, runs in combinations(sweep):
        ends = Counter(status.get(r, "") for r in runs)
        ended = " ".join(f'<span class="word {STATUS_CLASS.get(k, "warn")}">{escaping.escape(k)}</span>'
                         + (f" {n}/{len(runs)}" if len(runs) > 1 else "") for k, n in ends.items())
        # per run, each kind once (a kind found twice in one run counts once among the seeds)
        found = [f for r in runs for f in {x["kind"]: x for x in by_run.get(r, ([], None))[0]}.values()]
        words = kind_words(found, len(runs)) or "not diagnosed"
        rows.append([*[(escaping.escape(_text(v)), "text") for v in values], (ended, "text"),
                     (folded(words, findings_of(runs, by_run), html_summary=True) if found else words, "text")])
    header = [*keys, "runs" if any(len(r) > 1 for _, r in combinations(sweep)) else "status", "diagnosis"]
    return cells_table(header, rows, "compact pivot")


def findings_of(runs: list[str], by_run: dict) -> str:
    """The findings tables of a combination's runs (one table, by run, when there are several)."""
    from .html import findings_table

    found = [f for r in runs for f in by_run.get(r, ([], None))[0]]
    layers = next((by_run[r][1] for r in runs if r in by_run and by_run[r][1]), None)
    if len(runs) == 1:
        found = [{k: v for k, v in f.items() if k != "run"} for f in found]
    return findings_table(found, layers)


def folded(summary: str, body: str, html_summary: bool = False) -> str:
    """``body`` folded under a one-line ``summary`` (text, escaped; or trusted HTML with ``html_summary``)."""
    head = summary if html_summary else escaping.escape(summary)
    return f"<details><summary>{head}</summary>\n{body}\n</details>"
