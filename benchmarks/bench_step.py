"""Time one training step of gradlab against a minimal hand-written NumPy loop.

The network: 20 tanh hidden layers of width 256, Xavier-normal init, softmax
cross-entropy over 10 classes, plain SGD, batch 128, float64, on 32-feature blobs.

* gradlab: ``gradlab.train.setup`` + ``gradlab.train.fit`` with a ``RunWriter``
  observer writing the run folder (metrics.csv, grad_norms.csv, layer_stats.csv) to a
  temporary directory at every step (``log.every: 1``), exactly as ``gradlab.train``
  does. ``--no-log`` drops the writer and sets ``log.every`` to the run length, so only
  the first and last steps compute their statistics (the least logging gradlab does);
  ``--no-writer`` keeps the per-step statistics but writes no CSV.
* minimal: forward x @ W + b and tanh, softmax cross-entropy, backward, SGD update;
  nothing else. It starts from gradlab's initial weights and draws the same batches,
  so both compute the same losses (checked once before timing).

Repeats are interleaved (gradlab, minimal, minimal, gradlab, ...), the first round is
a warm-up, and the figures are medians. Timings are never asserted: exit status 0.

    python benchmarks/bench_step.py [--steps 200] [--repeats 7] [--no-log] [--threads N]

BLAS runs on one thread unless ``--threads`` says otherwise (0 = the library's default):
on a 2-core machine shared with other work, a 2-thread OpenBLAS spins against the other
load and single repeats then differ by 2x, which drowns the ratio.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=200, help="training steps per timed repeat (default 200)")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats of each, interleaved (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds first (default 1)")
    p.add_argument("--no-log", action="store_true",
                   help="gradlab without the CSV writer and with log.every = steps (stats at 2 steps only)")
    p.add_argument("--no-writer", action="store_true",
                   help="gradlab computing its per-step statistics but writing no CSV")
    p.add_argument("--threads", type=int, default=1,
                   help="BLAS threads, set through OPENBLAS/OMP/MKL_NUM_THREADS (default 1; 0 = leave as is)")
    p.add_argument("--depth", type=int, default=20)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="also write a cProfile of one gradlab fit() to FILE (not timed)")
    return p.parse_args(argv)


ARGS = parse_args()
if ARGS.threads:  # must happen before numpy loads its BLAS
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)

import math  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import gradlab  # noqa: E402
from gradlab.logging import RunWriter  # noqa: E402
from gradlab.train import fit, new_run_dir, setup  # noqa: E402

TARGET = 1.2  # gradlab / minimal, logging included


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

def run_gradlab(config, log: bool, out: str) -> tuple[float, float]:
    """(seconds per step, last loss) of ``fit``'s step loop; setup and the final metrics are not timed."""
    s = setup(config)
    observers, writer = [], None
    if log:  # what gradlab.train does with write=True
        run_dir = new_run_dir(out, config.name)
        writer = RunWriter(run_dir)
        writer.write_config(config.resolved())
        observers.append(writer)
    try:
        result = fit(s, observers)
    finally:
        if writer is not None:
            writer.close()
    assert result.status == "completed", result.status
    # fit's own clock: the step loop only (it stops before the closing full-data evaluation)
    return result.wall_time / result.steps, result.last.loss


# --------------------------------------------------------------------------- minimal

def run_minimal(config, steps: int) -> tuple[float, float]:
    """The same net, data, init and batches, as a bare NumPy loop. (seconds per step, last loss)."""
    s = setup(config)  # only for identical data, initial weights and batch generator
    X, y = s.data.X_train, s.data.y_train
    L = s.model.depth + 1
    Ws = [s.model.params[f"dense{l}.W"].copy() for l in range(1, L + 1)]
    bs = [s.model.params[f"dense{l}.b"].copy() for l in range(1, L + 1)]
    lr = config.train.lr
    batch = config.train.batch_size
    n = len(X)
    rng = s.batch_rng
    order, start = rng.permutation(n), 0
    J = float("nan")

    t0 = time.perf_counter()
    for _ in range(steps):
        if start >= n:
            order, start = rng.permutation(n), 0
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
        # softmax cross-entropy
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        rows = np.arange(len(yb))
        J = float(-logp[rows, yb].mean())
        g = np.exp(logp)
        g[rows, yb] -= 1.0
        g /= len(yb)
        # backward + SGD
        for l in range(L - 1, -1, -1):
            gW = hs[l].T @ g
            gb = g.sum(axis=0)
            if l:
                g = g @ Ws[l].T
                g *= 1.0 - hs[l] * hs[l]
            Ws[l] -= lr * gW
            bs[l] -= lr * gb
    elapsed = time.perf_counter() - t0
    return elapsed / steps, J


# --------------------------------------------------------------------------- main

def main() -> int:
    args = ARGS
    log = not (args.no_log or args.no_writer)
    mode = ("OFF (--no-log: no writer, statistics at the first and last step only)" if args.no_log else
            "stats only (--no-writer: per-step statistics, no CSV)" if args.no_writer else
            "ON (RunWriter, every step)")
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        config = make_config(args, tmp, every=args.steps if args.no_log else 1)
        threads = os.environ.get("OPENBLAS_NUM_THREADS", "library default")
        print(f"gradlab one training step: depth {args.depth}, width {args.width}, batch {args.batch}, float64, "
              f"tanh, xavier_normal, sgd; {args.steps} steps x {args.repeats} repeats, interleaved, medians; "
              f"logging {mode}; BLAS threads {threads}")

        # correctness: both loops compute the same losses from the same start
        _, j_grad = run_gradlab(config, log, tmp)
        _, j_min = run_minimal(config, args.steps)
        same = math.isclose(j_grad, j_min, rel_tol=1e-9, abs_tol=1e-12)
        print(f"check: last loss gradlab {j_grad:.12g}, minimal {j_min:.12g} -> {'same' if same else 'DIFFERENT'}")

        for _ in range(max(args.warmup - 1, 0)):
            run_gradlab(config, log, tmp)
            run_minimal(config, args.steps)

        t_grad, t_min, ratios = [], [], []
        for r in range(args.repeats):
            # alternate the order so drift in machine load hits both alike
            if r % 2 == 0:
                tg, _ = run_gradlab(config, log, tmp)
                tm, _ = run_minimal(config, args.steps)
            else:
                tm, _ = run_minimal(config, args.steps)
                tg, _ = run_gradlab(config, log, tmp)
            t_grad.append(tg)
            t_min.append(tm)
            ratios.append(tg / tm)
            print(f"  repeat {r + 1:2d}: gradlab {tg * 1e3:7.3f} ms/step   minimal {tm * 1e3:7.3f} ms/step   "
                  f"ratio {tg / tm:5.3f}")

        mg, mm = statistics.median(t_grad), statistics.median(t_min)
        print(f"median gradlab: {mg * 1e3:.3f} ms/step (min {min(t_grad) * 1e3:.3f})")
        print(f"median minimal: {mm * 1e3:.3f} ms/step (min {min(t_min) * 1e3:.3f})")
        print(f"median of per-repeat ratios: {statistics.median(ratios):.3f}x "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")
        what = " without logging" if args.no_log else " without the CSV writer" if args.no_writer else ""
        print(f"ratio gradlab/minimal{what}: {mg / mm:.2f}x (target <= {TARGET}x)")
        if max(ratios) > 1.5 * min(ratios):
            print("note: the per-repeat ratios spread widely; the machine is busy (try more --repeats)")

        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            run_gradlab(config, log, tmp)
            prof.disable()
            prof.dump_stats(args.profile)
            print(f"profile of one gradlab fit() written to {args.profile}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
