"""BLAS threads: a run computes on ``train.threads`` BLAS threads (one by default), whatever the process had
before, which it gets back after. A layer of the test's own reads the pool (threadpoolctl) during forward."""
from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy  # noqa: F401 - loads OpenBLAS: threadpoolctl sees only the libraries loaded
import pytest
import yaml
from threadpoolctl import threadpool_info, threadpool_limits
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.threads import blas_threads
from cli_helpers import assert_bad_input

PROBE = '''
from pathlib import Path
from threadpoolctl import threadpool_info


class Probe:
    """The identity, writing the BLAS pool's thread count each forward pass (a layer of the user's)."""

    def __init__(self, width, dtype=None):
        self.params, self.grads = {}, {}
        self.out_width = width  # said, so loading the config runs no forward pass

    def forward(self, x, train=True):
        counts = {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
        with open(Path(__file__).with_name("seen.txt"), "a") as f:
            f.write(" ".join(map(str, sorted(counts))) + "\\n")
        return x

    def backward(self, grad_out):
        return grad_out
'''
CONFIG = """name: probe
data: {kind: spirals, n_samples: 32}
model:
  layers:
    - {type: dense, units: 4}
    - {type: activation, name: tanh}
    - {type: custom, class: "probe:Probe"}
train: {steps: 2, batch_size: 8}
check: {mode: directional, directions: 1, batch: 4}
log: {every: 1}
"""


def blas_now() -> set[int]:
    return {p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    module = f"probe_{uuid.uuid4().hex}"  # a module name is imported once per process: one per test
    (tmp_path / f"{module}.py").write_text(PROBE, encoding="utf-8")
    path = tmp_path / "probe.yaml"
    text = CONFIG.replace("log: {every: 1}", f"log: {{every: 1, out: '{tmp_path / 'runs'}'}}")
    path.write_text(text.replace("probe:Probe", f"{module}:Probe"), encoding="utf-8")
    yield path
    sys.modules.pop(module, None)


def seen(probe: Path) -> set[str]:
    """The thread counts the probe layer read during the run, one line per forward pass."""
    lines = (probe.parent / "seen.txt").read_text().split("\n")
    return {line for line in lines if line}


def test_a_run_computes_on_one_blas_thread_by_default_and_gives_the_pool_back(probe):
    cfg = gradlab.load_config(probe)
    assert cfg.train.threads == 1
    with threadpool_limits(limits=2, user_api="blas"):  # a process (a notebook) running BLAS on 2 threads
        result = gradlab.train(cfg, write=False)
        assert blas_now() == {2}  # given back after the run
    assert result.status == "completed"
    assert seen(probe) == {"1"}


def test_train_threads_2_runs_on_2_and_the_runs_config_records_it(probe, tmp_path):
    result = CliRunner().invoke(app, ["train", str(probe), "--threads", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen(probe) == {"2"}
    (run,) = (tmp_path / "runs").iterdir()
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["threads"] == 2


def test_the_config_key_sets_the_count_too(probe):
    cfg = gradlab.load_config(probe, ["train.threads=2"])
    with threadpool_limits(limits=1, user_api="blas"):
        gradlab.train(cfg, write=False)
        assert blas_now() == {1}
    assert seen(probe) == {"2"}


@pytest.mark.parametrize("flag, expected", [([], "1"), (["--threads", "2"], "2")])
def test_check_computes_on_the_chosen_count(probe, flag, expected):
    with threadpool_limits(limits=2 if expected == "1" else 1, user_api="blas"):
        result = CliRunner().invoke(app, ["check", str(probe), *flag])
    assert result.exit_code == 0, result.output
    assert seen(probe) == {expected}


def test_check_of_a_function_takes_threads_too(tmp_path):
    (tmp_path / "fn.py").write_text(
        "from pathlib import Path\n"
        "from threadpoolctl import threadpool_info\n"
        "def double_forward(x):\n"
        "    Path(__file__).with_name('seen.txt').open('a').write(f\"{threadpool_info()[0]['num_threads']}\\n\")\n"
        "    return 2 * x, x\n"
        "def double_backward(dout, cache):\n"
        "    return 2 * dout\n", encoding="utf-8")
    with threadpool_limits(limits=1, user_api="blas"):
        result = CliRunner().invoke(app, ["check", f"{tmp_path / 'fn.py'}:double", "--shape", "3", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert seen(tmp_path / "fn.py") == {"2"}


@pytest.mark.parametrize("command", ["train", "check", "sweep"])
@pytest.mark.parametrize("value", ["0", "257", "two"])
def test_bad_threads_flag_is_exit_2_naming_it(probe, command, value):
    result = CliRunner().invoke(app, [command, str(probe), "--threads", value])
    assert result.exit_code == 2
    assert "--threads" in result.output and "Traceback" not in result.output
    assert not (probe.parent / "seen.txt").exists()


@pytest.mark.parametrize("value, allowed", [("0", "greater than or equal to 1"), ("300", "less than or equal to 256"),
                                            ("1.5", "whole number"), ("true", "whole number")])
def test_bad_train_threads_key_is_exit_2_naming_file_key_and_range(probe, value, allowed):
    text = probe.read_text().replace("train: {steps: 2,", f"train: {{threads: {value}, steps: 2,")
    probe.write_text(text, encoding="utf-8")
    for command in ("train", "check"):
        result = CliRunner().invoke(app, [command, str(probe)])
        assert_bad_input(result, str(probe), "'train.threads'", allowed)


def test_sweep_threads_is_each_runs_train_threads(probe, tmp_path):
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"name: s\nbase: {probe.name}\ngrid: {{seed: [0]}}\n", encoding="utf-8")
    out = tmp_path / "sweeps"
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--threads", "2", "--workers", "1", "--quiet",
                                      "--set", f"log.out={out}"])
    assert result.exit_code == 0, result.output
    assert seen(probe) == {"2"}  # in the worker process
    (config,) = out.glob("*/*/config.yaml")
    assert yaml.safe_load(config.read_text())["train"]["threads"] == 2


def test_blas_threads_restores_the_count_it_found():
    with threadpool_limits(limits=1, user_api="blas"):
        with blas_threads(2):
            assert blas_now() == {2}
        assert blas_now() == {1}


def test_bench_threads_quick_runs_both_counts_and_compares_them(capsys):
    bench_dir = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench_dir)  # the script imports protocol from its own folder
    try:
        import bench_threads
    finally:
        sys.path.remove(bench_dir)
    assert bench_threads.main(["--quick", "--only", "dense,check", "--no-busy"]) == 0
    out = capsys.readouterr().out
    assert "ok: dense alone: the last loss is" in out and "ok: check alone: every check" in out
    assert "| dense (per step) | alone |" in out and "| check (full check) | alone |" in out


def test_resuming_a_sweep_with_other_threads_is_refused(tmp_path):
    """train.threads is part of the base in sweep.yaml, which a resumed sweep never changes."""
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path), "--threads", "2"])
    assert_bad_input(result, f"--resume {tmp_path}", "--threads", "sweep.yaml")


def test_the_limit_holds_in_a_process_that_had_not_loaded_blas_yet():
    """``gradlab check FILE.py:NAME`` enters the limit before anything has imported numpy (the package no
    longer loads it): the limit must load BLAS first, or threadpoolctl finds nothing to limit and OpenBLAS
    then starts at one thread per core."""
    import os
    import subprocess

    code = ("import sys\nfrom gradlab.threads import blas_threads\nassert 'numpy' not in sys.modules\n"
            "with blas_threads(1):\n    from threadpoolctl import threadpool_info\n"
            "    print(sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'}))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                                                           "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[1]"]
