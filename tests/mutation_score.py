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
    f"gradlab.check.grading.x_{f}__mutmut_*" for f in GRADING]
MUTATED = [ROOT / "gradlab" / "optim.py", ROOT / "gradlab" / "train.py", ROOT / "gradlab" / "check" / "grading.py",
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
        # the mutmut script, not python -m mutmut: its worker processes re-import mutmut.__main__
        mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or "mutmut"
        code = subprocess.call([mutmut, "run", "--max-children", str(children), *TARGETS],
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
    """Prints the table and the survivors; returns the number of targeted mutants not run.

    The score is killed / run: an interrupted run still gives each module's figure over what it ran."""
    width = max(map(len, by_module), default=10) + 12
    print(f"{'module':<{width}} {'killed':>6} {'survived':>8} {'not run':>7} {'mutants':>7}  score")
    sums = Counter()
    survivors: list[tuple[str, str]] = []
    for module, codes in by_module.items():
        killed = sum(c in KILLED for c in codes.values())
        not_run = sum(c is None for c in codes.values())
        row = Counter(killed=killed, survived=len(codes) - killed - not_run, not_run=not_run, total=len(codes))
        sums.update(row)
        label = module + (" (grading)" if module.endswith("grading.py") else "")
        print(f"{label:<{width}} {row['killed']:6d} {row['survived']:8d} {row['not_run']:7d} {row['total']:7d}  "
              f"{percent(killed, len(codes) - not_run)}")
        survivors += [(k, STATUS.get(c, f"exit {c}")) for k, c in codes.items() if c not in KILLED and c is not None]
    run = sums["total"] - sums["not_run"]
    print(f"{'overall':<{width}} {sums['killed']:6d} {sums['survived']:8d} {sums['not_run']:7d} {sums['total']:7d}  "
          f"{percent(sums['killed'], run)}")
    equivalent = equivalents()
    known = [name for name, _ in survivors if name in equivalent]
    if known:
        print(f"{'overall, equivalent ones left out':<{width}} {sums['killed']:6d} {sums['survived'] - len(known):8d} "
              f"{'':7} {'':7}  {percent(sums['killed'], run - len(known))}")
    if survivors:
        print(f"\nnot killed ({', '.join(f'{n} {s}' for s, n in Counter(s for _, s in survivors).items())}; "
              f"{len(known)} listed as equivalent in docs/MUTATION.md):")
        for name, status in sorted(survivors):
            print(f"  {name}  [{status}{', equivalent' if name in equivalent else ''}]")
    return sums["not_run"]


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
        print(f"{not_run} mutants not run: an interrupted run (the score is over those that ran)")


if __name__ == "__main__":
    main()
