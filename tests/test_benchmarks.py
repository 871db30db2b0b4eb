"""The benchmark scripts run (their --quick option: tiny sizes, 1 repeat), compare the sides' results and
exit 1 when they differ; their shared protocol interleaves and warms up every side alike.
No timing is asserted."""
from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from optional import need_torch

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def load(name: str):
    """A benchmark script (or the protocol) as a module; ``if __name__ == "__main__"`` parts do not run."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import protocol from their own folder
    if name == "protocol":
        return importlib.import_module("protocol")  # the very module the scripts use
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def restored_threads(monkeypatch):
    """The scripts pin threads for the whole process: put everything back for the rest of the suite."""
    for var in BLAS_VARS:  # monkeypatch restores each variable, set or not, after the test
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    yield
    load("protocol").release()


# --------------------------------------------------------------------------- the protocol

def test_interleave_warms_up_every_side_then_alternates_the_order():
    protocol = load("protocol")
    calls = []

    def side(name: str, seconds: list[float]):
        it = iter(seconds)

        def run():
            calls.append(name)
            s = next(it)
            return s, f"{name}{s}"
        return protocol.Side(name, run)

    t = protocol.interleave([side("A", [9.0, 2.0, 4.0, 6.0]), side("B", [7.0, 1.0, 1.0, 2.0])], repeats=3, warmup=1)
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B"]  # warm-up, then A B, B A, A B
    assert t["A"].warmup == [9.0] and t["A"].times == [2.0, 4.0, 6.0]
    assert t["B"].warmup == [7.0] and t["B"].times == [1.0, 1.0, 2.0]
    assert t["A"].results == ["A2.0", "A4.0", "A6.0"] and t["A"].all_results[0] == "A9.0"
    r = protocol.ratio(t["A"], t["B"])  # per round: 2/1, 4/1, 6/2
    assert r.values == [2.0, 4.0, 3.0] and r.median == 3.0 and (r.lo, r.hi) == (2.0, 4.0)
    assert protocol.difference(t["A"], t["B"]).values == [1.0, 3.0, 4.0]
    assert t["A"].spread.text() == "4.00 (range 2.00-6.00)"
    assert protocol.Spread([0.5]).text(unit=" s") == "0.50 s"  # no range from one value


def test_verdicts_exit_1_on_any_mismatch(capsys):
    protocol = load("protocol")
    v = protocol.Verdicts()
    assert v.expect(True, "losses") and v.exit_code() == 0
    assert not v.expect(False, "gradients")
    assert v.exit_code() == 1
    out = capsys.readouterr().out
    assert "ok: losses" in out and "MISMATCH: gradients" in out


def test_load_line_gives_the_load_average_and_cpu_count():
    line = load("protocol").load_line("start")
    one = os.getloadavg()[0]
    assert line.startswith("start: load average ") and line.endswith(f"on {os.cpu_count()} CPUs")
    assert math.isclose(float(line.split()[3]), one, abs_tol=1.0)  # read a moment apart


# --------------------------------------------------------------------------- bench_check

def assert_protocol_printed(out: str) -> None:
    assert out.count("load average") >= 2  # at the start and at the end
    assert "BLAS threads: " in out and "warm-up: " in out and "repeat 1: " in out
    assert "MISMATCH" not in out


def test_bench_check_quick_compares_gradlab_with_the_plain_loop(capsys):
    bench = load("bench_check")
    assert bench.main(["--quick", "--no-torch"]) == 0
    out = capsys.readouterr().out
    assert_protocol_printed(out)
    assert "torch: left out (--no-torch)" in out
    assert "ok: plain loop's centred differences against gradlab's for the same 426 entries" in out
    assert "summary: gradlab full on the net, 426 parameters" in out and "the plain loop" in out


@pytest.mark.parametrize("option, words", [
    (["--activation", "relu"], "the same net with ReLU (kinks: by columns)"),
    (["--batchnorm"], "the net with batch norm, 442 parameters"),
    (["--mode", "directional"], "summary: directional mode"),
    (["--lstm"], "summary: gradlab on configs/lstm_adding.yaml"),
])
def test_bench_check_options_give_the_readme_figures(capsys, option, words):
    bench = load("bench_check")
    assert bench.main(["--quick", "--no-torch", *option]) == 0
    out = capsys.readouterr().out
    assert words in out and "MISMATCH" not in out


def test_bench_check_exits_1_when_the_reference_net_differs(capsys, monkeypatch):
    bench = load("bench_check")
    monkeypatch.setattr(bench, "BN_EPS", 1e-3)  # the plain loop's batch norm no longer gradlab's (1e-5)
    assert bench.main(["--quick", "--no-torch", "--batchnorm"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: loss at the checked weights" in out and "MISMATCH: plain loop's centred differences" in out


def test_bench_check_with_torch_compares_its_gradients(capsys):
    torch = need_torch("the benchmark's torch comparison")
    before = torch.get_num_threads()
    try:
        bench = load("bench_check")
        assert bench.main(["--quick"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "torch threads: 1 intra-op (torch.set_num_threads)" in out
    assert "ok: torch's autograd gradient against gradlab's backward pass" in out
    assert "ok: torch's gradcheck passed in 2 of 2 calls" in out and "torch's gradcheck " in out.split("summary:")[1]


# --------------------------------------------------------------------------- bench_step

def test_bench_step_quick_reaches_the_same_losses(capsys):
    bench = load("bench_step")
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert_protocol_printed(out)
    for side in ("logged", "unlogged", "minimal"):
        assert f"ok: {side}: the last loss of 2 of 2 calls" in out
    assert "summary (logged): " in out and "summary (logging): logging costs about" in out


def test_bench_step_exits_1_when_a_loss_differs(capsys, monkeypatch):
    bench = load("bench_step")
    minimal = bench.run_minimal
    calls = []

    def off_on_second_call(config, steps):  # the timed call differs in the 7th digit
        seconds, J = minimal(config, steps)
        calls.append(J)
        return seconds, J * (1 + 1e-6) if len(calls) == 2 else J

    monkeypatch.setattr(bench, "run_minimal", off_on_second_call)
    assert bench.main(["--quick", "--sides", "logged,minimal"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: minimal: the last loss of 1 of 2 calls" in out and "exit 1" in out


def test_bench_step_refuses_sides_without_the_minimal_loop():
    bench = load("bench_step")
    with pytest.raises(SystemExit) as exc:
        bench.parse_args(["--sides", "logged,unlogged"])
    assert exc.value.code == 2


# --------------------------------------------------------------------------- bench_sweep

def test_sweep_rows_compare_everything_but_wall_time():
    bench = load("bench_sweep")
    row = {"run": "depth=8,seed=0", "status": "completed", "final_loss": 0.25, "diverged_at": float("nan"),
           "wall_time": 1.0}
    assert bench.same_rows([row], [{**row, "wall_time": 2.0}])  # NaN equals NaN here
    assert not bench.same_rows([row], [{**row, "final_loss": 0.25 + 1e-15}])
    assert not bench.same_rows([row], [{**row, "run": "depth=16,seed=0"}])


@pytest.mark.slow  # six sweeps, each starting its worker processes (spawn, then imports): ~4 s on an idle machine
def test_bench_sweep_quick_runs_and_compares_the_worker_counts(capsys):
    bench = load("bench_sweep")
    assert bench.main(["--quick", "--warmup", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("load average") >= 2 and "MISMATCH" not in out
    assert "ok: grid: summary rows (all but wall_time) identical with 1 and 2 workers" in out
    assert "summary (speed-up): 2 workers" in out and "summary (overhead, workers=2): per-run overhead" in out


# --------------------------------------------------------------------------- bench_memory

@pytest.mark.slow  # three subprocesses (a short run, a bare import, the in-process probe): ~6 s idle
def test_bench_memory_quick_prints_the_peak_and_where_it_is(capsys):
    bench = load("bench_memory")
    assert bench.main(["--quick", "--no-one-pass"]) == 0
    out = capsys.readouterr().out
    assert "ok: batched: gradlab train completed" in out and "ok: the in-process probe ran" in out
    assert "the data: 640 samples of shape (100, 2)" in out
    peak = float(out.split("summary: peak RSS **")[1].split(" MB")[0].replace(",", ""))
    assert 20 < peak < 400  # a real figure of a real process, and the bound


# --------------------------------------------------------------------------- bench_conv

def test_bench_conv_quick_checks_gradlab_against_the_minimal_loop(capsys):
    bench = load("bench_conv")
    assert bench.main(["--quick", "--sides", "logged,unlogged,lean,minimal,flipped", "--memory-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert_protocol_printed(out)
    # the same weights and batch: gradlab's loss and its 8 gradients (3 conv layers and the dense one, W and b)
    line = next(s for s in out.splitlines() if s.startswith("ok: gradlab's loss and gradients against the minimal"))
    assert "8 gradients" in line and "tolerance 1e-10" in line
    assert float(line.split("relative difference ")[1].split(";")[0]) <= 1e-10
    assert float(line.split(" relative (tolerance")[0].rsplit(" at ", 1)[1]) <= 1e-10
    for side in ("logged", "unlogged", "lean", "minimal", "flipped"):
        assert f"ok: {side}: the last loss of 2 of 2 calls" in out
    for name, rows in (("metrics.csv", 3), ("grad_norms.csv", 24), ("layer_stats.csv", 12)):
        assert f"ok: lean: {name} holds gradlab's values, every number to relative 1e-09 ({rows} rows)" in out
    assert "summary (logged / lean): " in out and "target at most 1.2x" in out
    assert "summary (logged / minimal): " in out and "summary (logged / flipped): " in out
    assert "summary (logging): " in out


def test_bench_conv_exits_1_when_the_minimal_loop_computes_another_gradient(capsys, monkeypatch):
    bench = load("bench_conv")
    im2col = bench.im2col

    def shifted(x, k):  # every patch one pixel off: the loss and gradients are another net's
        return im2col(np.roll(x, 1, axis=2), k)

    monkeypatch.setattr(bench, "im2col", shifted)
    assert bench.main(["--quick", "--sides", "logged,minimal", "--memory-steps", "0"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: gradlab's loss and gradients against the minimal loop's" in out
    assert "MISMATCH: logged: the last loss" in out and "exit 1" in out


@pytest.mark.slow  # torch's first import in a process: ~5 s of the ~7
def test_bench_conv_with_torch_compares_its_gradients(capsys):
    torch = need_torch("the conv benchmark's torch side")
    before = torch.get_num_threads()
    try:
        bench = load("bench_conv")
        assert bench.main(["--quick", "--sides", "minimal,torch", "--memory-steps", "0"]) == 0
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    assert "torch threads: 1 intra-op (torch.set_num_threads)" in out
    assert "ok: gradlab's loss and gradients against the torch's on the same weights and batch" in out
    assert "ok: torch: the last loss of 2 of 2 calls" in out and "summary (torch / minimal): " in out


@pytest.mark.slow  # a gradlab train subprocess and a bare import, for the peak RSS: ~6 s idle
def test_bench_conv_quick_prints_the_peak_memory_of_gradlab_train(capsys):
    bench = load("bench_conv")
    assert bench.main(["--quick", "--sides", "minimal"]) == 0
    out = capsys.readouterr().out
    assert "ok: gradlab train of the same config completed (peak memory)" in out
    peak = float(out.split("summary (memory): peak RSS of gradlab train on this config (train.steps=1, 32 images) **")[1]
                 .split(" MB")[0].replace(",", ""))
    assert 20 < peak < 2000  # a real figure of a real process
