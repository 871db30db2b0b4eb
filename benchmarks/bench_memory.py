"""Peak memory of ``gradlab train`` on a config (default configs/lstm_adding.yaml: 10,000 sequences of 100
steps), beside the size of the data itself.

Each run is ``python -m gradlab train CONFIG --set train.steps=N`` in a subprocess of its own, and its peak
resident set size is the kernel's (``os.wait4``'s ru_maxrss for that child alone). Printed:

* batched: the command as it is, evaluation (validation loss, final metrics) in batches of
  ``gradlab.train.EVAL_BATCH`` samples;
* one pass: the same command with the whole set in one evaluation pass, as gradlab evaluated before
  (``--no-one-pass`` leaves it out; it needed 3.3 GB here);
* where the peak is: a third subprocess runs the batched training in-process with ``tracemalloc`` and
  prints the largest memory NumPy held during the training steps and during the evaluations (the data
  and the model excluded), so the figure says which of the two sets the peak;
* the data: the bytes of X and y (training and validation); and the peak RSS of a Python that only imports
  gradlab.train and gradlab.cli, for scale.

The runs must end alike (exit 1 otherwise): both "completed", with the same final validation loss to
1e-12 relative (batching only reorders a sum). Memory figures are printed, never asserted. The steps
are few (``--steps``, default 20): the peak of a training run is reached in its first steps and in its
evaluations, not later.

    python benchmarks/bench_memory.py                 # the README's figures
    python benchmarks/bench_memory.py --quick         # 640 sequences, 2 steps: does it run?
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import protocol

ROOT = Path(__file__).resolve().parent.parent
REL = 1e-12

ONE_PASS = ("import importlib, sys; loop = importlib.import_module('gradlab.train'); loop.EVAL_BATCH = 2**62; "
            "from gradlab.cli import main; sys.argv[0] = 'gradlab'; main()")

PROBE = r"""
import importlib, json, sys, tracemalloc
from gradlab.config import load_config
loop = importlib.import_module("gradlab.train")
s = loop.setup(load_config(sys.argv[1], sys.argv[2:]))
tracemalloc.start()
base = tracemalloc.get_traced_memory()[0]  # nothing of the data or the model counts
peaks = {"training steps": 0, "evaluation": 0}
evaluate = loop.evaluate

def settle(phase):  # the peak since the last call is the phase's
    peaks[phase] = max(peaks[phase], tracemalloc.get_traced_memory()[1] - base)
    tracemalloc.reset_peak()

def traced(*args, **kw):
    settle("training steps")
    try:
        return evaluate(*args, **kw)
    finally:
        settle("evaluation")

loop.evaluate = traced
result = loop.fit(s)
print(json.dumps({"status": result.status, **peaks,
                  "data": sum(a.nbytes for a in (s.data.X_train, s.data.y_train, s.data.X_val, s.data.y_val)),
                  "n_train": len(s.data.X_train), "n_val": len(s.data.X_val), "shape": list(s.data.X_train.shape),
                  "eval_batch": loop.EVAL_BATCH}))
"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "lstm_adding.yaml"))
    p.add_argument("--steps", type=int, default=None, help="training steps of each run (default 20; 2 with --quick)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides, as gradlab's --set")
    p.add_argument("--no-one-pass", dest="one_pass", action="store_false",
                   help="leave out the run that evaluates the whole set in one pass")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads of the runs (default 1)")
    p.add_argument("--quick", action="store_true", help="640 sequences, 2 steps: a smoke run")
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 2 if args.quick else 20
    if args.steps < 1:
        p.error("--steps: at least 1")
    if args.quick:
        args.set = ["data.n_samples=640", *args.set]
    return args


def peak_rss(cmd: list[str]) -> tuple[int, int, str]:
    """(exit status, peak RSS in bytes, output) of ``cmd``, the peak of that process alone (Linux: KiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    scale = 1 if sys.platform == "darwin" else 1024
    return proc.returncode, usage.ru_maxrss * scale, out


def train_cmd(args: argparse.Namespace, out: str, prefix: list[str]) -> list[str]:
    sets = [f"train.steps={args.steps}", f"log.out={out}", *args.set]
    return [*prefix, "train", args.config, *(x for s in sets for x in ("--set", s))]


def summary(out: str) -> dict:
    runs = sorted(Path(out).iterdir())
    return json.loads((runs[-1] / "summary.json").read_text()) if runs else {}


def mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads > 0:  # the runs read it when numpy loads
        os.environ.update({v: str(args.threads) for v in protocol.BLAS_VARS})
    print(f"peak memory of gradlab train {Path(args.config).name} --set train.steps={args.steps} "
          f"{' '.join('--set ' + s for s in args.set)}".rstrip())
    print(protocol.load_line("start"))
    print(f"BLAS threads of the runs: {args.threads or 'library default'} (environment)", flush=True)
    v = protocol.Verdicts()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-") as tmp:
        sides = {"batched": [sys.executable, "-m", "gradlab"]}
        if args.one_pass:
            sides["one pass"] = [sys.executable, "-c", ONE_PASS]
        for name, prefix in sides.items():
            out = str(Path(tmp) / name.replace(" ", "_"))
            code, peak, text = peak_rss(train_cmd(args, out, prefix))
            runs[name] = (code, peak, summary(out))
            print(f"{name:9s}: peak RSS {mb(peak)} (exit {code})", flush=True)
            if code != 0:
                print(text[-2000:])
        _, python_peak, _ = peak_rss([sys.executable, "-c", "import gradlab.train, gradlab.cli"])
        overrides = [f"train.steps={args.steps}", *args.set]
        code, _, text = peak_rss([sys.executable, "-c", PROBE, args.config, *overrides])
    probe = json.loads(text.strip().splitlines()[-1]) if code == 0 else None
    if probe is None:
        print(text[-2000:])
    v.expect(probe is not None, "the in-process probe ran")

    print()
    for name, (code, _, s) in runs.items():
        v.expect(code == 0 and s.get("status") == "completed", f"{name}: gradlab train completed")
    if len(runs) == 2 and all(r[2].get("final_val_loss") is not None for r in runs.values()):
        a, b = (r[2]["final_val_loss"] for r in runs.values())
        v.expect(abs(a - b) <= REL * abs(b), f"final validation loss batched {a!r}, one pass {b!r} (relative {REL:g})")
    if probe:
        n, T = probe["n_train"] + probe["n_val"], probe["shape"][1:]
        print(f"the data: {n:,} samples of shape {tuple(T)}, X and y {mb(probe['data'])}; "
              f"Python with gradlab.train and gradlab.cli imported: {mb(python_peak)}")
        where = max(("training steps", "evaluation"), key=probe.get)
        print(f"where the peak is (tracemalloc, NumPy memory beyond the data and the model): training steps "
              f"{mb(probe['training steps'])}, evaluation in batches of {probe['eval_batch']} "
              f"{mb(probe['evaluation'])}: the peak is in the {where}")
        peak = runs["batched"][1]
        line = (f"summary: peak RSS **{mb(peak)}** with evaluation in batches "
                f"({peak / probe['data']:.0f}x the data, {mb(peak - python_peak)} beyond Python with gradlab)")
        if "one pass" in runs:
            line += f", against {mb(runs['one pass'][1])} evaluating the whole set in one pass"
        print(line)
    print(protocol.load_line("end"))
    return v.exit_code()


if __name__ == "__main__":
    sys.exit(main())
