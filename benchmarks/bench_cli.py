"""Start-up: how long the user waits for the gradlab command, timed as whole processes.

Sides, each a fresh process started from this one (wall time from start to exit):

* ``python -c pass``: the interpreter alone, the floor no command goes below;
* ``typer app --help``: a two-command typer app printing its help, the floor of any command line built
  on typer with rich help (gradlab's help is typer's);
* ``gradlab --help``, ``gradlab train --help``;
* ``gradlab check configs/quickstart.yaml --mode directional``: a whole command that computes (the check
  itself takes some 0.05 s).

The protocol is benchmarks/protocol.py's: a warm-up run of every side (it also writes the bytecode caches:
PYTHONDONTWRITEBYTECODE is removed from the children's environment, as a user's shell has it), then the
repeats interleaved in alternating order; medians with the per-repeat range, and each side's time over the
bare interpreter's, repeat by repeat. Every run of a side must end as the first did (exit status and the
first line it printed), else the script exits 1. ``--quick``: each side once, no warm-up.

``--baseline DIR`` also times ``gradlab --help`` and the check of another version of gradlab, a source tree in
DIR (``git archive OLD | tar -x -C DIR``), run as ``python -m gradlab`` from DIR, and prints this version's time
over that one's, repeat by repeat: on a busy machine the ratio says more than either time.

    python benchmarks/bench_cli.py [--repeats 11] [--baseline DIR] [--quick]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import protocol

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
TARGETS = {"gradlab --help": 0.3, "gradlab check --mode directional": 0.5}  # seconds, whole process
TYPER_APP = '''import typer
app = typer.Typer(add_completion=False)
@app.command()
def one(x: int = 1):
    """One."""
@app.command()
def two(y: str = "a"):
    """Two."""
app()
'''


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds of every side, interleaved (default 11; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs of every side first (default 1; 0 with --quick)")
    p.add_argument("--quick", action="store_true", help="each side once, no warm-up: a smoke run")
    p.add_argument("--baseline", metavar="DIR", default=None,
                   help="a source tree of another gradlab version to time beside this one")
    args = p.parse_args(argv)
    if args.baseline and not (Path(args.baseline) / "gradlab" / "__init__.py").is_file():
        p.error(f"--baseline {args.baseline}: no gradlab/__init__.py there")
    protocol.settle_repeats(p, args, 11)
    if args.warmup is None:
        args.warmup = 0 if args.quick else 1
    return args


def gradlab_command() -> list[str]:
    """The installed ``gradlab`` script beside this interpreter, else ``python -m gradlab``."""
    script = Path(sys.executable).parent / "gradlab"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gradlab"]


def side(name: str, argv: list[str], env: dict, cwd: Path = ROOT) -> protocol.Side:
    """A process as a side: its wall time, and (exit status, first line printed) as its result."""
    def run() -> tuple[float, tuple[int, str]]:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - t0
        first = next((line.strip() for line in proc.stdout.splitlines() if line.strip()), "")
        return seconds, (proc.returncode, first)
    return protocol.Side(name, run)


def sides(tmp: str, baseline: str | None = None) -> list[protocol.Side]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["COLUMNS"] = "100"  # the same help layout whatever the terminal
    app = Path(tmp) / "typer_app.py"
    app.write_text(TYPER_APP, encoding="utf-8")
    gradlab = gradlab_command()
    out = [side("python -c pass", [sys.executable, "-c", "pass"], env),
           side("typer app --help", [sys.executable, str(app), "--help"], env),
           side("gradlab --help", [*gradlab, "--help"], env),
           side("gradlab train --help", [*gradlab, "train", "--help"], env),
           side("gradlab check --mode directional", [*gradlab, "check", str(QUICKSTART), "--mode", "directional"],
                env)]
    if baseline:  # python -m gradlab from DIR imports DIR/gradlab (the current folder comes first)
        old = [sys.executable, "-m", "gradlab"]
        out += [side("baseline gradlab --help", [*old, "--help"], env, Path(baseline)),
                side("baseline gradlab check --mode directional",
                     [*old, "check", str(QUICKSTART), "--mode", "directional"], env, Path(baseline))]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    protocol.header("gradlab start-up: whole processes, wall time from start to exit",
                    f"command: {' '.join(gradlab_command())}; bytecode caches used (PYTHONDONTWRITEBYTECODE "
                    "removed from the children's environment)", args.repeats, args.warmup)
    v = protocol.Verdicts()
    with tempfile.TemporaryDirectory(prefix="gradlab-bench-cli-") as tmp:
        def show(r: int, name: str, s: float) -> None:
            print(f"  {'warm-up' if r == 0 else f'repeat {r}'}: {name:43s} {s:.3f} s", flush=True)

        t = protocol.interleave(sides(tmp, args.baseline), args.repeats, args.warmup, show)
    for name, timings in t.items():
        results = timings.all_results
        code, first = results[0]
        v.expect(code == 0 and all(r == results[0] for r in results),
                 f"{name}: exit {code} every run ({len(results)}), first line {first[:60]!r}")
    print()
    floor = t["python -c pass"]
    for name, timings in t.items():
        over = "" if name == "python -c pass" else \
            f"; over the bare interpreter {protocol.difference(timings, floor).text('.3f', unit=' s')}"
        target = f"; target <= {TARGETS[name]:g} s" if name in TARGETS else ""
        print(f"{name}: {timings.spread.text('.3f', unit=' s')}{over}{target}")
    for name in ("gradlab --help", "gradlab check --mode directional"):
        if f"baseline {name}" in t:
            r = protocol.ratio(t[name], t[f"baseline {name}"])
            print(f"{name}: this version / the baseline ({args.baseline}), per repeat: {r.text('.2f', unit='x')}")
    print(protocol.load_line("end"))
    return v.exit_code()


if __name__ == "__main__":
    sys.exit(main())
