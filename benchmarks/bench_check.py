"""Time gradlab's gradient check against a plain per-entry NumPy loop and torch.autograd.gradcheck.

The network (defaults): 10 tanh hidden layers of width 64, Xavier init, softmax cross-entropy over
10 classes, 32 input features, batch 32, float64: 40,202 parameters. ``--activation relu`` gives it
kinks (gradlab checks it by columns, and entry by entry only the entries whose step crosses a kink),
``--batchnorm`` puts batch norm before every hidden activation (the samples are coupled: gradlab chains
each layer's own differences). ``--lstm`` checks configs/lstm_adding.yaml as shipped (mode auto, as
``gradlab check`` does) against a plain LSTM written out in NumPy, differenced entry by entry on the
entries gradlab checks end to end: the plain loop runs ``--plain-entries`` of them (default 120) and its
time is extrapolated to all of them (the output says so).

Three sides, timed under one protocol (benchmarks/protocol.py): a warm-up call of each, then
``--repeats`` rounds interleaved in alternating order, medians with the per-repeat range, ratios as
medians of the per-repeat ratios, BLAS and torch on ``--threads`` threads (default 1).

* gradlab: ``gradlab.check`` in ``--mode`` full (every entry of every tensor and of the input, end
  to end, plus every module alone) or directional (``check.directions`` random directions per
  tensor); centred differences with eps 1e-7; the whole call, set-up included.
* plain loop: the same net written out in NumPy; in mode full, for every parameter entry, two full
  forward passes (the textbook loop); in mode directional, two per random direction, as many
  directions per tensor as gradlab takes. ``--plain-entries K`` times the first K/tensors entries of
  each tensor and extrapolates per entry.
* torch: the same net and weights in torch, ``torch.autograd.gradcheck`` (``fast_mode`` in mode
  directional), if torch is installed; skipped, saying why, when it is not or with ``--no-torch``.

Compared between the sides (any mismatch exits 1): the loss at the checked weights (all three);
gradlab's check passes; the plain loop's centred differences against gradlab's for the same entries
(mode full), or against the directional derivative of gradlab's analytic gradient (mode directional);
torch's autograd gradient against gradlab's analytic one; torch's gradcheck passes on a net without
kinks. Timings are printed, never asserted.

    python benchmarks/bench_check.py                       # the README's figures for the tanh net
    python benchmarks/bench_check.py --mode directional
    python benchmarks/bench_check.py --activation relu
    python benchmarks/bench_check.py --batchnorm
    python benchmarks/bench_check.py --lstm
    python benchmarks/bench_check.py --quick               # a tiny net, 1 repeat: does it run?
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import protocol

EPS = 1e-7  # the check's step, on every side
BN_EPS = 1e-5  # batch norm's variance floor, gradlab's default
LOSS_TOL = 1e-12  # the loss at the same weights, computed three ways
NUMERIC_TOL = 1e-6  # the same centred differences, computed two ways (round-off of J over eps apart)
ANALYTIC_TOL = 1e-10  # two backward passes of the same net


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=("full", "directional"), default="full", help="gradlab's check.mode")
    p.add_argument("--activation", choices=("tanh", "relu"), default="tanh")
    p.add_argument("--batchnorm", action="store_true", help="batch norm before every hidden activation")
    p.add_argument("--lstm", action="store_true", help="configs/lstm_adding.yaml as shipped, against a plain LSTM")
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 3; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls of every side first (default 1)")
    p.add_argument("--threads", type=int, default=1, help="BLAS and torch threads (default 1; 0 = library defaults)")
    p.add_argument("--plain-entries", type=int, default=None,
                   help="mode full: time the plain loop on about this many entries and extrapolate (default: all)")
    p.add_argument("--no-torch", action="store_true", help="leave torch out")
    p.add_argument("--quick", action="store_true", help="depth 2, width 8, batch 4, 1 repeat: a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.depth, args.width, args.batch = 2, 8, 4
    if args.lstm:
        args.no_torch = True
        if args.plain_entries is None:
            args.plain_entries = 120
    protocol.settle_repeats(p, args, 3)
    return args


if __name__ == "__main__":  # BLAS reads its thread count when numpy loads: pin it first
    protocol.pin_blas_env(parse_args().threads)

import numpy as np  # noqa: E402

import gradlab  # noqa: E402
from gradlab.check import prepare  # noqa: E402


def raw_config(args: argparse.Namespace) -> dict:
    return {
        "name": "bench_check", "seed": 0,
        "data": {"kind": "blobs", "n_samples": 256, "n_features": 32, "n_classes": 10, "val_fraction": 0.0},
        "model": {"depth": args.depth, "width": args.width, "activation": args.activation, "init": "xavier_normal",
                  "batchnorm": args.batchnorm},
        "loss": "cross_entropy",
        "check": {"batch": args.batch, "eps": EPS, "mode": args.mode},
    }


def rel(a, b) -> float:
    """||a - b|| / (||a|| + ||b||), 0 when both are zero."""
    a, b = np.ravel(np.asarray(a, dtype=np.float64)), np.ravel(np.asarray(b, dtype=np.float64))
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


# --------------------------------------------------------------------------- the net, written out

class Net:
    """The checked net as plain arrays (copies of gradlab's initial weights), its batch and its loss."""

    def __init__(self, params: dict, x: np.ndarray, y: np.ndarray, activation: str) -> None:
        self.p = {k: v.copy() for k, v in params.items()}
        self.x, self.y, self.activation = x, y, activation
        self.L = sum(1 for k in self.p if k.startswith("dense") and k.endswith(".W"))
        used = {f"dense{l}.{t}" for l in range(1, self.L + 1) for t in "Wb"} | \
               {f"bn{l}.{t}" for l in range(1, self.L) for t in ("gamma", "beta")}
        unknown = set(self.p) - used
        if unknown:  # the bench's own forward pass would silently ignore them
            raise SystemExit(f"bench_check does not model gradlab's tensors {sorted(unknown)}: update Net")
        # (W, b, gamma, beta) per layer, views of self.p: the loop below perturbs self.p in place
        self.layers = [tuple(self.p.get(k) for k in (f"dense{l}.W", f"dense{l}.b", f"bn{l}.gamma", f"bn{l}.beta"))
                       for l in range(1, self.L + 1)]

    def J(self) -> float:
        """Softmax cross-entropy, mean over the batch, of dense (+ batch norm) + activation layers."""
        h = self.x
        for l, (W, b, gamma, beta) in enumerate(self.layers, 1):
            h = h @ W
            if b is not None:
                h = h + b
            if l == self.L:
                break
            if gamma is not None:  # training mode: the batch's mean and (biased) variance
                h = gamma * (h - h.mean(axis=0)) / np.sqrt(h.var(axis=0) + BN_EPS) + beta
            h = np.tanh(h) if self.activation == "tanh" else np.maximum(h, 0.0)
        h = h - h.max(axis=1, keepdims=True)
        logp = h - np.log(np.exp(h).sum(axis=1, keepdims=True))
        return float(-logp[np.arange(len(self.y)), self.y].mean())


def plain_full(net: Net, budget: int | None) -> tuple[float, dict]:
    """(seconds, {tensor: (flat indices, centred differences)}) over every entry, or ``budget`` spread
    over the tensors; the seconds are extrapolated to every entry when only some were done."""
    total = sum(v.size for v in net.p.values())
    per_tensor = None if budget is None else max(1, budget // len(net.p))
    out, done = {}, 0
    t0 = time.perf_counter()
    for name, arr in net.p.items():
        flat = arr.reshape(-1)  # a view: writes go to the net's tensor
        n = flat.size if per_tensor is None else min(flat.size, per_tensor)
        numeric = np.empty(n)
        for i in range(n):
            old = flat[i]
            flat[i] = old + EPS
            plus = net.J()
            flat[i] = old - EPS
            minus = net.J()
            flat[i] = old
            numeric[i] = (plus - minus) / (2 * EPS)
        out[name] = (np.arange(n), numeric)
        done += n
    seconds = time.perf_counter() - t0
    return seconds / done * total, out


def directions(net: Net, n_dirs: int) -> dict:
    """Unit random directions per tensor, the same at every call."""
    rng = np.random.default_rng(0)
    out = {}
    for name, arr in net.p.items():
        v = rng.standard_normal((n_dirs,) + arr.shape)
        out[name] = v / np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
    return out


def plain_directional(net: Net, dirs: dict) -> dict:
    """{tensor: centred differences along each direction}, two full forward passes per direction."""
    out = {}
    for name, V in dirs.items():
        arr = net.p[name]
        old = arr.copy()
        numeric = np.empty(len(V))
        for k, v in enumerate(V):
            arr[...] = old + EPS * v
            plus = net.J()
            arr[...] = old - EPS * v
            minus = net.J()
            numeric[k] = (plus - minus) / (2 * EPS)
        arr[...] = old
        out[name] = numeric
    return out


# --------------------------------------------------------------------------- torch

def load_torch(args: argparse.Namespace):
    """torch, or None saying why not."""
    if args.no_torch:
        print("torch: left out (--no-torch)")
        return None
    try:
        import torch
    except ImportError:
        print("torch: not installed, skipped (pip install torch==2.13.0 to compare with torch.autograd.gradcheck)")
        return None
    print(protocol.pin_torch(torch, args.threads))
    return torch


class TorchNet:
    """The same net and weights in torch (float64)."""

    def __init__(self, torch, net: Net) -> None:
        self.torch, self.net = torch, net
        self.names = list(net.p)
        self.params = tuple(torch.tensor(net.p[k], requires_grad=True) for k in self.names)
        self.x, self.y = torch.tensor(net.x), torch.tensor(net.y)

    def J(self, *ps):
        torch, p, h = self.torch, dict(zip(self.names, ps)), self.x
        for l in range(1, self.net.L + 1):
            h = h @ p[f"dense{l}.W"]
            if f"dense{l}.b" in p:
                h = h + p[f"dense{l}.b"]
            if l == self.net.L:
                break
            if f"bn{l}.gamma" in p:
                mu, var = h.mean(dim=0), h.var(dim=0, unbiased=False)
                h = p[f"bn{l}.gamma"] * (h - mu) / torch.sqrt(var + BN_EPS) + p[f"bn{l}.beta"]
            h = torch.tanh(h) if self.net.activation == "tanh" else torch.relu(h)
        return torch.nn.functional.cross_entropy(h, self.y)

    def gradcheck(self, fast: bool) -> bool:
        return bool(self.torch.autograd.gradcheck(self.J, self.params, eps=EPS, atol=1e-5, rtol=1e-3,
                                                  raise_exception=False, fast_mode=fast))

    def grads(self) -> tuple[float, dict]:
        J = self.J(*self.params)
        gs = self.torch.autograd.grad(J, self.params)
        return J.detach().item(), {k: g.detach().numpy() for k, g in zip(self.names, gs)}


# --------------------------------------------------------------------------- comparisons

def gradlab_numeric(report) -> dict:
    """{tensor: (flat indices, centred differences)} of gradlab's whole-network check, without the entries
    whose step crossed a kink: gradlab differences those again at smaller steps, the plain loop does not."""
    return {b.param: (np.asarray(b.index)[~(b.kink | b.restepped)], np.asarray(b.numeric)[~(b.kink | b.restepped)])
            for b in report.blocks if b.param != "input"}


def full_error(ours: dict, plain: dict) -> tuple[float, int]:
    """(relative error, entries) of the plain loop's centred differences against gradlab's, same entries."""
    a, b = [], []
    for name, (idx, numeric) in plain.items():
        at = dict(zip(ours[name][0].tolist(), ours[name][1]))
        same = [k for k, i in enumerate(idx.tolist()) if i in at]
        a.append([at[i] for i in idx[same].tolist()])
        b.append(numeric[same])
    return rel(np.concatenate(a), np.concatenate(b)), sum(len(x) for x in b)


def directional_error(analytic: dict, dirs: dict, plain: dict) -> tuple[float, int]:
    """(relative error, directions) of the plain loop's directional differences against gradlab's
    analytic gradient along the same directions."""
    along = np.concatenate([np.tensordot(dirs[k], analytic[k], axes=analytic[k].ndim) for k in plain])
    return rel(along, np.concatenate(list(plain.values()))), len(along)


# --------------------------------------------------------------------------- main

def describe(args: argparse.Namespace, n: int) -> str:
    bn = " with batch norm" if args.batchnorm else ""
    return (f"depth {args.depth}, width {args.width}, {args.activation}{bn}, batch {args.batch}, float64: "
            f"{n:,} parameters; check mode {args.mode}, eps {EPS:g}")


def compare_before(v: protocol.Verdicts, net: Net, J: float, analytic: dict, tnet) -> None:
    """The loss at the checked weights on every side, and torch's backward pass against gradlab's."""
    losses = {"plain": net.J()}
    if tnet is not None:
        losses["torch"], g_torch = tnet.grads()
    for name, J_other in losses.items():
        v.expect(abs(J_other - J) <= LOSS_TOL * abs(J),
                 f"loss at the checked weights: gradlab {J:.15g}, {name} {J_other:.15g}")
    if tnet is None:
        return
    err = rel(np.concatenate([analytic[k].ravel() for k in net.p]),
              np.concatenate([g_torch[k].ravel() for k in net.p]))
    v.expect(err <= ANALYTIC_TOL, f"torch's autograd gradient against gradlab's backward pass: relative error "
                                  f"{err:.1e} (tolerance {ANALYTIC_TOL:g})")


def make_sides(args: argparse.Namespace, cfg, net: Net, dirs: dict | None, tnet) -> list[protocol.Side]:
    sides = [protocol.Side("gradlab", protocol.clocked(lambda: gradlab.check(cfg)))]
    if dirs is not None:
        sides.append(protocol.Side("plain", protocol.clocked(lambda: plain_directional(net, dirs))))
    else:
        sides.append(protocol.Side("plain", lambda: plain_full(net, args.plain_entries)))
    if tnet is not None:
        sides.append(protocol.Side("torch", protocol.clocked(lambda: tnet.gradcheck(dirs is not None))))
    return sides


def compare_after(v: protocol.Verdicts, t: dict, analytic: dict, dirs: dict | None, kinks: bool) -> None:
    """Every call's result: gradlab's verdict, the plain loop's differences, torch's verdict."""
    reports = t["gradlab"].all_results
    bad = [r for r in reports if not r.passed]
    crossed = sum(r.kinks for r in reports[0].tensors)
    v.expect(not bad, f"gradlab's check passed in {len(reports) - len(bad)} of {len(reports)} calls (overall relative "
                      f"error {reports[0].rel_error:.1e}, tier {reports[0].tier}; entries across a kink: {crossed})")
    calls = t["plain"].all_results
    if dirs is not None:
        errs = [directional_error(analytic, dirs, plain) for plain in calls]
        tol = 1e-4 if kinks else NUMERIC_TOL  # a direction moves every entry: now and then it crosses a kink
        what = "directional differences against gradlab's analytic gradient along the same"
        unit = "directions"
    else:
        errs = [full_error(gradlab_numeric(reports[0]), plain) for plain in calls]
        tol, what, unit = NUMERIC_TOL, "centred differences against gradlab's for the same", "entries (those at a kink left out)"
    worst = max(e for e, _ in errs)
    v.expect(worst <= tol, f"plain loop's {what} {errs[0][1]} {unit}, in each of {len(calls)} calls: relative "
                           f"error at most {worst:.1e} (tolerance {tol:g})")
    if "torch" not in t:
        return
    verdicts = t["torch"].all_results
    if kinks:  # torch grades every entry by one tolerance: an entry that crosses a kink fails it
        print(f"torch's gradcheck passed in {sum(verdicts)} of {len(verdicts)} calls (a net with kinks: torch has no "
              "kink handling, so its verdict is not compared)")
    else:
        v.expect(all(verdicts), f"torch's gradcheck passed in {sum(verdicts)} of {len(verdicts)} calls")


def show(r: int, name: str, s: float) -> None:
    print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name} {s:.3f} s", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = protocol.pin_threads(args.threads)
    if args.lstm:
        return main_lstm(args, threads)
    cfg = gradlab.config_from_dict(raw_config(args))
    cs = prepare(cfg)  # gradlab's own set-up at the checked weights: its analytic gradient and loss
    analytic = cs.objective.analytic()
    net = Net(cs.model.params, cs.objective.x, cs.objective.y, args.activation)
    n = sum(p.size for p in net.p.values())
    protocol.header(f"gradlab check: {describe(args, n)}", threads, args.repeats, args.warmup)
    torch = load_torch(args)
    tnet = TorchNet(torch, net) if torch else None
    v = protocol.Verdicts()
    compare_before(v, net, cs.objective.J, analytic, tnet)

    dirs = directions(net, cfg.check.directions) if args.mode == "directional" else None
    t = protocol.interleave(make_sides(args, cfg, net, dirs, tnet), args.repeats, args.warmup, show)
    compare_after(v, t, analytic, dirs, kinks=args.activation == "relu")
    print()
    print(results(args, t))
    print(summary(args, n, t))
    print(protocol.load_line("end"))
    return v.exit_code()


def results(args: argparse.Namespace, t: dict) -> str:
    """Every side's median, range and cold call, and the ratios to gradlab."""
    directional = args.mode == "directional"
    names = {"gradlab": f"gradlab check, {args.mode}",
             "plain": "plain directional NumPy loop" if directional else "plain per-entry NumPy loop",
             "torch": "torch.autograd.gradcheck" + (" (fast_mode)" if directional else "")}
    lines = []
    for name in t:
        ext = " (extrapolated)" if name == "plain" and args.plain_entries and not directional else ""
        lines.append(f"{names[name]}: {t[name].spread.text('.3f', unit=' s')}{ext}; {protocol.cold(t[name], '.3f')}")
    for name in t:
        if name != "gradlab":
            r = protocol.ratio(t[name], t["gradlab"])
            lines.append(f"ratio {name} / gradlab, per repeat: {r.text('.1f', unit='x')}")
    return "\n".join(lines)


def summary(args: argparse.Namespace, n: int, t: dict) -> str:
    """One line that reads like the README's sentence."""
    g = t["gradlab"]
    fmt = ".3f" if args.mode == "directional" else ".2f"
    how = "; ".join(x for x in (f"median of {len(g.times)} after {len(g.warmup)} warm-up call(s)",
                                g.spread.range_text(fmt, unit=" s"), protocol.cold(g, fmt)) if x)
    if args.mode == "directional":
        parts = [f"directional mode **{g.spread.median:{fmt}} s** ({how})"]
    else:
        what = ("the same net with ReLU (kinks: by columns)" if args.activation == "relu" else "the net") + \
               (" with batch norm" if args.batchnorm else "")
        parts = [f"gradlab full on {what}, {n:,} parameters: **{g.spread.median:{fmt}} s** ({how})"]
    names = {"plain": "the plain loop" if args.mode == "full" else "a plain loop over the same directions",
             "torch": "torch's gradcheck" + (" in fast mode" if args.mode == "directional" else "")}
    for name in ("plain", "torch"):
        if name in t:
            r = protocol.ratio(t[name], g)
            per = f"; per repeat {r.span('.1f', unit='x')}" if len(r.values) > 1 else ""
            parts.append(f"{names[name]} {t[name].spread.median:{fmt}} s (**{r.median:.1f}x**{per})")
    return "summary: " + ", ".join(parts)


# --------------------------------------------------------------------------- the LSTM of configs/lstm_adding.yaml

LSTM_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lstm_adding.yaml"
LSTM_QUICK = ["data.T=8", "data.n_samples=200", "model.hidden=4"]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


class PlainLSTM:
    """The checked LSTM as plain arrays: the gates' tensors (copies of gradlab's) side by side at every call
    (i, f, o, g), one step at a time, the last step through the dense head, the mean squared error."""

    def __init__(self, params: dict, x: np.ndarray, y: np.ndarray) -> None:
        self.p = {k: v.copy() for k, v in params.items()}
        self.p["input"] = x.copy()
        self.y = y
        self.cell = next(k.split(".")[0] for k in params if k.endswith(".U_f"))
        self.head = next(k.split(".")[0] for k in params if k.endswith(".W") and not k.startswith(self.cell))

    def fused(self, kind: str) -> np.ndarray:
        return np.concatenate([self.p[f"{self.cell}.{kind}_{g}"] for g in "ifog"], axis=-1)

    def J(self) -> float:
        W, U, b, x = self.fused("W"), self.fused("U"), self.fused("b"), self.p["input"]
        N, T, _ = x.shape
        H = U.shape[0]
        h, c = np.zeros((N, H)), np.zeros((N, H))
        for t in range(T):
            a = x[:, t] @ W + h @ U + b
            i, f, o, g = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), np.tanh(a[:, 3 * H:])
            c = f * c + i * g
            h = o * np.tanh(c)
        z = h @ self.p[f"{self.head}.W"] + self.p[f"{self.head}.b"]
        d = z - self.y.reshape(z.shape)
        return float(np.mean(np.sum(d * d, axis=1)))


def lstm_entries(report) -> dict:
    """{tensor: (flat indices, steps, numeric)} of gradlab's end-to-end check."""
    return {b.param: (np.asarray(b.index), np.asarray(b.step), np.asarray(b.numeric)) for b in report.blocks}


def plain_lstm(net: PlainLSTM, entries: dict, budget: int) -> tuple[float, dict]:
    """(seconds extrapolated to every entry gradlab checked, {tensor: (flat indices, numeric)}): centred
    differences at gradlab's steps, two full forward passes each, on about ``budget`` entries spread over the
    tensors."""
    total = sum(len(idx) for idx, _, _ in entries.values())
    per = max(1, budget // len(entries))
    out, done = {}, 0
    t0 = time.perf_counter()
    for name, (idx, steps, _) in entries.items():
        flat = net.p[name].reshape(-1)
        n = min(len(idx), per)
        numeric = np.empty(n)
        for k in range(n):
            i, h = idx[k], steps[k]
            old = flat[i]
            flat[i] = old + h
            plus = net.J()
            flat[i] = old - h
            minus = net.J()
            flat[i] = old
            numeric[k] = (plus - minus) / (2 * h)
        out[name] = (idx[:n], numeric)
        done += n
    return (time.perf_counter() - t0) / done * total, out


def main_lstm(args: argparse.Namespace, threads: str) -> int:
    cfg = gradlab.load_config(LSTM_CONFIG, LSTM_QUICK if args.quick else [])
    cs = prepare(cfg)
    obj = cs.objective
    net = PlainLSTM(cs.model.params, obj.x, obj.y)
    n = sum(p.size for p in cs.model.params.values())
    quick = " (--quick: T 8, hidden 4)" if args.quick else ""
    protocol.header(f"gradlab check: configs/lstm_adding.yaml{quick}, {n:,} parameters, batch {len(obj.x)} of "
                    f"{obj.x.shape[1]} steps, mode auto as shipped", threads, args.repeats, args.warmup)
    v = protocol.Verdicts()
    J = net.J()
    v.expect(abs(J - obj.J) <= LOSS_TOL * abs(obj.J), f"loss at the checked weights: gradlab {obj.J:.15g}, "
                                                        f"plain {J:.15g}")
    entries = lstm_entries(gradlab.check(cfg))
    checked = sum(len(i) for i, _, _ in entries.values())
    print(f"gradlab checks {checked} entries end to end (and every module alone); the plain loop runs about "
          f"{args.plain_entries} of them and its time is extrapolated to all {checked}")
    sides = [protocol.Side("gradlab", protocol.clocked(lambda: gradlab.check(cfg))),
             protocol.Side("plain", lambda: plain_lstm(net, entries, args.plain_entries))]
    t = protocol.interleave(sides, args.repeats, args.warmup, show)
    reports = t["gradlab"].all_results
    v.expect(all(r.passed for r in reports), f"gradlab's check passed in {sum(r.passed for r in reports)} of "
                                             f"{len(reports)} calls")
    ours = {k: (idx, numeric) for k, (idx, _, numeric) in entries.items()}
    errs = [full_error(ours, plain) for plain in t["plain"].all_results]
    worst = max(e for e, _ in errs)
    v.expect(worst <= NUMERIC_TOL, f"plain loop's centred differences against gradlab's for the same {errs[0][1]} "
                                   f"entries, in each of {len(errs)} calls: relative error at most {worst:.1e} "
                                   f"(tolerance {NUMERIC_TOL:g})")
    g, plain = t["gradlab"], t["plain"]
    r = protocol.ratio(plain, g)
    print()
    print(f"gradlab check (auto): {g.spread.text('.2f', unit=' s')}; {protocol.cold(g, '.2f')}")
    print(f"plain per-entry NumPy loop over the same {checked} entries (extrapolated from about "
          f"{args.plain_entries}): {plain.spread.text('.2f', unit=' s')}")
    print(f"ratio plain / gradlab, per repeat: {r.text('.1f', unit='x')}")
    print(f"summary: gradlab on configs/lstm_adding.yaml, {checked} entries end to end and every module alone: "
          f"**{g.spread.median:.2f} s** (median of {len(g.times)}); the plain loop over the same end-to-end entries "
          f"{plain.spread.median:.1f} s, extrapolated (**{r.median:.1f}x**)")
    print(protocol.load_line("end"))
    return v.exit_code()


if __name__ == "__main__":
    sys.exit(main())

