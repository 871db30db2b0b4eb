"""Time ``gradlab sweep``: the speed-up of 2 worker processes over 1, and the cost per run.

* speed-up: a sweep of 24 short runs (depth 8, 16 x init xavier_normal, he_normal, normal(0.01) x
  seeds 0-3; a width-64 tanh MLP on two spirals, 300 SGD steps each) with ``workers=1`` and with
  ``workers=2``: the wall time of ``run_sweep`` each, and their ratio (aim: >= 1.7x on 2 cores).
* per-run overhead: sweeps of 12 runs and of 1 run, of 1 step each, with 1 and with 2 workers: the
  marginal cost of one more run, (wall(12 runs) - wall(1 run)) / 11 (aim: < 0.3 s), and the one-off
  cost of a sweep, wall(1 run) less that marginal cost: mostly starting the worker processes.

The six sweeps are timed under one protocol (benchmarks/protocol.py): a warm-up call of each, then
``--repeats`` rounds interleaved in alternating order, medians with the per-repeat range, ratios and
differences taken within a round. The client (this process) runs BLAS on ``--threads`` threads
(default 1); every worker process runs with one, as ``gradlab sweep`` sets.

Besides the wall times it prints where they go: the time the runs took inside the workers
(summary.csv's wall_time, summed), and the time the client spent in ``gradlab.sweep._write_tables``
(rewriting summary.csv and profile.csv from the tables the workers return), measured by wrapping that
function in this process only. ``--profile`` also prints the client's cProfile of one 2-worker sweep.

Compared (any mismatch exits 1): every run of every sweep completed, and the summary rows (every
column but wall_time) are the same with 1 and with 2 workers, and in every repeat. Timings are printed,
never asserted; the figures the README quotes come from the 'summary' lines.

Sweeps go through the Python API (``gradlab.sweeps.sweep_from_dict`` + ``run_sweep``) into a
temporary directory.

    python benchmarks/bench_sweep.py                  # the README's figures
    python benchmarks/bench_sweep.py --quick          # 6 runs of 2 steps, 1 repeat: does it run?

Workers are spawned processes that re-import this file as ``__mp_main__``: keep its top level free
of heavy imports (numpy, pandas and gradlab are imported inside the functions).
"""
from __future__ import annotations

import argparse
import math
import sys
import time

import protocol


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every sweep, interleaved (default 3; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every sweep first (default 1)")
    p.add_argument("--steps", type=int, default=300, help="training steps of each run of the grid sweep")
    p.add_argument("--seeds", type=int, default=4, help="seeds of the grid sweep (default 4: 24 runs)")
    p.add_argument("--overhead-runs", type=int, default=12, help="runs of 1 step in the overhead sweep (default 12)")
    p.add_argument("--threads", type=int, default=1, help="the client's BLAS threads (default 1; 0 = library default)")
    p.add_argument("--quick", action="store_true", help="2 steps, 1 seed, 2 overhead runs, 1 repeat: a smoke run")
    p.add_argument("--profile", action="store_true", help="also print the client's cProfile of one 2-worker sweep")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.overhead_runs = 2, 1, 2
    protocol.settle_repeats(p, args, 3)
    if args.overhead_runs < 2:
        p.error("--overhead-runs: at least 2 (the marginal cost compares it with a 1-run sweep)")
    return args


def base_config(out: str, steps: int) -> dict:
    return {
        "seed": 0,
        "data": {"kind": "spirals", "n_samples": 512, "n_classes": 2, "noise": 0.1, "val_fraction": 0.2,
                 "standardize": True},
        "model": {"depth": 8, "width": 64, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 64, "steps": steps},
        "log": {"every": 1, "out": out},
    }


def grid_sweep(out: str, steps: int, seeds: int):
    from gradlab import sweeps

    return sweeps.sweep_from_dict({
        "name": "bench_grid",
        "base": base_config(out, steps),
        "grid": {"model.depth": [8, 16],
                 "model.init": ["xavier_normal", "he_normal", {"scheme": "normal", "std": 0.01}]},
        "seeds": list(range(seeds)),
    }, "<bench_sweep>")


def tiny_sweep(out: str, runs: int):
    from gradlab import sweeps

    return sweeps.sweep_from_dict({"name": f"bench_tiny{runs}", "base": base_config(out, 1),
                                   "seeds": list(range(runs))}, "<bench_sweep>")


class Clock:
    """Observer: when the sweep started and when each result reached the client."""

    def on_start(self, info: dict) -> None:
        self.t0 = time.perf_counter()
        self.arrivals: list[float] = []

    def on_run(self, res: dict) -> None:
        self.arrivals.append(time.perf_counter() - self.t0)


class ClientTimer:
    """Wraps gradlab.sweep._write_tables (in this process only) to add up the client's table work."""

    def __init__(self) -> None:
        import gradlab.sweep as sweep_module

        self.inner, self.total = getattr(sweep_module, "_write_tables", None), 0.0
        if self.inner is None:  # renamed or gone: report n/a
            return

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return self.inner(*args, **kwargs)
            finally:
                self.total += time.perf_counter() - t

        sweep_module._write_tables = timed

    def take(self) -> float:
        if self.inner is None:
            return float("nan")
        total, self.total = self.total, 0.0
        return total


def timed_sweep(sweep, workers: int, timer: ClientTimer) -> tuple[float, dict]:
    """(wall seconds, what the sweep gave: its rows and where the time went)."""
    from gradlab import sweeps

    clock = Clock()
    timer.take()
    t = time.perf_counter()
    result = sweeps.run_sweep(sweep, workers=workers, observers=[clock])
    wall = time.perf_counter() - t
    return wall, {"rows": result.rows, "in_workers": sum(r["wall_time"] or 0.0 for r in result.rows),
                  "tables": timer.take(), "first": clock.arrivals[0] if clock.arrivals else float("nan")}


# --------------------------------------------------------------------------- comparing results

def row_key(row: dict) -> dict:
    """A summary row without its wall time: what must not depend on the number of workers."""
    return {k: v for k, v in row.items() if k != "wall_time"}


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def same_rows(a: list[dict], b: list[dict]) -> bool:
    ra = {r["run"]: row_key(r) for r in a}
    rb = {r["run"]: row_key(r) for r in b}
    return ra.keys() == rb.keys() and all(
        ra[k].keys() == rb[k].keys() and all(same_value(ra[k][c], rb[k][c]) for c in ra[k]) for k in ra)


def compare(v: protocol.Verdicts, t: dict, kind: str) -> None:
    """Every run completed; the rows of every call of ``kind`` (both worker counts) equal the first call's."""
    calls = [c for w in (1, 2) for c in t[f"{kind} w{w}"].all_results]
    rows = [r for c in calls for r in c["rows"]]
    bad = [r for r in rows if r["status"] != "completed"]
    v.expect(not bad, f"{kind}: {len(rows) - len(bad)} of {len(rows)} runs completed"
                      f"{'; not: ' + ', '.join(sorted({r['status'] for r in bad})) if bad else ''}")
    differ = sum(not same_rows(calls[0]["rows"], c["rows"]) for c in calls[1:])
    v.expect(not differ, f"{kind}: summary rows (all but wall_time) identical with 1 and 2 workers, over "
                         f"{len(calls)} sweeps ({differ} differ)")


# --------------------------------------------------------------------------- main

def per_repeat(s: protocol.Spread, fmt: str, unit: str) -> str:
    """'; 1.57-1.76x per repeat', or '' with one repeat."""
    return f"; {s.span(fmt, unit=unit)} per repeat" if len(s.values) > 1 else ""


def grid_lines(t: dict, runs: int) -> tuple[str, str]:
    """(the grid sweep's details, its summary line)."""
    out = [f"grid sweep, {runs} runs (median, range over repeats):"]
    for w in (1, 2):
        tw = t[f"grid w{w}"]
        out.append(f"  workers={w}: wall {tw.spread.text(unit=' s')}; runs inside workers "
                   f"{protocol.Spread([c['in_workers'] for c in tw.results]).text(unit=' s')} in total; client in "
                   f"_write_tables {protocol.Spread([c['tables'] for c in tw.results]).text(unit=' s')}")
    speedup = protocol.ratio(t["grid w1"], t["grid w2"])
    out.append(f"  speed-up workers=2 over workers=1, per repeat: {speedup.text(unit='x')} (target >= 1.7x)")
    summary = (f"summary (speed-up): 2 workers **{speedup.median:.2f}x** faster than 1 on a {runs}-run sweep (median "
               f"of {len(speedup.values)} repeat(s){per_repeat(speedup, '.2f', 'x')}; workers=1 "
               f"{t['grid w1'].spread.median:.2f} s, workers=2 {t['grid w2'].spread.median:.2f} s)")
    return "\n".join(out), summary


def overhead_lines(t: dict, n_over: int) -> tuple[str, list[str]]:
    """(the overhead sweeps' details, a summary line per worker count)."""
    out, summaries = [f"per-run overhead ({n_over} runs of 1 step against 1 run):"], []
    for w in (1, 2):
        many, one = t[f"many w{w}"], t[f"one w{w}"]
        marginal = protocol.Spread([(a - b) / (n_over - 1) for a, b in zip(many.times, one.times)])
        oneoff = protocol.Spread([b - m for b, m in zip(one.times, marginal.values)])
        first = protocol.Spread([c["first"] for c in one.results])
        tables = protocol.Spread([c["tables"] / n_over for c in many.results])
        out.append(f"  workers={w}: wall {many.spread.text(unit=' s')} ({n_over} runs), {one.spread.text(unit=' s')} "
                   f"(1 run; its result after {first.text(unit=' s')})")
        out.append(f"    marginal cost of a run (wall({n_over}) - wall(1)) / {n_over - 1}: "
                   f"{marginal.text('.3f', unit=' s')} (target < 0.3 s); one-off {oneoff.text(unit=' s')}; "
                   f"client in _write_tables {tables.text('.3f', unit=' s')} per run")
        spread = f" ({marginal.span('.3f', unit=' s')} per repeat)" if len(marginal.values) > 1 else ""
        summaries.append(f"summary (overhead, workers={w}): per-run overhead **{marginal.median:.3f} s**{spread} "
                         f"beyond a one-off {oneoff.median:.2f} s for starting the worker processes")
    return "\n".join(out), summaries


def show(r: int, name: str, s: float) -> None:
    import os

    print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:7s} {s:7.2f} s "
          f"(load average {os.getloadavg()[0]:.2f})", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    import tempfile

    threads = protocol.pin_threads(args.threads)
    timer = ClientTimer()
    n_over = args.overhead_runs
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as out:
        grid = grid_sweep(out, args.steps, args.seeds)
        tiny_n, tiny_1 = tiny_sweep(out, n_over), tiny_sweep(out, 1)
        protocol.header(f"gradlab sweep: grid sweep of {len(grid.combos)} runs of {args.steps} steps; overhead "
                        f"sweeps of {n_over} runs and of 1 run, of 1 step; each with workers=1 and workers=2",
                        threads, args.repeats, args.warmup)
        sides = [protocol.Side(f"{kind} w{w}", lambda s=sweep, w=w: timed_sweep(s, w, timer))
                 for kind, sweep in (("grid", grid), ("many", tiny_n), ("one", tiny_1)) for w in (1, 2)]
        t = protocol.interleave(sides, args.repeats, args.warmup, show)
        v = protocol.Verdicts()
        for kind in ("grid", "many", "one"):
            compare(v, t, kind)
        grid_text, grid_summary = grid_lines(t, len(grid.combos))
        over_text, over_summaries = overhead_lines(t, n_over)
        print(f"\n{grid_text}\n\n{over_text}")
        print("\n".join([grid_summary, *over_summaries]))
        if args.profile:
            profile(grid, timer)
    print(protocol.load_line("end"))
    return v.exit_code()


def profile(grid, timer: ClientTimer) -> None:
    import cProfile
    import pstats

    print("\nclient cProfile of one workers=2 grid sweep (cumulative, top 25):")
    prof = cProfile.Profile()
    prof.enable()
    timed_sweep(grid, 2, timer)
    prof.disable()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    protocol.pin_blas_env(parse_args().threads)  # before numpy loads in this process
    sys.exit(main())
