"""One timing protocol for every benchmark in this folder, the same on both sides of a comparison.

* Threads pinned: BLAS through threadpoolctl where it is installed, else through OPENBLAS/OMP/MKL/
  VECLIB_*_NUM_THREADS set before numpy loads; torch through ``torch.set_num_threads``. The counts,
  and which way they were set, are printed.
* The machine's load (``os.getloadavg``) and CPU count printed at the start and the end.
* Every side gets the same warm-up (untimed for the figures, but its time is printed as the cold
  call), then the repeats interleave the sides, in alternating order (A B, B A, A B, ...) so that a
  drift in the machine's load, and the cost of going first, fall on every side alike.
* Figures are medians with the per-repeat range; a ratio is the median of the per-repeat ratios.
* Results are compared between the sides; any mismatch is printed and the script exits 1.

Only the standard library is imported here: a script imports this module before numpy, and sweep
workers that re-import a script stay light.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
_env = {"threads": 0, "before_numpy": False}  # what pin_blas_env did
_limits: list = []  # threadpoolctl limiters kept alive: a limit lasts as long as its object


# --------------------------------------------------------------------------- threads and load

def settle_repeats(parser, args, default: int) -> None:
    """--repeats must be at least 1; left unset, it is 1 with --quick and ``default`` otherwise."""
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats: at least 1")
    if args.repeats is None:
        args.repeats = 1 if args.quick else default


def settle_sides(parser, args, sides: tuple[str, ...], needed: str = "minimal") -> None:
    """--sides: a comma-separated list of ``sides`` that holds ``needed`` (the side the others are timed against)."""
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(args.sides) - set(sides)
    if unknown or needed not in args.sides:
        parser.error(f"--sides: {sorted(unknown) or needed + ' is missing'}; choose from {', '.join(sides)}, "
                     f"with {needed}")


def pin_blas_env(threads: int) -> None:
    """BLAS thread variables (0: leave them); only effective before numpy is imported."""
    if threads <= 0:
        return
    _env["threads"], _env["before_numpy"] = threads, "numpy" not in sys.modules
    for var in BLAS_VARS:
        os.environ[var] = str(threads)


def pin_threads(threads: int) -> str:
    """Pin the BLAS libraries loaded so far to ``threads`` (0: leave them); the line saying how."""
    if threads > 0 and _env["threads"] != threads:
        pin_blas_env(threads)  # too late for a loaded numpy, but child processes inherit it
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        return f"BLAS threads: {_env_story(threads)}"
    if threads > 0:
        _limits.append(threadpool_limits(limits=threads))
    pools = ", ".join(f"{p['internal_api']} {p['num_threads']}" for p in threadpool_info()) or "none loaded"
    how = "pinned with threadpoolctl" if threads > 0 else "library defaults (--threads 0)"
    return f"BLAS threads: {pools} ({how})"


def release() -> None:
    """Undo the threadpoolctl limits set here (the environment variables stay)."""
    while _limits:
        _limits.pop().restore_original_limits()


def _env_story(threads: int) -> str:
    seen = ", ".join(f"{v}={os.environ[v]}" for v in BLAS_VARS if v in os.environ) or "none of " + "/".join(BLAS_VARS)
    if threads <= 0:
        return f"library defaults (--threads 0; environment: {seen}); threadpoolctl not installed, so not verified"
    if _env["before_numpy"]:
        return (f"{threads} ({', '.join(BLAS_VARS)} set to {threads} before numpy was imported; "
                "threadpoolctl not installed, so not verified)")
    return (f"whatever the environment said when numpy was loaded, before this pin (now: {seen}); threadpoolctl "
            "not installed, so not verified")


def pin_torch(torch, threads: int) -> str:
    """torch's intra-op threads (0: leave them), and BLAS libraries torch brought in; the line saying so."""
    if threads > 0:
        torch.set_num_threads(threads)
    how = "torch.set_num_threads" if threads > 0 else "torch's default (--threads 0)"
    blas = pin_threads(threads) if threads > 0 and _limits else ""
    return f"torch threads: {torch.get_num_threads()} intra-op ({how})" + (f"; {blas}" if blas else "")


def load_line(when: str) -> str:
    """The machine's load average and CPU count, printed at the start and the end of a script."""
    one, five, fifteen = os.getloadavg()
    return f"{when}: load average {one:.2f} {five:.2f} {fifteen:.2f} (1, 5, 15 min) on {os.cpu_count()} CPUs"


# --------------------------------------------------------------------------- timing

@dataclass
class Side:
    """One side of a comparison. ``run()`` returns (seconds, result); the seconds may be the side's own
    clock (a per-step time, say) or the wall time of the call (see ``clocked``)."""

    name: str
    run: Callable[[], tuple[float, Any]]


def clocked(fn: Callable[[], Any]) -> Callable[[], tuple[float, Any]]:
    """``fn`` as a ``Side.run``: the wall time of one call and its result."""
    def run() -> tuple[float, Any]:
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result
    return run


@dataclass
class Spread:
    """Values over the repeats: median and range."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    def span(self, fmt: str = ".2f", scale: float = 1.0, unit: str = "") -> str:
        """'0.61-0.66 s' ('-0.10 to 0.66 s' when a value is negative)."""
        lo, hi = f"{self.lo * scale:{fmt}}", f"{self.hi * scale:{fmt}}"
        return f"{lo} to {hi}{unit}" if self.lo < 0 else f"{lo}-{hi}{unit}"

    def range_text(self, fmt: str = ".2f", scale: float = 1.0, unit: str = "") -> str:
        """'range 0.61-0.66 s', or '' for a single value."""
        return f"range {self.span(fmt, scale, unit)}" if len(self.values) > 1 else ""

    def text(self, fmt: str = ".2f", scale: float = 1.0, unit: str = "") -> str:
        """'0.63 s (range 0.61-0.66 s)'; the range only with more than one value."""
        med = f"{self.median * scale:{fmt}}{unit}"
        return f"{med} ({self.range_text(fmt, scale, unit)})" if len(self.values) > 1 else med


@dataclass
class Timings:
    """A side's warm-up and timed calls: seconds and results."""

    name: str
    warmup: list[float] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    warmup_results: list = field(default_factory=list)
    results: list = field(default_factory=list)

    @property
    def spread(self) -> Spread:
        return Spread(self.times)

    @property
    def all_results(self) -> list:
        return self.warmup_results + self.results


def order(names: list[str], repeat: int) -> list[str]:
    """The sides' order in a repeat: as given in even repeats, reversed in odd ones."""
    return list(names) if repeat % 2 == 0 else list(reversed(names))


def interleave(sides: list[Side], repeats: int, warmup: int = 1,
               show: Callable[[int, str, float], None] | None = None) -> dict[str, Timings]:
    """``warmup`` untimed calls of every side, then ``repeats`` rounds of one call each, in alternating order.

    ``show(repeat, name, seconds)`` is called after each timed call (repeat 0 is the warm-up).
    """
    by_name = {s.name: s for s in sides}
    out = {s.name: Timings(s.name) for s in sides}

    def call(name: str, label: int, times: list, results: list) -> None:
        seconds, result = by_name[name].run()
        times.append(seconds)
        results.append(result)
        if show:
            show(label, name, seconds)

    for w in range(warmup):
        for name in order(list(by_name), w):
            call(name, 0, out[name].warmup, out[name].warmup_results)
    for r in range(repeats):
        for name in order(list(by_name), r):
            call(name, r + 1, out[name].times, out[name].results)
    return out


def ratio(a: Timings, b: Timings) -> Spread:
    """a / b, repeat by repeat (each ratio from the same round of the interleaving)."""
    return Spread([x / y for x, y in zip(a.times, b.times)])


def difference(a: Timings, b: Timings) -> Spread:
    """a - b, repeat by repeat."""
    return Spread([x - y for x, y in zip(a.times, b.times)])


def cold(t: Timings, fmt: str = ".2f", scale: float = 1.0, unit: str = " s") -> str:
    """The first (cold) call's time, or '' without a warm-up."""
    return f"the first, cold call {t.warmup[0] * scale:{fmt}}{unit}" if t.warmup else "no warm-up"


# --------------------------------------------------------------------------- comparing results

class Verdicts:
    """The comparisons between the sides; any failure makes the script exit 1."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, ok: bool, what: str) -> bool:
        """Print 'ok: what' or 'MISMATCH: what'; remember a mismatch."""
        print(f"{'ok' if ok else 'MISMATCH'}: {what}", flush=True)
        if not ok:
            self.failed.append(what)
        return ok

    def exit_code(self) -> int:
        if self.failed:
            print(f"{len(self.failed)} mismatch(es) between the sides: the timings above compare different "
                  "results; exit 1", flush=True)
            return 1
        return 0


def header(title: str, threads_line: str, repeats: int, warmup: int) -> None:
    """The lines every script starts with."""
    print(title)
    print(load_line("start"))
    print(threads_line)
    print(f"protocol: {warmup} warm-up call(s) of every side, then {repeats} repeat(s) interleaved in alternating "
          "order (A B, B A, ...); medians with the per-repeat range; ratios are medians of per-repeat ratios",
          flush=True)


# --------------------------------------------------------------------------- gradlab's own side

def fit_timed(config, write: bool, out: str, recurrent: bool = False) -> tuple[float, float]:
    """(seconds per step, last loss) of gradlab's ``fit`` step loop, writing a run folder as ``gradlab train``
    does when ``write``; set-up and the closing full-data evaluation are not timed (fit's own clock)."""
    from gradlab.logging import RunWriter
    from gradlab.train import fit, new_run_dir, setup

    s = setup(config)
    observers, writer = [], None
    if write:
        writer = RunWriter(new_run_dir(out, config.name), recurrent=recurrent)
        writer.write_config(config.resolved())
        observers.append(writer)
    try:
        result = fit(s, observers)
    finally:
        if writer is not None:
            writer.close()
    if result.status != "completed":
        raise SystemExit(f"gradlab's run ended {result.status}: nothing to time")
    return result.wall_time / result.steps, result.last.loss
