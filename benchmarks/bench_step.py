"""Time one training step of gradlab against a minimal hand-written NumPy loop.

The network: 20 tanh hidden layers of width 256, Xavier-normal init, softmax cross-entropy over
10 classes, plain SGD, batch 128, float64, on 32-feature blobs.

Sides (``--sides``, default all but ``stats``; minimal is always one), timed under one protocol (benchmarks/protocol.py): a
warm-up call of each, then ``--repeats`` rounds interleaved in alternating order, medians with the
per-repeat range, ratios as medians of the per-repeat ratios, BLAS on ``--threads`` threads (default 1).

* logged: ``gradlab.train.setup`` + ``gradlab.train.fit`` with a ``RunWriter`` observer writing the
  run folder (metrics.csv, grad_norms.csv, layer_stats.csv) to a temporary directory at every step
  (``log.every: 1``), exactly as ``gradlab.train`` does.
* unlogged: no writer and ``log.every`` set to the run length, so only the first and last steps
  compute their statistics (the least logging gradlab does). logged - unlogged is what logging costs.
* stats: the per-step statistics computed, no CSV written.
* minimal: forward x @ W + b and tanh, softmax cross-entropy, backward, SGD update; nothing else. It
  starts from gradlab's initial weights and draws the same batches.
* lean: the minimal loop computing the quantities gradlab logs at every step, the plain way (every
  tensor's gradient and weight norm, the global norm, each layer's activation mean, std, saturated
  fraction and ||dL/d output||), and writing them as gradlab's three CSV files, one write per file and step.

Each side's time is its own clock around its step loop (fit's wall_time for gradlab; set-up and
the closing evaluation excluded on every side) divided by the steps.
Compared (any mismatch exits 1): every call of every side reaches the same last loss as the minimal
loop's (relative 1e-9), and the lean loop's three CSV files are gradlab's byte for byte (but for
metrics.csv's time column). Timings are printed, never asserted.

    python benchmarks/bench_step.py                    # the README's figures
    python benchmarks/bench_step.py --quick            # a tiny net, 1 repeat: does it run?

On a 2-core machine shared with other work, a 2-thread OpenBLAS spins against the other load and
single repeats then differ by 2x, which drowns the ratio: hence one BLAS thread by default.
"""
from __future__ import annotations

import argparse
import sys

import protocol

SIDES = ("logged", "unlogged", "stats", "lean", "minimal")
LOSS_TOL = 1e-9
TARGET = 1.1  # logged gradlab / minimal (and / lean)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per timed call (default 200)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 7; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every side first (default 1)")
    p.add_argument("--sides", default="logged,unlogged,lean,minimal",
                   help=f"comma-separated, of {', '.join(SIDES)} (default logged,unlogged,lean,minimal)")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1; 0 = the library's default)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter (default); cpu: the process's CPU time (time.process_time) on "
                        "every side, so time spent waiting for a core on a busy machine does not count")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--quick", action="store_true", help="depth 2, width 16, batch 8, 5 steps, 1 repeat: a smoke run")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="also write a cProfile of one logged gradlab fit() to FILE (not timed)")
    args = p.parse_args(argv)
    protocol.settle_sides(p, args, SIDES)
    if args.quick:
        args.depth, args.width, args.batch, args.steps = 2, 16, 8, 5
    protocol.settle_repeats(p, args, 7)
    return args


if __name__ == "__main__":  # BLAS reads its thread count when numpy loads: pin it first
    protocol.pin_blas_env(parse_args().threads)

import csv  # noqa: E402
import io  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import fields  # noqa: E402

import numpy as np  # noqa: E402

import gradlab  # noqa: E402
from gradlab.records import LayerStat, ParamStat, StepRecord  # noqa: E402
from gradlab.train import setup  # noqa: E402


def make_config(args: argparse.Namespace, out: str, every: int = 1):
    return gradlab.config_from_dict({
        "name": "bench",
        "seed": 0,
        "data": {"kind": "blobs", "n_samples": 4096, "n_features": 32, "n_classes": 10,
                 "noise": 1.0, "val_fraction": 0.0},
        "model": {"depth": args.depth, "width": args.width, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": args.batch, "steps": args.steps,
                  "dtype": "float64"},
        "log": {"every": every, "val_every": 10, "out": out},
    })


# --------------------------------------------------------------------------- gradlab

def run_gradlab(config, write: bool, out: str) -> tuple[float, float]:
    """(seconds per step, last loss) of ``fit``'s step loop; set-up and the final metrics are not timed."""
    return protocol.fit_timed(config, write, out, recurrent=False)


# --------------------------------------------------------------------------- minimal

def run_minimal(config, steps: int, log_to: str | None = None) -> tuple[float, float]:
    """The same net, data, init and batches, as a bare NumPy loop. (seconds per step, last loss).

    With ``log_to`` (a folder) it also computes, at every step, the quantities gradlab logs (every tensor's
    gradient and weight norm, the global norm, each layer's activation mean, std, saturated fraction and
    ||dL/d output||) and writes them as gradlab's three CSV files, one write per file and step: the
    minimal loop computing the same logged quantities."""
    s = setup(config)  # only for identical data, initial weights and batch generator
    X, y = s.data.X_train, s.data.y_train
    L = s.model.depth + 1
    Ws = [s.model.params[f"dense{l}.W"].copy() for l in range(1, L + 1)]
    bs = [s.model.params[f"dense{l}.b"].copy() for l in range(1, L + 1)]
    lr = config.train.lr
    batch = config.train.batch_size
    n = len(X)
    rng = s.batch_rng
    order, start, epoch = rng.permutation(n), 0, 0
    J = float("nan")
    log = Log(log_to, L) if log_to else None

    t0 = time.perf_counter()
    for step in range(steps):
        if start >= n:
            order, start, epoch = rng.permutation(n), 0, epoch + 1
        idx = order[start:start + batch]
        start += batch
        xb, yb = X[idx], y[idx]
        # forward
        hs = [xb]
        h = xb
        for l in range(L - 1):
            h = h @ Ws[l]
            h += bs[l]
            h = np.tanh(h)
            hs.append(h)
        z = h @ Ws[-1]
        z += bs[-1]
        if log:
            log.forward(hs, z, Ws, bs)
        # softmax cross-entropy
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rows = np.arange(len(yb))
        J = float(-logp[rows, yb].mean())
        g = np.exp(logp)
        g[rows, yb] -= 1.0
        g /= len(yb)
        if log:
            log.delta(L - 1, g)
            log.accuracy(z, yb)
        # backward + SGD
        for l in range(L - 1, -1, -1):
            gW = hs[l].T @ g
            gb = g.sum(axis=0)
            if log:
                log.grads(l, gW, gb)
            if l:
                g = g @ Ws[l].T
                if log:
                    log.delta(l - 1, g)
                g *= 1.0 - hs[l] * hs[l]
            dW, db = lr * gW, lr * gb
            if log:
                log.updates(l, dW, db)
            Ws[l] -= dW
            bs[l] -= db
        if log:
            log.write(step, epoch, time.perf_counter() - t0, J, lr)
    elapsed = time.perf_counter() - t0
    if log:
        log.close()
    return elapsed / steps, J


def digits(x: float) -> str:
    """A float as gradlab's CSV files write it: 10 significant digits, 1.0 not 1."""
    s = f"{x:.10g}"
    return s if "." in s or "e" in s or "n" in s else s + ".0"


def l2(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    return float(np.sqrt(np.dot(flat, flat)))


class Log:
    """What gradlab logs at a step, computed the plain way, and written as its CSV files."""

    SATURATED = np.sqrt(0.95)  # tanh' = 1 - a^2 < 5% of its maximum

    def __init__(self, folder: str, L: int) -> None:
        os.makedirs(folder, exist_ok=True)
        self.L = L
        self.files = {name: os.open(os.path.join(folder, f"{name}.csv"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                      for name in ("metrics", "grad_norms", "layer_stats")}
        self.emit("metrics", [StepRecord.METRICS])
        self.emit("grad_norms", [["step", "epoch", *(f.name for f in fields(ParamStat))]])
        self.emit("layer_stats", [["step", *(f.name for f in fields(LayerStat))]])
        self.deltas, self.g, self.w, self.u = [0.0] * L, [0.0] * 2 * L, [0.0] * 2 * L, [0.0] * 2 * L

    def emit(self, name: str, rows: list) -> None:
        text = io.StringIO()
        csv.writer(text).writerows([[digits(v) if v.__class__ is float else v for v in row] for row in rows])
        os.write(self.files[name], text.getvalue().encode())

    def forward(self, hs, z, Ws, bs) -> None:
        self.acts = []
        for a in (*hs[1:], z):
            a = a.reshape(-1)
            mean = float(a.sum()) / a.size
            d = a - mean
            self.acts.append((mean, float(np.sqrt(np.dot(d, d) / a.size))))
        self.sat = [float(np.count_nonzero(np.abs(h) > self.SATURATED) / h.size) for h in hs[1:]] + [None]
        self.w = [l2(p) for pair in zip(Ws, bs) for p in pair]

    def delta(self, l: int, g: np.ndarray) -> None:
        self.deltas[l] = l2(g)

    def grads(self, l: int, gW: np.ndarray, gb: np.ndarray) -> None:
        self.g[2 * l], self.g[2 * l + 1] = l2(gW), l2(gb)

    def updates(self, l: int, dW: np.ndarray, db: np.ndarray) -> None:
        self.u[2 * l], self.u[2 * l + 1] = l2(dW), l2(db)

    def accuracy(self, z: np.ndarray, yb: np.ndarray) -> None:
        self.acc = int(np.count_nonzero(z.argmax(axis=1) == yb)) / len(yb)

    def write(self, step: int, epoch: int, t: float, J: float, lr: float) -> None:
        total = math.hypot(*self.g)
        self.emit("metrics", [[step, epoch, t, J, self.acc, total, total, 0, lr, math.hypot(*self.u), None, None]])
        self.emit("grad_norms", [[step, epoch, k // 2 + 1, f"dense{k // 2 + 1}.{'Wb'[k % 2]}", self.g[k], self.w[k],
                                  self.u[k]] for k in range(2 * self.L)])
        self.emit("layer_stats", [[step, l + 1, *self.acts[l], self.sat[l], None, self.deltas[l]] for l in range(self.L)])

    def close(self) -> None:
        for fd in self.files.values():
            os.close(fd)


# --------------------------------------------------------------------------- main

def sides(args: argparse.Namespace, tmp: str) -> list[protocol.Side]:
    logged, stats = make_config(args, tmp), make_config(args, tmp)
    unlogged = make_config(args, tmp, every=args.steps)
    run = {"logged": lambda: run_gradlab(logged, True, tmp),
           "unlogged": lambda: run_gradlab(unlogged, False, tmp),
           "stats": lambda: run_gradlab(stats, False, tmp),
           "lean": lambda: run_minimal(logged, args.steps, os.path.join(tmp, "lean")),
           "minimal": lambda: run_minimal(logged, args.steps)}
    return [protocol.Side(name, run[name]) for name in args.sides]


LABELS = {"logged": "gradlab, CSV logging every step", "unlogged": "gradlab, no logging (statistics at 2 steps)",
          "stats": "gradlab, statistics every step, no CSV", "minimal": "minimal NumPy loop",
          "lean": "minimal NumPy loop computing and writing the same logged quantities"}


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = protocol.pin_threads(args.threads)
    wall = time.perf_counter
    if args.clock == "cpu":  # every side's clock, gradlab's fit included, reads time.perf_counter
        time.perf_counter = time.process_time
        threads += "; clock: CPU time of the process (time.process_time) on every side"
    try:
        return measure(args, threads)
    finally:
        time.perf_counter = wall


def measure(args: argparse.Namespace, threads: str) -> int:
    protocol.header(f"gradlab one training step: depth {args.depth}, width {args.width}, batch {args.batch}, float64, "
                    f"tanh, xavier_normal, sgd; {args.steps} steps per call; sides {', '.join(args.sides)}",
                    threads, args.repeats, args.warmup)
    v = protocol.Verdicts()
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        def show(r: int, name: str, s: float) -> None:
            print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:8s} {s * 1e3:8.3f} ms/step", flush=True)

        t = protocol.interleave(sides(args, tmp), args.repeats, args.warmup, show)

        ref = t["minimal"].all_results[0]
        for name, timings in t.items():
            losses = timings.all_results
            off = [j for j in losses if not abs(j - ref) <= LOSS_TOL * abs(ref)]
            whose = "the minimal loop's first" if name == "minimal" else "the minimal loop's"
            v.expect(not off, f"{name}: the last loss of {len(losses) - len(off)} of {len(losses)} calls is {whose}, "
                              f"{ref:.12g} (relative {LOSS_TOL:g}){'; got ' + repr(off[0]) if off else ''}")
        if "lean" in t and "logged" in t:
            same_csv(v, os.path.join(tmp, "lean"), sorted(p for p in os.listdir(tmp) if p.startswith("bench-"))[-1], tmp)

        print()
        for name, timings in t.items():
            print(f"{LABELS[name]}: {timings.spread.text('.3f', 1e3, ' ms')} per step")
        for name in t:
            if name != "minimal":
                r = protocol.ratio(t[name], t["minimal"])
                print(f"ratio {name} / minimal, per repeat: {r.text('.3f', unit='x')}")
        if "lean" in t and "logged" in t:
            print(f"ratio logged / lean, per repeat: {protocol.ratio(t['logged'], t['lean']).text('.3f', unit='x')}")
        print(summary(args, t))
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            run_gradlab(make_config(args, tmp), True, tmp)
            prof.disable()
            prof.dump_stats(args.profile)
            print(f"profile of one logged gradlab fit() written to {args.profile}")
    print(protocol.load_line("end"))
    return v.exit_code()


def same_csv(v: protocol.Verdicts, lean: str, run: str, tmp: str) -> None:
    """The lean loop's CSV files are gradlab's, byte for byte: it computes the same logged quantities."""
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv"):
        with open(os.path.join(lean, name), "rb") as a, open(os.path.join(tmp, run, name), "rb") as b:
            ours, theirs = untimed(a.read()), untimed(b.read())
        rows = len(theirs.splitlines()) - 1
        v.expect(ours == theirs, f"lean: {name} is gradlab's byte for byte ({rows} rows)")


def untimed(csv_bytes: bytes) -> bytes:
    """A CSV file without its ``time`` column, if it has one (the seconds since the start differ by side)."""
    rows = [line.split(b",") for line in csv_bytes.splitlines()]
    if b"time" not in rows[0]:
        return csv_bytes
    at = rows[0].index(b"time")
    return b"\n".join(b",".join(r[:at] + r[at + 1:]) for r in rows)


def summary(args: argparse.Namespace, t: dict) -> str:
    """The lines that read like the README's sentences."""
    m = t["minimal"]
    lines = []
    for name in ("logged", "stats", "unlogged", "lean"):
        if name in t:
            r = protocol.ratio(t[name], m)
            lines.append(f"summary ({name}): {t[name].spread.median * 1e3:.1f} ms per step against "
                         f"{m.spread.median * 1e3:.1f} ms, a ratio of **{r.median:.2f}x** (per-repeat range "
                         f"{r.span(unit='x')} over {len(r.values)} repeats"
                         f"{f'; target at most {TARGET}x' if name == 'logged' else ''})")
    if "logged" in t and "lean" in t:
        r = protocol.ratio(t["logged"], t["lean"])
        lines.append(f"summary (logged / lean): {t['logged'].spread.median * 1e3:.1f} ms per step against "
                     f"{t['lean'].spread.median * 1e3:.1f} ms for the minimal loop computing and writing the same "
                     f"logged quantities, a ratio of **{r.median:.2f}x** (per-repeat range {r.span(unit='x')}; "
                     f"target at most {TARGET}x)")
    if "logged" in t and "unlogged" in t:
        d = protocol.difference(t["logged"], t["unlogged"])
        lines.append(f"summary (logging): logging costs about {d.median * 1e3:.1f} ms of that (per repeat "
                     f"{d.span('.1f', 1e3, ' ms')}): activation statistics, weight norms and the CSV rows")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
