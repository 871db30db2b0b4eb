"""Time a full gradient check of gradlab against a plain per-entry NumPy loop (and torch.autograd.gradcheck).

The network: 10 tanh hidden layers of width 64, Xavier init, softmax cross-entropy over
10 classes, 32 input features, batch 32, float64: 40,202 parameters.

* gradlab full: ``gradlab.check`` in mode full: every entry of every tensor and of the input,
  end to end, plus every module alone; centred differences with eps 1e-7. After one warm-up
  run, the median of ``--repeats`` runs.
* plain loop: for every parameter entry, two full forward passes of a hand-written NumPy net
  (the textbook loop of seed 000's steps 1-3). ``--plain-entries`` times a subset and
  extrapolates per entry, to keep the run short.
* torch: ``torch.autograd.gradcheck`` on the same net and weights, if torch is installed
  (skipped, saying so, when it is not).
* gradlab directional: ``check.mode: directional`` (4 random directions per tensor).

Timings are printed, never asserted: exit status 0.

    python benchmarks/bench_check.py [--plain-entries 4000] [--no-torch]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import gradlab
from gradlab.train import setup

RAW = {
    "name": "bench_check", "seed": 0,
    "data": {"kind": "blobs", "n_samples": 256, "n_features": 32, "n_classes": 10, "val_fraction": 0.0},
    "model": {"depth": 10, "width": 64, "activation": "tanh", "init": "xavier_normal"},
    "loss": "cross_entropy",
    "check": {"batch": 32, "eps": 1e-7, "mode": "full"},
}


def plain_loop(s, n_entries: int | None, eps: float = 1e-7) -> tuple[float, int, int]:
    """Seconds for a per-entry centred difference over n_entries (None: all), entries done, total."""
    layers = [(s.model.params[f"dense{l}.W"], s.model.params[f"dense{l}.b"]) for l in range(1, len(s.model.layers) + 1)]
    x, y = s.data.X_train[:32], s.data.y_train[:32]

    def J() -> float:
        h = x
        for i, (W, b) in enumerate(layers):
            h = h @ W + b
            if i < len(layers) - 1:
                h = np.tanh(h)
        h = h - h.max(axis=1, keepdims=True)
        logp = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
        return -logp[np.arange(len(y)), y].mean()

    flats = [p.reshape(-1) for pair in layers for p in pair]
    total = sum(f.size for f in flats)
    budget = total if n_entries is None else n_entries
    per_tensor = max(1, budget // len(flats))
    done = 0
    t0 = time.perf_counter()
    for flat in flats:
        for i in range(min(flat.size, per_tensor if n_entries else flat.size)):
            old = flat[i]
            flat[i] = old + eps
            plus = J()
            flat[i] = old - eps
            minus = J()
            flat[i] = old
            _ = (plus - minus) / (2 * eps)
            done += 1
    return time.perf_counter() - t0, done, total


def torch_gradcheck(s) -> float | None:
    try:
        import torch
    except ImportError:
        print("torch: not installed, skipped (pip install torch==2.13.0 to compare)")
        return None
    params = [torch.tensor(s.model.params[k], requires_grad=True) for k in s.model.params]
    x = torch.tensor(s.data.X_train[:32])
    y = torch.tensor(s.data.y_train[:32])

    def f(*ps):
        h = x
        for i in range(0, len(ps), 2):
            h = h @ ps[i] + ps[i + 1]
            if i < len(ps) - 2:
                h = torch.tanh(h)
        return torch.nn.functional.cross_entropy(h, y)

    t0 = time.perf_counter()
    ok = torch.autograd.gradcheck(f, tuple(params), eps=1e-7, atol=1e-5, rtol=1e-3)
    dt = time.perf_counter() - t0
    print(f"torch.autograd.gradcheck: {dt:.2f} s (passed: {ok})")
    return dt


def timed(run, repeats: int):
    """(median seconds, last result) over ``repeats`` calls."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plain-entries", type=int, default=None,
                   help="time the plain loop on this many entries and extrapolate (default: all)")
    p.add_argument("--no-torch", action="store_true")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each gradlab check (median)")
    args = p.parse_args()

    cfg = gradlab.config_from_dict(RAW)
    s = setup(cfg)
    n = sum(v.size for v in s.model.params.values())
    print(f"network: depth 10, width 64, tanh, batch 32, float64: {n} parameters")

    gradlab.check(cfg)  # warm-up: the first call pays for BLAS threads and page faults
    t_full, report = timed(lambda: gradlab.check(cfg), args.repeats)
    print(f"gradlab check, full: {t_full:.2f} s, median of {args.repeats} (passed: {report.passed}, "
          f"overall rel error {report.rel_error:.1e})")
    directional_cfg = gradlab.config_from_dict(RAW, ["check.mode=directional"])
    t_dir, directional = timed(lambda: gradlab.check(directional_cfg), args.repeats)
    print(f"gradlab check, directional: {t_dir:.3f} s (passed: {directional.passed}; target < 0.2 s)")

    t_plain, done, total = plain_loop(s, args.plain_entries)
    t_plain_all = t_plain / done * total
    note = "" if done == total else f" (extrapolated from {done} entries)"
    print(f"plain per-entry NumPy loop: {t_plain_all:.2f} s{note}")
    t_torch = None if args.no_torch else torch_gradcheck(s)

    print(f"ratio plain loop / gradlab full: {t_plain_all / t_full:.1f}x (target >= 5x)")
    if t_torch:
        print(f"ratio torch gradcheck / gradlab full: {t_torch / t_full:.1f}x")


if __name__ == "__main__":
    main()
