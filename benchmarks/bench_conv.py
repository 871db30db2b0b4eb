"""Time one conv-net training step of gradlab against a minimal im2col NumPy loop and torch.

The network (``model.kind: cnn``, channels [16], depth 7): 8 conv layers of 16 channels, 3x3, padding
same, ReLU, He-normal init, then global average pooling and a dense output layer; softmax
cross-entropy over the 3 classes of ``data.kind: shapes`` at 28x28x1, plain SGD, batch 64, float64.

Sides (``--sides``), timed under one protocol (benchmarks/protocol.py): a warm-up call of each, then
``--repeats`` rounds interleaved in alternating order, medians with the per-repeat range, ratios as
medians of the per-repeat ratios, BLAS and torch on ``--threads`` threads (default 1).

* logged: ``gradlab.train.setup`` + ``fit`` with a ``RunWriter`` writing the run folder (metrics.csv,
  grad_norms.csv, layer_stats.csv) at every step (``log.every: 1``), exactly as ``gradlab train`` does.
* unlogged: no writer and ``log.every`` the run's length: only the first and last steps compute their
  statistics (the least logging gradlab does).
* minimal: the same net by hand: im2col (a strided view of the zero-padded input, copied), one matrix
  product per layer, ReLU, global pooling, the dense layer, softmax cross-entropy; backward with two
  products and a scatter-add over the 9 kernel offsets per layer; SGD. Nothing logged. It starts from
  gradlab's initial weights and draws the same batches.
* lean: the flipped loop (below) also computing, at every step, what gradlab logs (every tensor's
  gradient, weight and update norm, the global norms, each layer's activation mean, std and dead
  fraction, ||dL/d output||, the batch accuracy) and writing gradlab's three CSV files, one write per
  file and step: logged / lean is the target's ratio.
* flipped: the minimal loop with dL/dx of each convolution computed as gradlab computes it where
  C_out <= 2 C_in, a convolution of dL/d out with the kernel flipped in space and transposed in its
  channels (one im2col and one product, no scatter-add): the same arithmetic as gradlab's.
* torch: ``torch.nn.functional`` conv2d, relu, mean, linear and cross_entropy in float64 (NCHW, the same
  weights as OIHW), ``loss.backward()``, the same SGD update; skipped when torch is not installed.

Each side's time is its own clock around its step loop, divided by the steps. Compared (any mismatch
exits 1): on the same weights and batch, gradlab's loss and every gradient equal the minimal loop's to
relative 1e-10 (torch's too, where installed); every call of every side reaches the minimal loop's last
loss (relative 1e-9; torch 1e-7); the lean loop's CSV files hold gradlab's rows and values (every number
to relative 1e-9; the time column left out). Printed, never asserted: the timings, and the peak RSS of
a short ``gradlab train`` of the same config, measured by bench_memory.py.

    python benchmarks/bench_conv.py --repeats 5 --steps 3 --clock cpu   # the README's figures (a busy machine)
    python benchmarks/bench_conv.py --quick            # 8x8 images, 4 channels, batch 4: does it run?
"""
from __future__ import annotations

import argparse
import sys

import protocol

SIDES = ("logged", "unlogged", "lean", "minimal", "flipped", "torch")
GRAD_TOL = 1e-10  # gradlab's loss and gradients against the minimal loop's, on the same weights
LOSS_TOL = {"logged": 1e-9, "unlogged": 1e-9, "lean": 1e-9, "minimal": 1e-9, "flipped": 1e-9, "torch": 1e-7}
TARGET = 1.2  # logged gradlab / lean (the minimal loop computing the same logged quantities)
CSV_TOL = 1e-9  # the lean loop's logged values against gradlab's


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="training steps per timed call (default 5)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every side first (default 1)")
    p.add_argument("--sides", default="logged,unlogged,lean,minimal,flipped,torch",
                   help=f"comma-separated, of {', '.join(SIDES)}, with minimal (default all; torch only if installed)")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1; 0 = the libraries' default)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall: time.perf_counter (default); cpu: the process's CPU time (time.process_time) on "
                        "every side, so time spent waiting for a core on a busy machine does not count")
    p.add_argument("--size", type=int, default=28, help="image height and width (default 28)")
    p.add_argument("--channels", type=int, default=16, help="channels of every conv layer (default 16)")
    p.add_argument("--convs", type=int, default=8, help="conv layers (default 8)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--memory-steps", type=int, default=3,
                   help="steps of the gradlab train run whose peak RSS is printed (0: leave it out)")
    p.add_argument("--quick", action="store_true",
                   help="8x8 images, 3 conv layers of 4 channels, batch 4, 3 steps, 1 repeat: a smoke run")
    p.add_argument("--profile", metavar="FILE", default=None,
                   help="also write a cProfile of one logged gradlab fit() to FILE (not timed)")
    args = p.parse_args(argv)
    protocol.settle_sides(p, args, SIDES)
    if args.convs < 2:
        p.error("--convs: at least 2")
    if args.quick:
        args.size, args.channels, args.convs, args.batch, args.steps = 8, 4, 3, 4, 3
        args.memory_steps = min(args.memory_steps, 1)
    protocol.settle_repeats(p, args, 5)
    return args


if __name__ == "__main__":  # BLAS reads its thread count when numpy loads: pin it first
    protocol.pin_blas_env(parse_args().threads)

import math  # noqa: E402
import os  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402

import bench_memory  # noqa: E402
import bench_step  # noqa: E402
import gradlab  # noqa: E402
from gradlab.train import setup  # noqa: E402


def config_dict(args: argparse.Namespace, out: str, every: int = 1) -> dict:
    return {
        "name": "bench-conv",
        "seed": 0,
        "data": {"kind": "shapes", "size": args.size, "channels": 1, "n_samples": 8 * args.batch,
                 "val_fraction": 0.0},
        "model": {"kind": "cnn", "channels": [args.channels], "depth": args.convs - 1, "kernel": 3,
                  "activation": "relu", "init": "he_normal", "head": "gap"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.01, "batch_size": args.batch, "steps": args.steps,
                  "dtype": "float64"},
        "log": {"every": every, "out": out},
    }


def make_config(args: argparse.Namespace, out: str, every: int = 1):
    return gradlab.config_from_dict(config_dict(args, out, every))


# --------------------------------------------------------------------------- gradlab

def run_gradlab(config, write: bool, out: str) -> tuple[float, float]:
    """(seconds per step, last loss) of ``fit``'s step loop; set-up and the final metrics are not timed."""
    return protocol.fit_timed(config, write, out, recurrent=False)


# --------------------------------------------------------------------------- shared by the other sides

def start(config):
    """gradlab's data, initial weights [(W, b) of conv1..convL, then the dense layer's], batch generator, and
    whether the global pooling starts the output layer (then the last conv layer's delta is of its image)."""
    s = setup(config)
    params = s.model.params
    names = [k[:-2] for k in params if k.endswith(".W")]
    pool_in_head = any(m.name.startswith("gap") for m in s.model.layers[-1].modules)
    return (s.data.X_train, s.data.y_train, [[params[f"{n}.W"].copy(), params[f"{n}.b"].copy()] for n in names],
            s.batch_rng, pool_in_head)


def batch_indices(n: int, batch: int, rng):
    """gradlab's batches: a new permutation every epoch, consecutive slices of it."""
    epoch = 0
    while True:
        order = rng.permutation(n)
        for i in range(0, n, batch):
            yield epoch, order[i:i + batch]
        epoch += 1


# --------------------------------------------------------------------------- minimal

def im2col(x: np.ndarray, k: int) -> np.ndarray:
    """(N * H * W, k * k * C): the k x k patch under every position of x (N, H, W, C), zero-padded 'same'."""
    n, h, w, c = x.shape
    p = (k - 1) // 2
    xp = np.zeros((n, h + 2 * p, w + 2 * p, c))
    xp[:, p:p + h, p:p + w] = x
    sn, sh, sw, sc = xp.strides
    view = as_strided(xp, (n, h, w, k, k, c), (sn, sh, sw, sh, sw, sc), writeable=False)
    return np.ascontiguousarray(view).reshape(n * h * w, k * k * c)


def col2im(dcols: np.ndarray, shape: tuple[int, ...], k: int) -> np.ndarray:
    """The adjoint of im2col: each patch entry's gradient added back to its pixel (a loop over the k*k offsets)."""
    n, h, w, c = shape
    p = (k - 1) // 2
    d = dcols.reshape(n, h, w, k, k, c)
    dxp = np.zeros((n, h + 2 * p, w + 2 * p, c))
    for i in range(k):
        for j in range(k):
            dxp[:, i:i + h, j:j + w] += d[:, :, :, i, j]
    return dxp[:, p:p + h, p:p + w]


def flipped(dz2: np.ndarray, shape: tuple[int, ...], W: np.ndarray) -> np.ndarray:
    """dL/dx of a stride-1 'same' convolution: dout convolved ('same') with W flipped in space, channels swapped."""
    k, _, c_in, c_out = W.shape
    Wf = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(k * k * c_out, c_in)
    return (im2col(dz2.reshape(shape[:-1] + (c_out,)), k) @ Wf).reshape(shape)


def forward_backward(P: list, x: np.ndarray, y: np.ndarray, log: "Log | None" = None,
                     flip: bool = False) -> tuple[float, list]:
    """Loss and gradients [(dW, db) per layer] of the net with weights P on the batch (x, y); dL/dx of each
    convolution by the scatter-add of col2im, or with ``flip`` by the flipped kernel."""
    L = len(P)
    hs, cols = [x], []
    h = x
    for W, b in P[:-1]:  # conv, ReLU
        k, _, c_in, c_out = W.shape
        n, H, Wd, _ = h.shape
        cols.append(im2col(h, k))
        z = cols[-1] @ W.reshape(k * k * c_in, c_out)
        z += b
        h = np.maximum(z, 0.0).reshape(n, H, Wd, c_out)
        hs.append(h)
    g = h.mean(axis=(1, 2))  # global average pooling
    Wo, bo = P[-1]
    z = g @ Wo + bo
    if log:
        log.forward(hs[1:], g, z, P)
    # softmax cross-entropy
    shifted = z - z.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(len(y))
    J = float(-logp[rows, y].mean())
    dz = np.exp(logp)
    dz[rows, y] -= 1.0
    dz /= len(y)
    if log:
        log.delta(L - 1, dz)
        log.accuracy(z, y)
    grads = [None] * L
    grads[-1] = [g.T @ dz, dz.sum(axis=0)]
    dg = dz @ Wo.T
    _, H, Wd, _ = hs[-1].shape
    dh = np.broadcast_to((dg * (1.0 / (H * Wd)))[:, None, None, :], hs[-1].shape)
    if log:  # the last conv layer's output: its image, where the pooling starts the output layer
        log.delta(L - 2, dh if log.pool_in_head else dg)
    for l in range(L - 2, -1, -1):
        W = P[l][0]
        k, _, c_in, c_out = W.shape
        dz2 = (dh * (hs[l + 1] > 0)).reshape(-1, c_out)
        grads[l] = [(cols[l].T @ dz2).reshape(W.shape), dz2.sum(axis=0)]
        if l:
            if flip and c_out <= 2 * c_in:  # where gradlab takes this way too
                dh = flipped(dz2, hs[l].shape, W)
            else:
                dh = col2im(dz2 @ W.reshape(k * k * c_in, c_out).T, hs[l].shape, k)
            if log:
                log.delta(l - 1, dh)
    return J, grads


def run_minimal(config, steps: int, log_to: str | None = None, flip: bool = False) -> tuple[float, float]:
    """(seconds per step, last loss) of the bare NumPy loop; with ``log_to`` (a folder) it also computes the
    quantities gradlab logs and writes them as gradlab's CSV files there (the lean side)."""
    X, Y, P, rng, pool_in_head = start(config)
    lr = config.train.lr
    batches = batch_indices(len(X), config.train.batch_size, rng)
    log = Log(log_to, len(P), pool_in_head) if log_to else None
    J = float("nan")

    t0 = time.perf_counter()
    for step in range(steps):
        epoch, idx = next(batches)
        J, grads = forward_backward(P, X[idx], Y[idx], log, flip)
        for l, (pair, gpair) in enumerate(zip(P, grads)):
            if log:
                log.grads(l, *gpair)
            for p, g in zip(pair, gpair):
                d = lr * g
                p -= d
                if log:
                    log.update(p, d)
        if log:
            log.write(step, epoch, time.perf_counter() - t0, J, lr)
    elapsed = time.perf_counter() - t0
    if log:
        log.close()
    return elapsed / steps, J


class Log(bench_step.Log):
    """What gradlab logs at a step of the conv net, computed the plain way, and written as its CSV files."""

    def __init__(self, folder: str, L: int, pool_in_head: bool) -> None:
        super().__init__(folder, L)
        self.pool_in_head = pool_in_head

    def forward(self, acts, pooled, z, P) -> None:
        self.acts, self.dead = [moments(a) for a in (*acts, z)], []
        for a in acts:  # a unit is a (position, channel): dead when zero on the whole batch
            alive = (a > 0).any(axis=0)
            self.dead.append(float(np.count_nonzero(~alive) / alive.size))
        self.dead.append(None)
        self.w = [bench_step.l2(p) for pair in P for p in pair]
        self.u = [0.0] * len(self.w)
        self.k = 0

    def grads(self, l: int, gW: np.ndarray, gb: np.ndarray) -> None:
        self.g[2 * l], self.g[2 * l + 1] = bench_step.l2(gW), bench_step.l2(gb)

    def update(self, p: np.ndarray, d: np.ndarray) -> None:
        self.u[self.k] = bench_step.l2(d)
        self.k += 1

    def write(self, step: int, epoch: int, t: float, J: float, lr: float) -> None:
        total = math.hypot(*self.g)
        L = self.L
        names = [f"conv{l}" for l in range(1, L)] + [f"dense{L}"]
        self.emit("metrics", [[step, epoch, t, J, self.acc, total, total, 0, lr, math.hypot(*self.u), None, None]])
        self.emit("grad_norms", [[step, epoch, k // 2 + 1, f"{names[k // 2]}.{'Wb'[k % 2]}", self.g[k], self.w[k],
                                  self.u[k]] for k in range(2 * L)])
        self.emit("layer_stats", [[step, l + 1, *self.acts[l], None, self.dead[l], self.deltas[l]] for l in range(L)])


def moments(a: np.ndarray) -> tuple[float, float]:
    """(mean, std) of all entries, centred first (as gradlab computes them)."""
    a = a.reshape(-1)
    mean = float(a.sum()) / a.size
    d = a - mean
    return mean, float(np.sqrt(np.dot(d, d) / a.size))


# --------------------------------------------------------------------------- torch

def run_torch(config, steps: int, torch) -> tuple[float, float]:
    """(seconds per step, last loss) of torch.nn.functional in float64 with the same weights, batches and SGD."""
    X, Y, P, rng, _ = start(config)
    params = torch_params(P, torch)
    Xt, Yt = torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2))), torch.from_numpy(Y)
    lr = config.train.lr
    batches = batch_indices(len(X), config.train.batch_size, rng)
    J = float("nan")

    t0 = time.perf_counter()
    for _ in range(steps):
        _, idx = next(batches)
        idx = torch.from_numpy(idx)
        loss = torch_loss(params, Xt[idx], Yt[idx], torch)
        for p in params:
            p.grad = None
        loss.backward()
        with torch.no_grad():
            for p in params:
                p -= lr * p.grad
        J = float(loss.detach())
    return (time.perf_counter() - t0) / steps, J


def torch_params(P: list, torch) -> list:
    """Our (k, k, C_in, C_out) kernels as torch's (C_out, C_in, k, k), then the dense W transposed, leaves."""
    out = []
    for W, b in P[:-1]:
        out += [torch.from_numpy(np.ascontiguousarray(W.transpose(3, 2, 0, 1))), torch.from_numpy(b.copy())]
    out += [torch.from_numpy(np.ascontiguousarray(P[-1][0].T)), torch.from_numpy(P[-1][1].copy())]
    return [p.requires_grad_(True) for p in out]


def torch_loss(params: list, x, y, torch):
    F = torch.nn.functional
    h = x
    for l in range(0, len(params) - 2, 2):
        W = params[l]
        h = F.relu(F.conv2d(h, W, params[l + 1], padding=(W.shape[-1] - 1) // 2))
    return F.cross_entropy(F.linear(h.mean(dim=(2, 3)), params[-2], params[-1]), y)


# --------------------------------------------------------------------------- the same weights, the same gradients

def same_gradients(v: protocol.Verdicts, config, torch) -> None:
    """gradlab's loss and gradients on its initial weights and first batch against the minimal loop's (and torch's)."""
    s = setup(config)
    _, idx = next(batch_indices(len(s.data.X_train), config.train.batch_size, s.batch_rng))
    x, y = s.data.X_train[idx], s.data.y_train[idx]
    J = s.model.loss_and_grads(x, y, s.loss, config.train.l2, train=True)
    names = [k for k in s.model.params]
    P = [[s.model.params[names[i]].copy(), s.model.params[names[i + 1]].copy()] for i in range(0, len(names), 2)]
    J_min, grads = forward_backward(P, x, y)
    theirs = {"minimal loop": (J_min, dict(zip(names, (g for pair in grads for g in pair))))}
    if torch is not None:
        params = torch_params(P, torch)
        loss = torch_loss(params, torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                          torch.from_numpy(y), torch)
        loss.backward()
        tg = [p.grad.numpy() for p in params]
        back = [g.transpose(2, 3, 1, 0) if g.ndim == 4 else g.T if g.ndim == 2 else g for g in tg]
        theirs["torch"] = (float(loss.detach()), dict(zip(names, back)))
    for who, (J_ref, ref) in theirs.items():
        dJ = abs(J - J_ref) / abs(J_ref)
        errs = {k: float(np.linalg.norm(s.model.grads[k] - ref[k]) / max(np.linalg.norm(ref[k]), 1e-300))
                for k in names}
        worst = max(errs, key=errs.get)
        v.expect(dJ <= GRAD_TOL and errs[worst] <= GRAD_TOL,
                 f"gradlab's loss and gradients against the {who}'s on the same weights and batch: loss "
                 f"{J:.12g}, relative difference {dJ:.1e}; {len(names)} gradients, the worst {worst} at "
                 f"{errs[worst]:.1e} relative (tolerance {GRAD_TOL:g})")


# --------------------------------------------------------------------------- peak memory

def peak_memory(args: argparse.Namespace, tmp: str) -> str | None:
    """The summary line of the peak RSS of ``gradlab train`` on this config, measured by bench_memory.py in a
    process of its own: a child's ru_maxrss starts from its parent's peak at the fork (Linux keeps it across
    exec), and this process holds every side's data, so the runs are started from a small Python."""
    import subprocess

    import yaml

    cfg = config_dict(args, str(Path(tmp) / "memory"))
    path = Path(tmp) / "bench_conv.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [sys.executable, str(Path(__file__).resolve().parent / "bench_memory.py"), "--config", str(path),
           "--steps", str(args.memory_steps), "--no-one-pass", "--threads", str(max(args.threads, 1))]
    done = subprocess.run(cmd, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    batched = [line for line in lines if line.startswith("batched") and "peak RSS " in line]
    for line in lines:
        if line.startswith(("batched", "the data:", "where the peak is", "summary:")):
            print(f"memory (bench_memory.py): {line}")
    if done.returncode != 0 or not batched:
        print(done.stdout[-2000:], done.stderr[-2000:])
        return None
    peak = float(batched[0].split("peak RSS ")[1].split(" MB")[0].replace(",", "")) * 1e6
    n, k, c, L = args.batch, 3, args.channels, args.convs
    rows = n * args.size * args.size
    cached = sum(rows * k * k * (1 if l == 0 else c) * 8 for l in range(L))
    return (f"summary (memory): peak RSS of gradlab train on this config (train.steps={args.memory_steps}, "
            f"{8 * args.batch} images) **{bench_memory.mb(peak)}**; the im2col matrices a training step keeps for "
            f"backward: {bench_memory.mb(cached)}")


# --------------------------------------------------------------------------- main

def same_csv(v: protocol.Verdicts, lean: str, run: str) -> None:
    """The lean loop's CSV files hold gradlab's values: the same rows and columns, every number to relative
    1e-9 (the loops sum in their own order: a last bit apart can round the 10th digit the other way)."""
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv"):
        with open(os.path.join(lean, name), "rb") as a, open(os.path.join(run, name), "rb") as b:
            ours, theirs = (bench_step.untimed(f.read()).decode().splitlines() for f in (a, b))
        cells = [(x, y) for r, q in zip(ours, theirs) for x, y in zip(r.split(","), q.split(","))]
        same = len(ours) == len(theirs) and all(len(r.split(",")) == len(q.split(",")) for r, q in zip(ours, theirs))
        same = same and all(x == y or close(x, y) for x, y in cells)
        v.expect(same, f"lean: {name} holds gradlab's values, every number to relative {CSV_TOL:g} "
                       f"({len(theirs) - 1} rows)")


def close(x: str, y: str) -> bool:
    try:
        a, b = float(x), float(y)
    except ValueError:
        return False
    return abs(a - b) <= CSV_TOL * max(abs(a), abs(b))


def load_torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def sides(args: argparse.Namespace, tmp: str, torch) -> list[protocol.Side]:
    logged = make_config(args, tmp)
    unlogged = make_config(args, tmp, every=args.steps)
    run = {"logged": lambda: run_gradlab(logged, True, tmp),
           "unlogged": lambda: run_gradlab(unlogged, False, tmp),
           "lean": lambda: run_minimal(logged, args.steps, os.path.join(tmp, "lean"), flip=True),
           "minimal": lambda: run_minimal(logged, args.steps),
           "flipped": lambda: run_minimal(logged, args.steps, flip=True),
           "torch": lambda: run_torch(logged, args.steps, torch)}
    return [protocol.Side(name, run[name]) for name in args.sides if name != "torch" or torch is not None]


LABELS = {"logged": "gradlab, CSV logging every step", "unlogged": "gradlab, no logging (statistics at 2 steps)",
          "minimal": "minimal im2col NumPy loop",
          "flipped": "minimal loop, dL/dx by the flipped kernel as gradlab",
          "lean": "minimal loop computing and writing the same logged quantities",
          "torch": "torch.nn.functional, one thread"}


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = protocol.pin_threads(args.threads)
    torch = load_torch() if "torch" in args.sides else None
    if torch is not None:
        threads += "; " + protocol.pin_torch(torch, args.threads)
    wall = time.perf_counter
    if args.clock == "cpu":  # every side's clock, gradlab's fit included, reads time.perf_counter
        time.perf_counter = time.process_time
        threads += "; clock: CPU time of the process (time.process_time) on every side"
    try:
        return measure(args, threads, torch)
    finally:
        time.perf_counter = wall


def measure(args: argparse.Namespace, threads: str, torch) -> int:
    protocol.header(f"gradlab conv-net training step: {args.convs} conv layers of {args.channels} channels (3x3, same, "
                    f"relu), gap, dense; {args.size}x{args.size}x1, batch {args.batch}, float64, sgd; {args.steps} "
                    f"steps per call; sides {', '.join(args.sides)}"
                    f"{' (torch not installed: skipped)' if 'torch' in args.sides and torch is None else ''}",
                    threads, args.repeats, args.warmup)
    v = protocol.Verdicts()
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        same_gradients(v, make_config(args, tmp), torch)

        def show(r: int, name: str, s: float) -> None:
            print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:8s} {s * 1e3:9.2f} ms/step", flush=True)

        t = protocol.interleave(sides(args, tmp, torch), args.repeats, args.warmup, show)

        ref = t["minimal"].all_results[0]
        for name, timings in t.items():
            losses, tol = timings.all_results, LOSS_TOL[name]
            off = [j for j in losses if not abs(j - ref) <= tol * abs(ref)]
            whose = "the minimal loop's first" if name == "minimal" else "the minimal loop's"
            v.expect(not off, f"{name}: the last loss of {len(losses) - len(off)} of {len(losses)} calls is {whose}, "
                              f"{ref:.12g} (relative {tol:g}){'; got ' + repr(off[0]) if off else ''}")
        if "lean" in t and "logged" in t:
            run = max(p for p in os.listdir(tmp) if p.startswith("bench-conv-"))
            same_csv(v, os.path.join(tmp, "lean"), os.path.join(tmp, run))
        memory = peak_memory(args, tmp) if args.memory_steps > 0 else None
        if args.memory_steps > 0:
            v.expect(memory is not None, "gradlab train of the same config completed (peak memory)")

        print()
        for name, timings in t.items():
            print(f"{LABELS[name]}: {timings.spread.text('.1f', 1e3, ' ms')} per step")
        print(summary(t))
        if memory:
            print(memory)
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


def summary(t: dict) -> str:
    """The ratios, as the README quotes them."""
    m, lines = t["minimal"], []
    for name, against in (("logged", "lean"), ("logged", "minimal"), ("unlogged", "minimal"), ("lean", "minimal"),
                          ("logged", "flipped"), ("unlogged", "flipped"), ("flipped", "minimal"),
                          ("torch", "minimal"), ("logged", "torch")):
        if name in t and against in t:
            r = protocol.ratio(t[name], t[against])
            target = f"; target at most {TARGET}x" if (name, against) == ("logged", "lean") else ""
            lines.append(f"summary ({name} / {against}): {t[name].spread.median * 1e3:.1f} ms per step against "
                         f"{t[against].spread.median * 1e3:.1f} ms, **{r.median:.2f}x** (per repeat "
                         f"{r.span(unit='x')}{target})")
    if "logged" in t and "unlogged" in t:
        d = protocol.difference(t["logged"], t["unlogged"])
        lines.append(f"summary (logging): logging costs gradlab about {d.median * 1e3:.1f} ms per step (per repeat "
                     f"{d.span('.1f', 1e3, ' ms')})")
    if "lean" in t:
        d = protocol.difference(t["lean"], m)
        lines.append(f"summary (logging, minimal loop): computing and writing the same quantities costs the minimal "
                     f"loop about {d.median * 1e3:.1f} ms per step (per repeat {d.span('.1f', 1e3, ' ms')})")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
