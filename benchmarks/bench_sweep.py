"""Time ``gradlab sweep``: the speed-up of 2 worker processes over 1, and the cost per run.

* speed-up: a sweep of 24 short runs (depth 8, 16 x init xavier_normal, he_normal,
  normal(0.01) x seeds 0-3; a width-64 tanh MLP on two spirals, 300 SGD steps, ~0.3-1 s
  each) with ``workers=1`` and with ``workers=2``; wall time of ``run_sweep`` each, and
  the ratio (aim: >= 1.7x on 2 cores).
* per-run overhead: a sweep of 12 runs of 1 step each; wall time / runs with the one-off
  pool start-up included, and without it: (wall(12 runs) - wall(1 run)) / 11, the
  marginal cost of one more run (aim: < 0.3 s).

Besides the wall times it prints where they go: the time the runs took inside the workers
(summary.csv's wall_time, summed), and the time the client process spent in
``gradlab.sweep._write_tables`` (re-reading the runs' CSVs and rewriting summary.csv and
profile.csv), measured by wrapping that function in this process only. ``--profile``
also prints the client's cProfile of one ``workers=2`` sweep.

Sweeps go through the Python API (``gradlab.sweeps.sweep_from_dict`` + ``run_sweep``)
into a temporary directory. Repeats are interleaved (1, 2, 2, 1, ...) after an untimed
warm-up sweep; figures are the median with the spread (min-max). Timings are printed,
never asserted: exit status 0.

    python benchmarks/bench_sweep.py [--repeats 3] [--steps 300] [--profile]

Measured at f062e74-6b29dc4 (the same _write_tables), on 2 cores shared with other work (load
average 1.3-6), 5 script runs x 3 repeats: 24-run sweep, workers=1 12.9-41.1 s, workers=2
12.1-39.2 s; speed-up per repeat 0.82-1.67x, medians of the 5 runs 0.96-1.34x (target >= 1.7x).
The client spent 10.7-35.2 s of each sweep in _write_tables, as long as all the runs together
(8.1-34.5 s inside one worker): after every result it re-parses the CSVs of every run finished
so far (1 + 2 + ... + 24 runs: 648 layer_table calls) and rewrites profile.csv, so the client is
the bottleneck and a second worker barely helps. Per-run overhead, 12 runs of 1 step: with
start-up 0.11-0.43 s, without 0.06-0.37 s (target < 0.3 s), of which the client's tables
0.06-0.22 s; a run itself takes 0.01-0.05 s in its worker; a worker's start-up (spawn and
imports, pandas 0.28 s of 0.4-0.6 s) is most of the 0.43-1.06 s before the first result.

Workers are spawned processes that re-import this file as ``__mp_main__``: keep its
top level free of heavy imports.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each sweep, interleaved (default 3)")
    p.add_argument("--steps", type=int, default=300, help="training steps of each run of the 24-run sweep")
    p.add_argument("--overhead-runs", type=int, default=12, help="runs of 1 step in the overhead sweep")
    p.add_argument("--profile", action="store_true", help="also print the client's cProfile of one 2-worker sweep")
    return p.parse_args(argv)


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


def grid_sweep(out: str, steps: int):
    from gradlab import sweeps  # an alias of gradlab.sweep (``import gradlab.sweeps`` fails)

    return sweeps.sweep_from_dict({
        "name": "bench_grid",
        "base": base_config(out, steps),
        "grid": {"model.depth": [8, 16],
                 "model.init": ["xavier_normal", "he_normal", {"scheme": "normal", "std": 0.01}]},
        "seeds": [0, 1, 2, 3],
    }, "<bench_sweep>")


def tiny_sweep(out: str, runs: int):
    from gradlab import sweeps  # an alias of gradlab.sweep (``import gradlab.sweeps`` fails)

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
            self.total = float("nan")
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


def timed_sweep(sweep, workers: int, timer: ClientTimer) -> dict:
    from gradlab import sweeps

    clock = Clock()
    timer.take()
    t = time.perf_counter()
    result = sweeps.run_sweep(sweep, workers=workers, observers=[clock])
    wall = time.perf_counter() - t
    bad = [r for r in result.rows if r["status"] != "completed"]
    if bad:
        print(f"  warning: {len(bad)} runs did not complete: {[r['status'] for r in bad]}", file=sys.stderr)
    return {"wall": wall, "in_workers": sum(r["wall_time"] or 0.0 for r in result.rows),
            "tables": timer.take(), "first": clock.arrivals[0] if clock.arrivals else float("nan"),
            "runs": len(result.rows)}


def spread(values: list[float], fmt: str = ".2f") -> str:
    med = statistics.median(values)
    return f"{med:{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})" if len(values) > 1 else f"{med:{fmt}}"


def main(argv=None) -> int:
    args = parse_args(argv)
    import os

    timer = ClientTimer()
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as out:
        grid = grid_sweep(out, args.steps)
        n_over = args.overhead_runs
        tiny_n, tiny_1 = tiny_sweep(out, n_over), tiny_sweep(out, 1)
        print(f"cpus: {os.cpu_count()}, load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"grid sweep: {len(grid.combos)} runs of {args.steps} steps; overhead sweep: {n_over} runs of 1 step; "
              f"{args.repeats} repeats, interleaved, after a warm-up")
        timed_sweep(tiny_1, 2, timer)  # warm-up: file caches, imports

        grid_t: dict[int, list[dict]] = {1: [], 2: []}
        over_t: dict[tuple[int, int], list[dict]] = {(w, n): [] for w in (1, 2) for n in (1, n_over)}
        for rep in range(args.repeats):
            order = (1, 2) if rep % 2 == 0 else (2, 1)
            for w in order:
                grid_t[w].append(timed_sweep(grid, w, timer))
                print(f"  repeat {rep + 1}, grid sweep, workers={w}: {grid_t[w][-1]['wall']:.2f} s "
                      f"(load average {os.getloadavg()[0]:.2f})", flush=True)
            for w in order:
                for n, sweep in ((n_over, tiny_n), (1, tiny_1)):
                    over_t[(w, n)].append(timed_sweep(sweep, w, timer))

        print("\n24-run sweep (median, min-max over repeats):")
        for w in (1, 2):
            t = grid_t[w]
            print(f"  workers={w}: wall {spread([x['wall'] for x in t])} s; runs inside workers "
                  f"{spread([x['in_workers'] for x in t])} s in total; client in _write_tables "
                  f"{spread([x['tables'] for x in t])} s")
        ratios = [a["wall"] / b["wall"] for a, b in zip(grid_t[1], grid_t[2])]
        print(f"  speed-up workers=2 over workers=1: {spread(ratios)}x per repeat (target >= 1.7x)")

        print(f"\nper-run overhead ({n_over} runs of 1 step):")
        for w in (1, 2):
            many, one = over_t[(w, n_over)], over_t[(w, 1)]
            with_start = [x["wall"] / n_over for x in many]
            without = [(a["wall"] - b["wall"]) / (n_over - 1) for a, b in zip(many, one)]
            print(f"  workers={w}: wall {spread([x['wall'] for x in many])} s; 1-run sweep "
                  f"{spread([x['wall'] for x in one])} s (first result after {spread([x['first'] for x in one])} s)")
            print(f"    per run with start-up {spread(with_start, '.3f')} s; without "
                  f"(wall({n_over}) - wall(1)) / {n_over - 1}: {spread(without, '.3f')} s (target < 0.3 s); "
                  f"client in _write_tables {spread([x['tables'] / n_over for x in many], '.3f')} s per run")

        if args.profile:
            import cProfile
            import pstats

            print("\nclient cProfile of one workers=2 grid sweep (cumulative, top 25):")
            prof = cProfile.Profile()
            prof.enable()
            timed_sweep(grid, 2, timer)
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
