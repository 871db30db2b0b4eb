#!/usr/bin/env python
"""Regenerate the README's compare figures: configs/deep_sigmoid_vanishing.yaml with and without batch norm.

    python docs/compare_figure.py                # about 15 s of CPU
    python docs/compare_figure.py --runs DIR     # keep the two run folders and compare.html under DIR

It trains the config as shipped (model.batchnorm false) and with --set model.batchnorm=true, through the
public API (the same runs as `gradlab train configs/deep_sigmoid_vanishing.yaml [--set model.batchnorm=true]`),
compares them with gradlab.report.compare (as `gradlab compare RUN RUN` does) and copies two of its figures
to docs/figures/: compare_loss.png and compare_delta_by_layer.png.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"  # one BLAS thread, before NumPy is imported: small matrices run fastest on one

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import gradlab  # noqa: E402
from gradlab.report.compare import compare  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "deep_sigmoid_vanishing.yaml"
FIGURES = ROOT / "docs" / "figures"
SHOWN = ("compare_loss.png", "compare_delta_by_layer.png")
CONTRAST = ((), ("model.batchnorm=true",))  # as shipped, then with batch norm


def train(out: Path, overrides: tuple[str, ...]) -> Path:
    """One run of the config with ``overrides`` under ``out``; its folder."""
    config = gradlab.load_config(CONFIG, [*overrides, f"log.out={out}"])
    result = gradlab.train(config, source=str(CONFIG))
    print(f"{result.status}: {result.steps} steps -> {result.run_dir}")
    return Path(result.run_dir)


def main(runs: Path) -> None:
    folders = [train(runs, overrides) for overrides in CONTRAST]
    cmp = compare(folders, runs / "compare")
    FIGURES.mkdir(parents=True, exist_ok=True)
    for name in SHOWN:
        shutil.copyfile(cmp.dir / name, FIGURES / name)
        print(f"wrote docs/figures/{name}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="keep the run folders and compare.html here (default: a temp folder)")
    args = parser.parse_args()
    if args.runs:
        main(args.runs)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
