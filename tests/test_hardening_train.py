"""Faults in the middle of `train` and `check`: a full disk, a layer of the user's that raises, SIGTERM and
Ctrl-C at any point, numpy warnings, an unwritable --csv. None may end in a traceback, a summary.json left
at "running", or a torn CSV row."""
from __future__ import annotations

import errno
import importlib
import json
import os
import re
import signal
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradlab
import gradlab.logging
import gradlab.records
from gradlab.cli import app
from gradlab.files import NoSpace

from cli_helpers import assert_bad_input

loop = importlib.import_module("gradlab.train")  # the module (gradlab.train is the function)

TINY = ("name: t\nseed: 0\ndata: {kind: spirals, n_samples: 64, val_fraction: 0.25}\n"
        "model: {depth: 2, width: 4, activation: ACT}\nloss: cross_entropy\n"
        "train: {optimizer: sgd, lr: 0.1, batch_size: 16, steps: 12}\nlog: {every: 1, out: OUT}\n"
        "check: {batch: 4}\n")

# A layer of the user's: tanh, which calls `act(n)` on its n-th training forward pass (from 1).
LAYER = textwrap.dedent('''
    import os, signal
    import numpy as np

    class Tanh:
        calls = 0
        def __init__(self, width, dtype=np.float64):
            self.params, self.grads = {}, {}
        def forward(self, x, train=True):
            if train:
                Tanh.calls += 1
                act(Tanh.calls)
            self.out = np.tanh(x)
            return self.out
        def backward(self, g):
            return g * (1.0 - self.out ** 2)

    def act(n):
        ACTION
''')
RAISE_AT_5 = "if n == 5: raise ValueError('the cache went stale at call %d' % n)"
TERM_AT_5 = "if n == 5: os.kill(os.getpid(), signal.SIGTERM)"
RAISE_ALWAYS = "raise ValueError('the cache went stale at call %d' % n)"


def folder(tmp_path: Path, action: str = "pass", act: str = "mylayer:Tanh") -> Path:
    """A config of a 2-layer net whose activation is ``act``; mylayer.py beside it does ``action``."""
    module = "mylayer_" + re.sub(r"\W", "_", tmp_path.name)  # a module of its own per test: Tanh.calls from 0
    (tmp_path / f"{module}.py").write_text(LAYER.replace("ACTION", action), encoding="utf-8")
    path = tmp_path / "c.yaml"
    text = TINY.replace("ACT", act.replace("mylayer", module)).replace("OUT", json.dumps(str(tmp_path / "runs")))
    path.write_text(text, encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def the_run(tmp_path: Path) -> Path:
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))


def assert_whole_rows(run_dir: Path) -> dict[str, pd.DataFrame]:
    """Every CSV ends with a newline and every row has its header's number of fields."""
    tables = {}
    for path in sorted(run_dir.glob("*.csv")):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), (path.name, text[-80:])
        lines = text.splitlines()
        widths = {line.count(",") for line in lines}
        assert widths == {lines[0].count(",")}, (path.name, lines[-1])
        tables[path.name] = pd.read_csv(path)
    assert {"metrics.csv", "grad_norms.csv", "layer_stats.csv"} <= set(tables)
    return tables


# ------------------------------------------------------------------ a full disk

class Disk:
    """Bytes left on a pretend disk shared by every CSV file gradlab opens: a write past them writes what
    fits and then fails with ENOSPC, as write(2) does."""

    def __init__(self, free: int) -> None:
        self.free = free

    def open(self, real_open):
        def fake_open(path, mode="r", *args, **kw):
            f = real_open(path, mode, *args, **kw)
            return Filling(f, self) if str(path).endswith(".csv") else f
        return fake_open


class Filling:
    def __init__(self, f, disk: Disk) -> None:
        self.f, self.disk = f, disk

    def write(self, data):
        if self.disk.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        part = data[: self.disk.free]
        self.disk.free -= len(part)
        return self.f.write(part)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def fill_disk(monkeypatch, free: int) -> Disk:
    disk = Disk(free)
    monkeypatch.setattr(gradlab.logging, "open", disk.open(open), raising=False)
    return disk


def test_a_full_disk_ends_the_run_as_failed_with_whole_rows(tmp_path, monkeypatch):
    """Reproduces: a chained OSError, summary.json left at "running" and a torn last row
    (`77,5,-0.03960905263`) that pandas reads as data."""
    config = gradlab.load_config(folder(tmp_path, act="tanh"))
    fill_disk(monkeypatch, 6000)  # the 3 headers and a few steps fit; step 12 does not
    with pytest.raises(NoSpace) as caught:
        gradlab.train(config)
    run_dir = the_run(tmp_path)
    assert f"no space left on device under {run_dir}" in str(caught.value)
    tables = assert_whole_rows(run_dir)
    done = summary(run_dir)
    assert done["status"] == "failed" and "no space left on device" in done["error"]["message"]
    # every table is cut back to the same last whole step, the one summary.json counts as logged
    steps = {name: set(t.step) for name, t in tables.items()}
    last = max(steps["metrics.csv"])
    assert 1 <= last < 11 and all(max(s) == last for s in steps.values()), steps
    assert sorted(steps["metrics.csv"]) == list(range(last + 1))
    assert len(tables["grad_norms.csv"]) == 6 * (last + 1) and len(tables["layer_stats.csv"]) == 3 * (last + 1)
    assert done["steps"] >= last


def test_a_full_disk_is_exit_2_naming_the_run_folder(tmp_path, monkeypatch):
    path = folder(tmp_path, act="tanh")
    fill_disk(monkeypatch, 6000)
    result = run("train", path, "--quiet")
    run_dir = the_run(tmp_path)
    assert_bad_input(result, f"no space left on device under {run_dir}", "summary.json says failed")
    assert summary(run_dir)["status"] == "failed"


def test_a_disk_full_from_the_start_says_there_is_no_summary(tmp_path, monkeypatch):
    fill_disk(monkeypatch, 40)  # not even metrics.csv's header fits
    result = run("train", folder(tmp_path, act="tanh"), "--quiet")
    run_dir = the_run(tmp_path)
    assert_bad_input(result, f"no space left on device under {run_dir}", "no room for a summary.json")
    # a table appears with its whole header or not at all (pandas cannot read an empty file)
    assert not (run_dir / "metrics.csv").exists() and not (run_dir / "summary.json").exists()
    assert list(run_dir.iterdir()) == []  # no torn header, no temporary file left


def no_room_for_a_new_summary(monkeypatch) -> None:
    """A disk that fills up mid-run and then takes no new summary.json (the "running" one was written)."""
    fill_disk(monkeypatch, 6000)
    real = gradlab.logging.RunWriter.write_summary

    def full(self, data):
        if data["status"] != "running":
            raise NoSpace("no space left")
        real(self, data)

    monkeypatch.setattr(gradlab.logging.RunWriter, "write_summary", full)


def test_a_disk_too_full_for_summary_json_is_said_on_stderr(tmp_path, monkeypatch):
    """If even summary.json cannot be marked failed, the message says it still says "running"."""
    path = folder(tmp_path, act="tanh")
    no_room_for_a_new_summary(monkeypatch)
    monkeypatch.setattr(gradlab.logging, "overwrite_in_place", lambda path, text: False)
    result = run("train", path, "--quiet")
    assert_bad_input(result, "no space left on device under", "summary.json could not be marked failed")
    assert summary(the_run(tmp_path))["status"] == "running"


def test_summary_json_is_marked_failed_in_place_when_no_new_file_fits(tmp_path, monkeypatch):
    """A full disk refuses the temporary file of an atomic write; the summary's own block still holds
    a short one."""
    path = folder(tmp_path, act="tanh")
    no_room_for_a_new_summary(monkeypatch)
    result = run("train", path, "--quiet")
    assert_bad_input(result, "no space left on device under", "summary.json says failed")
    done = summary(the_run(tmp_path))
    assert done["status"] == "failed" and "no space left" in done["error"]["message"]


@pytest.mark.skipif(not os.environ.get("GRADLAB_SMALL_FS"), reason="needs GRADLAB_SMALL_FS: a folder on a small "
                    "file system of its own (e.g. a 2 MB tmpfs) that the test may fill up")
def test_a_real_full_disk(tmp_path):
    """The same on a real file system: a filler file leaves 64 kB, and the run needs more."""
    root = Path(os.environ["GRADLAB_SMALL_FS"]) / f"gradlab-{os.getpid()}"
    root.mkdir()
    try:
        stat = os.statvfs(root)
        (root / "filler").write_bytes(b"\0" * max(0, stat.f_bavail * stat.f_frsize - 64 * 1024))
        path = folder(tmp_path, act="tanh")
        path.write_text(path.read_text().replace(json.dumps(str(tmp_path / "runs")), json.dumps(str(root / "runs")))
                        .replace("steps: 12", "steps: 5000"), encoding="utf-8")
        result = run("train", path, "--quiet")
        (run_dir,) = (root / "runs").iterdir()
        assert_bad_input(result, f"no space left on device under {run_dir}")
        (root / "filler").unlink()
        assert_whole_rows(run_dir)
        assert summary(run_dir)["status"] == "failed"
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------ a layer of the user's that raises

def test_a_layer_that_raises_mid_run_is_recorded_as_failed(tmp_path):
    """Reproduces: the ValueError's traceback and summary.json left at "running"."""
    config = gradlab.load_config(folder(tmp_path, RAISE_AT_5))
    with pytest.raises(gradlab.records.RunFailed) as caught:
        gradlab.train(config)
    run_dir = the_run(tmp_path)
    done = summary(run_dir)
    assert done["status"] == "failed" and done["steps"] == 2  # two layers: step 2's first forward raised
    assert done["error"]["type"] == "ValueError"
    assert "the cache went stale at call 5" in done["error"]["message"]
    assert "tanh" in done["error"]["where"] and "Tanh" in done["error"]["where"]
    trace = (run_dir / "error.txt").read_text(encoding="utf-8")
    assert "Traceback" in trace and "ValueError: the cache went stale at call 5" in trace
    assert caught.value.result.status == "failed" and caught.value.result.exit_code == 4
    assert pd.read_csv(run_dir / "metrics.csv").step.tolist() == [0, 1]
    assert_whole_rows(run_dir)


def test_a_layer_that_raises_mid_run_is_exit_4_and_one_paragraph(tmp_path):
    result = run("train", folder(tmp_path, RAISE_AT_5), "--quiet")
    assert result.exit_code == 4, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and "\n" not in message and message.startswith("error: ")
    for fragment in ("ValueError", "the cache went stale at call 5", "Tanh", "step 2", "error.txt"):
        assert fragment in message, message
    assert summary(the_run(tmp_path))["status"] == "failed"


def test_a_layer_whose_output_breaks_gradlab_code_is_named_too(tmp_path):
    """The layer returns one column too few from its 5th call: numpy raises in gradlab's dense layer, with no
    frame of the user's on the traceback; the net's own layers are named, and it is still exit 4."""
    path = folder(tmp_path)
    module = path.read_text().split("activation: ")[1].split(":")[0]
    source = (tmp_path / f"{module}.py").read_text().replace(
        "self.out = np.tanh(x)", "self.out = np.tanh(x)[:, :-1] if Tanh.calls >= 5 else np.tanh(x)")
    (tmp_path / f"{module}.py").write_text(source, encoding="utf-8")
    result = run("train", path, "--quiet")
    assert result.exit_code == 4, result.output
    for fragment in ("a net with code of yours", f"({module}:Tanh)", "raised ValueError", "gradlab's forward",
                     "dense.py"):
        assert fragment in result.stderr, result.stderr
    assert summary(the_run(tmp_path))["status"] == "failed"


def test_check_that_cannot_run_is_exit_4_not_1(tmp_path):
    """Reproduces: `check` ended in the layer's traceback, exit 1 (its "a gradient is wrong" code)."""
    result = run("check", folder(tmp_path, RAISE_ALWAYS))
    assert result.exit_code == 4, result.output
    message = result.stderr.strip()
    assert "Traceback" not in result.output and "\n" not in message
    for fragment in ("could not run", "ValueError", "the cache went stale", "Tanh"):
        assert fragment in message, message


# ------------------------------------------------------------------ signals

def test_sigterm_is_handled_like_ctrl_c_with_exit_143(tmp_path):
    """Reproduces: SIGTERM killed the process where it stood, summary.json at "running"."""
    import threading

    handled = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    if handled or threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGTERM is handled elsewhere in this process, or no handler can be installed from this thread")
    result = run("train", folder(tmp_path, TERM_AT_5), "--quiet")
    assert result.exit_code == 143, result.output
    run_dir = the_run(tmp_path)
    assert summary(run_dir)["status"] == "interrupted"
    assert pd.read_csv(run_dir / "metrics.csv").step.tolist() == [0, 1]
    assert_whole_rows(run_dir)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the command put the default back


def test_importing_the_library_handles_no_signal():
    import subprocess
    import sys

    code = "import signal, gradlab, gradlab.cli; print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "True"


@pytest.mark.parametrize("where", ["on_start", "final_metrics", "params_final", "summary"])
def test_ctrl_c_anywhere_leaves_no_running_summary(tmp_path, monkeypatch, where):
    """Ctrl-C (or SIGTERM) while the run starts, during its final metrics or while its last files are
    written: summary.json still ends at a final status, with whole rows."""
    config = gradlab.load_config(folder(tmp_path, act="tanh"))

    def interrupt(*args, **kw):
        raise KeyboardInterrupt

    class Starting:
        def on_start(self, info):
            interrupt()

        def on_step(self, rec):
            pass

    observers = [Starting()] if where == "on_start" else []
    if where == "final_metrics":
        monkeypatch.setattr(loop, "final_metrics", interrupt)
    real_save, real_summary = gradlab.logging.RunWriter.save_params, gradlab.logging.RunWriter.write_summary
    if where == "params_final":
        monkeypatch.setattr(gradlab.logging.RunWriter, "save_params", lambda self, name, params: interrupt()
                            if name == "params_final.npz" else real_save(self, name, params))
    calls = []

    def once(self, data):  # the first final summary is interrupted, as a second Ctrl-C would
        calls.append(data["status"])
        if data["status"] != "running" and len(calls) == 2:
            interrupt()
        real_summary(self, data)

    if where == "summary":
        monkeypatch.setattr(gradlab.logging.RunWriter, "write_summary", once)
    try:
        result = gradlab.train(config, observers)
        status = result.status
    except KeyboardInterrupt:
        status = "raised"
    done = summary(the_run(tmp_path))
    assert done["status"] in ("interrupted", "completed") and done["status"] != "running", done
    if where != "summary":
        assert status == "interrupted" and done["status"] == "interrupted"
    assert_whole_rows(the_run(tmp_path))


def test_ctrl_c_is_exit_130(tmp_path, monkeypatch):
    def interrupt(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "final_metrics", interrupt)
    result = run("train", folder(tmp_path, act="tanh"), "--quiet")
    assert result.exit_code == 130, result.output
    assert summary(the_run(tmp_path))["status"] == "interrupted"


# ------------------------------------------------------------------ numpy warnings, --csv, --help

def test_data_beyond_float32_is_bad_input_not_an_overflow_warning(tmp_path):
    """Reproduces: "RuntimeWarning: overflow encountered in cast", then a run that diverged at step 0."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 2)) * 1e100
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "label": (X[:, 0] > 0).astype(int)}).to_csv(tmp_path / "d.csv",
                                                                                          index=False)
    text = folder(tmp_path, act="tanh").read_text().replace(
        "data: {kind: spirals, n_samples: 64, val_fraction: 0.25}",
        "data: {kind: csv, path: d.csv, target: label, standardize: false}")
    path = tmp_path / "c.yaml"
    path.write_text(text.replace("steps: 12}", "steps: 12, dtype: float32}"), encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(gradlab.ConfigError, match=r"features reach 2.33e\+100, beyond float32's largest"):
            gradlab.train(gradlab.load_config(path))
    assert not (tmp_path / "runs").exists()
    assert_bad_input(run("train", path), "float32", "data.standardize: true")


def test_no_numpy_warning_reaches_the_user_from_the_command_line(tmp_path):
    """A layer of the user's that takes the mean of nothing: the run goes on, and no raw RuntimeWarning is
    printed (the command line silences what reaches it; reproduces: "Mean of empty slice" on stderr)."""
    path = folder(tmp_path, "np.mean(np.zeros(0))")
    for args in (("train", path, "--quiet"), ("check", path)):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            result = run(*args)
        assert result.exit_code == 0, result.output
        assert [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)] == []
        assert "Warning" not in result.stderr
    with warnings.catch_warnings(record=True) as seen:  # the library warns as numpy does
        warnings.simplefilter("always")
        gradlab.train(gradlab.load_config(path), write=False)
    assert any("Mean of empty slice" in str(w.message) for w in seen)


def test_check_csv_to_an_unwritable_path_is_bad_input(tmp_path):
    """Reproduces: a FileNotFoundError traceback."""
    path = folder(tmp_path, act="tanh")
    target = tmp_path / "no" / "such" / "folder" / "entries.csv"
    assert_bad_input(run("check", path, "--csv", target), str(target))


@pytest.mark.parametrize("command", ["train", "check"])
def test_help_gives_the_exit_codes(command):
    text = " ".join(run(command, "--help").stdout.split())
    for code in ("0", "2", "3", "4", "130", "143"):
        assert f"{code} " in text, text
