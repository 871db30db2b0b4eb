"""BLAS threads: gradlab's work on one BLAS thread against two, alone and beside a busy neighbour.

Workloads (gradlab's own code, float64):

* ``lstm h32``: a training step of configs/lstm_adding.yaml's LSTM (T 100, hidden 32, batch 64);
* ``lstm h128``: the same with hidden 128;
* ``dense``: a training step of a depth-20, width-256 tanh MLP, batch 128;
* ``check``: a full ``gradlab check`` of a depth-10, width-64 tanh MLP, batch 32 (40,202 parameters).

A step is timed by ``fit``'s own clock (the step loop, logging only the first and last step), divided by the
steps; the check by its wall time. Each workload runs with BLAS on 1 thread and on 2 (threadpoolctl, as
``train.threads`` sets it), first on the machine as it is ("alone": no neighbour of the script's own; the load
printed says what else ran), then beside a busy neighbour ("busy"): a process
spinning a core (``python -c "while True: pass"``), started before the workload's warm-up and stopped after
its last repeat. Protocol: benchmarks/protocol.py (warm-up, interleaved repeats in alternating order,
medians, the ratio 2 threads / 1 thread per repeat, the load printed); both thread counts must reach the
same loss (relative 1e-9) or the same check verdict, else the script exits 1. ``--quick``: tiny sizes, once.

    python benchmarks/bench_threads.py [--repeats 5] [--only lstm_h32,check] [--quick]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time

import protocol

WORKLOADS = ("lstm_h32", "lstm_h128", "dense", "check")
LOSS_TOL = 1e-9


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every side first (default 1)")
    p.add_argument("--only", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    p.add_argument("--steps", type=int, default=10, help="training steps per timed call (default 10)")
    p.add_argument("--no-busy", action="store_true", help="skip the runs beside a busy neighbour")
    p.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat: a smoke run")
    args = p.parse_args(argv)
    args.only = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(args.only) - set(WORKLOADS)
    if unknown:
        p.error(f"--only: {sorted(unknown)}; choose from {', '.join(WORKLOADS)}")
    if args.quick:
        args.steps = 2
    protocol.settle_repeats(p, args, 5)
    return args


if __name__ == "__main__":  # the process starts on one thread, as gradlab's commands run; each side sets its own
    protocol.pin_blas_env(1)

import gradlab  # noqa: E402
from gradlab.threads import blas_threads  # noqa: E402
from gradlab.train import fit, setup  # noqa: E402


def lstm_config(hidden: int, args: argparse.Namespace, threads: int):
    T, batch = (10, 8) if args.quick else (100, 64)
    return gradlab.config_from_dict({
        "name": "bench", "seed": 0,
        "data": {"kind": "adding", "T": T, "n_samples": 10 * batch, "val_fraction": 0.1},
        "model": {"kind": "rnn", "cell": "lstm", "hidden": 4 if args.quick else hidden, "forget_bias": 1.0},
        "loss": "mse",
        "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": batch, "steps": args.steps,
                  "clip": {"mode": "norm", "threshold": 1.0}, "threads": threads},
        "log": {"every": args.steps, "val_every": 10 ** 6}})


def dense_config(args: argparse.Namespace, threads: int):
    depth, width, batch = (2, 16, 8) if args.quick else (20, 256, 128)
    return gradlab.config_from_dict({
        "name": "bench", "seed": 0,
        "data": {"kind": "blobs", "n_samples": 4 * batch, "n_features": 32, "n_classes": 10, "val_fraction": 0.0},
        "model": {"depth": depth, "width": width, "activation": "tanh", "init": "xavier_normal"},
        "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": batch, "steps": args.steps, "threads": threads},
        "log": {"every": args.steps, "val_every": 10 ** 6}})


def check_config(args: argparse.Namespace, threads: int):
    depth, width = (2, 8) if args.quick else (10, 64)
    return gradlab.config_from_dict({
        "name": "bench", "seed": 0,
        "data": {"kind": "spirals", "n_samples": 512, "n_classes": 2},
        "model": {"depth": depth, "width": width, "activation": "tanh", "init": "xavier_normal"},
        "train": {"threads": threads},
        "check": {"mode": "full", "batch": 32}})


def step_side(config) -> callable:
    """Seconds per step of ``fit``'s loop, and the last loss, with BLAS on ``train.threads`` threads."""
    def run():
        s = setup(config)
        with blas_threads(config.train.threads):
            result = fit(s, [])
        if result.status != "completed":
            raise SystemExit(f"the run ended {result.status}: nothing to time")
        return result.wall_time / result.steps, result.last.loss
    return run


def check_side(config) -> callable:
    """Wall seconds of the whole check (``gradlab.check`` sets train.threads itself) and its verdict."""
    def run():
        t0 = time.perf_counter()
        report = gradlab.check(config)
        return time.perf_counter() - t0, (report.exit_code, len(report.tensors))
    return run


def sides(workload: str, args: argparse.Namespace) -> list[protocol.Side]:
    make = {"lstm_h32": lambda n: step_side(lstm_config(32, args, n)),
            "lstm_h128": lambda n: step_side(lstm_config(128, args, n)),
            "dense": lambda n: step_side(dense_config(args, n)),
            "check": lambda n: check_side(check_config(args, n))}[workload]
    return [protocol.Side("1 thread", make(1)), protocol.Side("2 threads", make(2))]


def agree(workload: str, t: dict, v: protocol.Verdicts, where: str) -> None:
    one, two = t["1 thread"].all_results, t["2 threads"].all_results
    ref = one[0]
    if workload == "check":
        ok = all(r == ref for r in one + two)
        v.expect(ok, f"{workload} {where}: every check on 1 and 2 threads ends {ref[0]} over {ref[1]} tensors")
    else:
        ok = all(abs(r - ref) <= LOSS_TOL * abs(ref) for r in one + two)
        v.expect(ok, f"{workload} {where}: the last loss is {ref:.12g} on 1 and 2 threads (relative {LOSS_TOL:g})")


class Neighbour:
    """A process spinning one core for as long as the block lasts."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)  # running before the first call
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = protocol.pin_threads(0)  # report what the process has; each side sets its own count
    protocol.header(f"gradlab on 1 vs 2 BLAS threads: {', '.join(args.only)}; {args.steps} steps per timed call",
                    threads, args.repeats, args.warmup)
    v = protocol.Verdicts()
    rows = {}
    for where in ("alone", *(() if args.no_busy else ("busy",))):
        for workload in args.only:
            print(f"{workload}, {where}{' (a process spinning a core beside it)' if where == 'busy' else ''}:",
                  flush=True)
            unit = (1.0, " s") if workload == "check" else (1e3, " ms")

            def show(r: int, name: str, s: float) -> None:
                print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:9s} {s * unit[0]:9.2f}{unit[1]}", flush=True)

            if where == "busy":
                with Neighbour():
                    t = protocol.interleave(sides(workload, args), args.repeats, args.warmup, show)
            else:
                t = protocol.interleave(sides(workload, args), args.repeats, args.warmup, show)
            agree(workload, t, v, where)
            rows[workload, where] = t
            print(protocol.load_line(f"after {workload}, {where}"), flush=True)
    print()
    print("| workload | where | 1 thread | 2 threads | 2 threads / 1 thread |")
    print("| --- | --- | --- | --- | --- |")
    for (workload, where), t in rows.items():
        fmt, scale, unit = (".2f", 1.0, " s") if workload == "check" else (".1f", 1e3, " ms")
        what = "full check" if workload == "check" else "per step"
        r = protocol.ratio(t["2 threads"], t["1 thread"])
        print(f"| {workload} ({what}) | {where} | {t['1 thread'].spread.median * scale:{fmt}}{unit} | "
              f"{t['2 threads'].spread.median * scale:{fmt}}{unit} | {r.text('.2f', unit='x')} |")
    print(protocol.load_line("end"))
    return v.exit_code()


if __name__ == "__main__":
    sys.exit(main())
