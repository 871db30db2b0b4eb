"""Mutation score of the optimizers, the training loop, the layers and the check's grading.

    python tests/mutation_score.py              # a fresh mutmut run (2 workers), then the score
    python tests/mutation_score.py -j 1         # one worker
    python tests/mutation_score.py --no-run     # the score of the last run, from mutants/

Runs mutmut (``pip install -e '.[mutation]'``; settings in pyproject.toml's [tool.mutmut]) from the
repository root on the mutants of TARGETS only, then prints killed/total per module and overall, and the
name of every mutant the tests did not kill (``mutmut show NAME`` prints its diff). A mutant killed by a
timeout counts as killed; one that no test reaches counts as a survivor. Not collected by pytest: its name
does not start with test_. docs/MUTATION.md has the last figures and the survivors judged equivalent.
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRADING = ("tier", "rel_error", "grade", "subgradient_ok", "resolution", "overall")
# mutmut names a mutant <module>.x_<function>__mutmut_<n>, or <module>.xǁ<Class>ǁ<method>__mutmut_<n>
TARGETS = ["gradlab.optim.*", "gradlab.train.*", "gradlab.nn.*"] + [
    f"gradlab.check.x_{f}__mutmut_*" for f in GRADING]
MUTATED = [ROOT / "gradlab" / "optim.py", ROOT / "gradlab" / "train.py", ROOT / "gradlab" / "check.py",
           *sorted((ROOT / "gradlab" / "nn").glob("*.py"))]
KILLED = {1, 3, 36, -24, 24, 152, 255}  # test failures, pytest internal errors, timeouts (mutmut's codes)
STATUS = {0: "survived", 5: "no tests", 33: "no tests", None: "not run"}


def run_mutmut(children: int, log: Path) -> float:
    """A fresh run: mutmut keeps an existing copy of a file under mutants/, so stale tests would stay."""
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    log.parent.mkdir()
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.call([sys.executable, "-m", "mutmut", "run", "--max-children", str(children), *TARGETS],
                               cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if code != 0:
        sys.exit(f"mutmut exited with {code}; its output is in {log.relative_to(ROOT)}")
    return wall


def results() -> dict[str, dict[str, int | None]]:
    """{module file: {mutant name: exit code}} of the targeted mutants, from mutmut's .meta files."""
    out = {}
    for path in MUTATED:
        meta = ROOT / "mutants" / path.relative_to(ROOT).with_suffix(".py.meta")
        if not meta.exists():
            continue
        codes = json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
        mine = {k: v for k, v in codes.items() if any(fnmatch.fnmatchcase(k, t) for t in TARGETS)}
        if mine:
            out[path.relative_to(ROOT).as_posix()] = mine
    return out


def equivalents() -> set[str]:
    """Mutant names that docs/MUTATION.md lists as equivalent (a table row starting with the name)."""
    doc = ROOT / "docs" / "MUTATION.md"
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    return set(re.findall(r"^\| `(gradlab\.[^`]+)`", text, flags=re.M))


def percent(killed: int, total: int) -> str:
    return f"{100 * killed / total:5.1f}%" if total else "    -"


def report(by_module: dict[str, dict[str, int | None]]) -> int:
    """Prints the table and the survivors; returns the number of targeted mutants not run."""
    width = max(map(len, by_module), default=10) + 2
    killed_all = total_all = 0
    survivors: list[tuple[str, str]] = []
    for module, codes in by_module.items():
        killed = sum(c in KILLED for c in codes.values())
        label = module + (" (grading)" if module.endswith("check.py") else "")
        print(f"{label:<{width + 10}} {killed:5d}/{len(codes):<5d} {percent(killed, len(codes))}")
        killed_all, total_all = killed_all + killed, total_all + len(codes)
        survivors += [(k, STATUS.get(c, f"exit {c}")) for k, c in codes.items() if c not in KILLED]
    print(f"{'overall':<{width + 10}} {killed_all:5d}/{total_all:<5d} {percent(killed_all, total_all)}")
    equivalent = equivalents()
    known = [name for name, _ in survivors if name in equivalent]
    if known:
        print(f"{'without the equivalent ones':<{width + 10}} {killed_all:5d}/{total_all - len(known):<5d} "
              f"{percent(killed_all, total_all - len(known))}")
    if survivors:
        print(f"\nnot killed ({', '.join(f'{n} {s}' for s, n in Counter(s for _, s in survivors).items())}; "
              f"{len(known)} listed as equivalent in docs/MUTATION.md):")
        for name, status in sorted(survivors):
            print(f"  {name}  [{status}{', equivalent' if name in equivalent else ''}]")
    return sum(s == "not run" for _, s in survivors)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-j", "--max-children", type=int, default=2, help="mutmut workers (default 2)")
    ap.add_argument("--no-run", action="store_true", help="only print the score of the last run")
    args = ap.parse_args()
    log = ROOT / "mutants" / "run.log"
    wall = None
    if not args.no_run:
        print(f"mutmut on {len(TARGETS)} patterns with {args.max_children} worker(s); progress in mutants/run.log",
              flush=True)
        wall = run_mutmut(args.max_children, log)
    by_module = results()
    if not by_module:
        sys.exit("no mutmut results under mutants/: run without --no-run first")
    not_run = report(by_module)
    if wall is not None:
        print(f"\nwall time of the mutmut run: {wall / 60:.1f} min")
    if not_run:
        print(f"{not_run} mutants not run (an interrupted run?)")


if __name__ == "__main__":
    main()
