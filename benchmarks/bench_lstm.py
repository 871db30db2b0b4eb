"""Time one LSTM training step of gradlab against a minimal NumPy LSTM and torch.nn.LSTM.

The network: one LSTM layer of 128 units on the adding problem (T = 100, 2 features), a dense read-out
at the last step, MSE, Adam 3e-3 without clipping, batch 64, float64, forget-gate bias 1, Xavier-normal
W, orthogonal U.

Sides (``--sides``), timed under one protocol (benchmarks/protocol.py): a warm-up call of each, then
``--repeats`` rounds interleaved in alternating order, medians with the per-repeat range, ratios as
medians of the per-repeat ratios, BLAS and torch on ``--threads`` threads (default 1).

* logged: ``gradlab.train.setup`` + ``fit`` with a ``RunWriter`` writing the run folder (metrics.csv,
  grad_norms.csv, layer_stats.csv, time_grad_norms.csv with its T rows a step, gate_stats.csv) to a
  temporary directory at every step (``log.every: 1``), exactly as ``gradlab train`` does.
* sparse: no writer and ``log.every: 1000``: of the steps of a call only the first and the last compute
  their statistics (the least logging gradlab does).
* minimal: a NumPy LSTM with one fused gate matrix, as one would write it by hand: the input term of
  every step in one product, per step z = xW_t + h U, sigma = 1 / (1 + e^-z) and tanh, states kept
  in arrays over all steps; BPTT, dW and dU as one tall product each, Adam. Nothing logged. It
  starts from gradlab's initial weights and draws the same batches.
* torch: ``torch.nn.LSTM`` + ``torch.nn.Linear`` in float64 with the same weights (gates reordered to
  torch's i, f, g, o), batches and Adam, ``loss.backward()``; skipped when torch is not installed.

Each side's time is its own clock around its step loop, divided by the steps. Compared (any mismatch
exits 1): every call of gradlab and of the minimal loop reaches the minimal loop's last loss to
relative 1e-9, torch to 1e-7 (its own summation order, compounded over the Adam steps). Timings are
printed, never asserted; so is the peak RSS of the process.

    python benchmarks/bench_lstm.py                    # the README's figures
    python benchmarks/bench_lstm.py --hidden 32        # configs/lstm_adding.yaml's width
    python benchmarks/bench_lstm.py --quick            # a tiny net, 1 repeat: does it run?
"""
from __future__ import annotations

import argparse
import sys

import protocol

SIDES = ("logged", "sparse", "minimal", "torch")
LOSS_TOL = {"logged": 1e-9, "sparse": 1e-9, "minimal": 1e-9, "torch": 1e-7}
TARGET = 1.15  # logged gradlab / minimal


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="training steps per timed call (default 20)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every side first (default 1)")
    p.add_argument("--sides", default=",".join(SIDES),
                   help=f"comma-separated, of {', '.join(SIDES)}, with minimal (default all; torch only if installed)")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1; 0 = the libraries' default)")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--quick", action="store_true", help="hidden 8, T 10, batch 4, 3 steps, 1 repeat: a smoke run")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="also write a cProfile of one logged gradlab fit() to FILE (not timed)")
    args = p.parse_args(argv)
    protocol.settle_sides(p, args, SIDES)
    if args.quick:
        args.hidden, args.T, args.batch, args.steps = 8, 10, 4, 3
    protocol.settle_repeats(p, args, 5)
    return args


if __name__ == "__main__":  # BLAS reads its thread count when numpy loads: pin it first
    protocol.pin_blas_env(parse_args().threads)

import resource  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import gradlab  # noqa: E402
from gradlab.train import setup  # noqa: E402


def make_config(args: argparse.Namespace, out: str, every: int = 1):
    return gradlab.config_from_dict({
        "name": "bench-lstm",
        "seed": 0,
        "data": {"kind": "adding", "T": args.T, "n_samples": max(16 * args.batch, 256), "val_fraction": 0.0},
        "model": {"kind": "rnn", "cell": "lstm", "hidden": args.hidden, "forget_bias": 1.0,
                  "init": "xavier_normal", "recurrent_init": "orthogonal"},
        "loss": "mse",
        "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": args.batch, "steps": args.steps, "dtype": "float64"},
        "log": {"every": every, "out": out},
    })


# --------------------------------------------------------------------------- gradlab

def run_gradlab(config, write: bool, out: str) -> tuple[float, float]:
    """(seconds per step, last loss) of ``fit``'s step loop; set-up and the final metrics are not timed."""
    return protocol.fit_timed(config, write, out, recurrent=True)


# --------------------------------------------------------------------------- shared by the other sides

def start(config):
    """gradlab's data, initial weights (fused W, U, b of the LSTM; the read-out) and batch generator."""
    s = setup(config)
    lstm = s.model.layers[0].modules[0]
    weights = [lstm.W.copy(), lstm.U.copy(), lstm.b.copy(),
               s.model.params["dense2.W"].copy(), s.model.params["dense2.b"].copy()]
    return s.data.X_train, s.data.y_train, weights, s.batch_rng


def batch_indices(n: int, batch: int, rng):
    """gradlab's batches: a new permutation every epoch, consecutive slices of it."""
    while True:
        order = rng.permutation(n)
        for i in range(0, n, batch):
            yield order[i:i + batch]


# --------------------------------------------------------------------------- minimal

def run_minimal(config, steps: int) -> tuple[float, float]:
    """(seconds per step, last loss) of a bare NumPy LSTM: forward, BPTT, Adam."""
    X, Y, P, rng = start(config)
    W, U, b, Wd, bd = P
    N, T, D = config.train.batch_size, X.shape[1], X.shape[2]
    H = U.shape[0]
    lr, b1, b2, eps = config.train.lr, 0.9, 0.999, 1e-8
    m = [np.zeros_like(p) for p in P]
    v = [np.zeros_like(p) for p in P]
    batches = batch_indices(len(X), N, rng)
    J = float("nan")

    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        idx = next(batches)
        x, y = X[idx], Y[idx]
        n = len(idx)
        # forward: every step's input term at once, time-major
        xs = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * n, D)
        A = (xs @ W + b).reshape(T, n, 4 * H)  # pre-activations, then gate values i, f, o, g
        hs = np.zeros((T + 1, n, H))
        cs = np.zeros((T + 1, n, H))
        tcs = np.empty((T, n, H))
        for t in range(T):
            z = A[t]
            z += hs[t] @ U
            z[:, :3 * H] = 1.0 / (1.0 + np.exp(-z[:, :3 * H]))
            z[:, 3 * H:] = np.tanh(z[:, 3 * H:])
            i, f, o, g = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            cs[t + 1] = f * cs[t] + i * g
            tcs[t] = np.tanh(cs[t + 1])
            hs[t + 1] = o * tcs[t]
        out = hs[T] @ Wd + bd
        diff = out - y
        J = float(np.sum(diff * diff) / n)
        # backward
        dout = 2.0 * diff / n
        dWd, dbd = hs[T].T @ dout, dout.sum(axis=0)
        dh, dc = dout @ Wd.T, np.zeros((n, H))
        dz = np.empty_like(A)
        for t in range(T - 1, -1, -1):
            z, tc = A[t], tcs[t]
            i, f, o, g = z[:, :H], z[:, H:2 * H], z[:, 2 * H:3 * H], z[:, 3 * H:]
            dc = dc + dh * o * (1.0 - tc * tc)
            dz[t, :, :H] = dc * g * i * (1.0 - i)
            dz[t, :, H:2 * H] = dc * cs[t] * f * (1.0 - f)
            dz[t, :, 2 * H:3 * H] = dh * tc * o * (1.0 - o)
            dz[t, :, 3 * H:] = dc * i * (1.0 - g * g)
            dh = dz[t] @ U.T
            dc = dc * f
        flat = dz.reshape(T * n, 4 * H)
        grads = [xs.T @ flat, hs[:T].reshape(T * n, H).T @ flat, flat.sum(axis=0), dWd, dbd]
        # Adam, as gradlab (and PyTorch) write it
        a = lr / (1 - b1**step)
        root = np.sqrt(1 - b2**step)
        for p, g, m_, v_ in zip(P, grads, m, v):
            m_ *= b1
            m_ += (1 - b1) * g
            v_ *= b2
            v_ += (1 - b2) * (g * g)
            p -= a * m_ / (np.sqrt(v_) / root + eps)
    return (time.perf_counter() - t0) / steps, J


# --------------------------------------------------------------------------- torch

def run_torch(config, steps: int, torch) -> tuple[float, float]:
    """(seconds per step, last loss) of torch.nn.LSTM + Linear, float64, the same weights, batches and Adam."""
    X, Y, P, rng = start(config)
    W, U, b, Wd, bd = P
    H = U.shape[0]
    to_torch = np.r_[0:2 * H, 3 * H:4 * H, 2 * H:3 * H]  # our i, f, o, g -> torch's i, f, g, o
    lstm = torch.nn.LSTM(X.shape[2], H, batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(H, Y.shape[1], dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(W[:, to_torch].T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(U[:, to_torch].T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b[to_torch].copy()))
        lstm.bias_hh_l0.zero_()
        head.weight.copy_(torch.from_numpy(Wd.T.copy()))
        head.bias.copy_(torch.from_numpy(bd.copy()))
    lstm.bias_hh_l0.requires_grad_(False)  # one bias per gate, as gradlab's b: a second would double its steps
    params = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, *head.parameters()]
    opt = torch.optim.Adam(params, lr=config.train.lr, betas=(0.9, 0.999), eps=1e-8)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    batches = batch_indices(len(X), config.train.batch_size, rng)
    J = float("nan")

    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.from_numpy(next(batches))
        x, y = Xt[idx], Yt[idx]
        out, _ = lstm(x)
        diff = head(out[:, -1]) - y
        loss = (diff * diff).sum() / len(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        J = float(loss.detach())
    return (time.perf_counter() - t0) / steps, J


# --------------------------------------------------------------------------- main

def load_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def sides(args: argparse.Namespace, tmp: str, torch) -> list[protocol.Side]:
    logged, sparse = make_config(args, tmp), make_config(args, tmp, every=1000)
    run = {"logged": lambda: run_gradlab(logged, True, tmp),
           "sparse": lambda: run_gradlab(sparse, False, tmp),
           "minimal": lambda: run_minimal(logged, args.steps),
           "torch": lambda: run_torch(logged, args.steps, torch)}
    return [protocol.Side(name, run[name]) for name in args.sides if name != "torch" or torch is not None]


LABELS = {"logged": "gradlab, CSV logging every step", "sparse": "gradlab, logging every 1000 steps",
          "minimal": "minimal NumPy LSTM", "torch": "torch.nn.LSTM"}


def peak_rss_mb() -> float:
    """The process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = protocol.pin_threads(args.threads)
    torch = load_torch() if "torch" in args.sides else None
    if torch is not None:
        threads += "; " + protocol.pin_torch(torch, args.threads)
    protocol.header(f"gradlab LSTM training step: T {args.T}, hidden {args.hidden}, batch {args.batch}, float64, "
                    f"adam, no clipping; {args.steps} steps per call; sides {', '.join(args.sides)}"
                    f"{' (torch not installed: skipped)' if 'torch' in args.sides and torch is None else ''}",
                    threads, args.repeats, args.warmup)
    v = protocol.Verdicts()
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        def show(r: int, name: str, s: float) -> None:
            print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:8s} {s * 1e3:9.3f} ms/step", flush=True)

        t = protocol.interleave(sides(args, tmp, torch), args.repeats, args.warmup, show)

        ref = t["minimal"].all_results[0]
        for name, timings in t.items():
            losses, tol = timings.all_results, LOSS_TOL[name]
            off = [j for j in losses if not abs(j - ref) <= tol * abs(ref)]
            whose = "the minimal loop's first" if name == "minimal" else "the minimal loop's"
            v.expect(not off, f"{name}: the last loss of {len(losses) - len(off)} of {len(losses)} calls is {whose}, "
                              f"{ref:.12g} (relative {tol:g}){'; got ' + repr(off[0]) if off else ''}")
        print()
        for name, timings in t.items():
            print(f"{LABELS[name]}: {timings.spread.text('.2f', 1e3, ' ms')} per step")
        print(summary(t))
        if args.profile:
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            run_gradlab(make_config(args, tmp), True, tmp)
            prof.disable()
            prof.dump_stats(args.profile)
            print(f"profile of one logged gradlab fit() written to {args.profile}")
    print(f"peak RSS of this process: {peak_rss_mb():.0f} MB")
    print(protocol.load_line("end"))
    return v.exit_code()


def summary(t: dict) -> str:
    """The ratios, as the README quotes them."""
    m, lines = t["minimal"], []
    for name in ("logged", "sparse"):
        if name in t:
            r = protocol.ratio(t[name], m)
            lines.append(f"summary ({name}): {t[name].spread.median * 1e3:.1f} ms per step against the minimal loop's "
                         f"{m.spread.median * 1e3:.1f} ms, **{r.median:.2f}x** (per repeat {r.span(unit='x')}"
                         f"{f'; target at most {TARGET}x' if name == 'logged' else ''})")
        if name in t and "torch" in t:
            r = protocol.ratio(t[name], t["torch"])
            lines.append(f"summary ({name} / torch): {t[name].spread.median * 1e3:.1f} ms against torch.nn.LSTM's "
                         f"{t['torch'].spread.median * 1e3:.1f} ms, **{r.median:.2f}x** (per repeat {r.span(unit='x')})")
    if "torch" in t:
        r = protocol.ratio(t["torch"], m)
        lines.append(f"summary (torch / minimal): **{r.median:.2f}x** (per repeat {r.span(unit='x')})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
