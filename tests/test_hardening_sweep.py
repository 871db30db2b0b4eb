"""Sweeps under faults and in hostile folders: planted symlinks, --set with --resume, a full or read-only
disk, a run whose process dies, kill -9, Ctrl-C and SIGTERM of the client, and bad input that used to end
in a traceback. Most run in this process (workers=0); a pool of 2 tiny runs where processes are the point."""
from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from gradlab import sweep as S
from gradlab.cli import app
from gradlab.config import ConfigError
from cli_helpers import assert_bad_input

BASE = {"name": "tiny", "seed": 0, "data": {"kind": "spirals", "n_samples": 32},
        "model": {"depth": 2, "width": 4, "activation": "tanh"},
        "train": {"steps": 3, "batch_size": 16}, "log": {"every": 1}}
REAL_RUN = S.run_combo  # the worker's function, before a test replaces it


def tiny(out: Path, seeds=(0, 1), **extra) -> S.Sweep:
    base = {**BASE, "log": {**BASE["log"], "out": str(out)}}
    return S.sweep_from_dict({"name": "h", "base": base, "seeds": list(seeds), **extra}, "<test>")


def write_spec(folder: Path, seeds=(0, 1), name: str = "h.yaml", **base) -> Path:
    spec = {"name": "h", "base": {**BASE, **base, "log": {"every": 1, "out": str(folder / "runs")}},
            "seeds": list(seeds)}
    path = folder / name
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def cli(*args: str):
    return CliRunner().invoke(app, ["sweep", *args])


@pytest.fixture
def inline(monkeypatch):
    """--workers N runs in this process: where a worker process is not the point (and faults are faked here)."""
    monkeypatch.setattr(S, "LocalExecutor", lambda workers: S.InlineExecutor())


def table(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "summary.csv")


def statuses(folder: Path) -> dict[str, str]:
    frame = table(folder)
    return dict(zip(frame.run, frame.status))


def leftovers(folder: Path) -> list[str]:
    """Temporary files of an interrupted write, anywhere under ``folder``."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- a disk that fails on cue

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


class Disk:
    """Writes under ``root`` (opening a file to write, making a folder) fail with ``code`` once ``after``
    of them have succeeded: ENOSPC for a full disk, EACCES for a read-only folder."""

    def __init__(self, monkeypatch, root: Path, code: int, after: int = 0) -> None:
        self.root, self.code, self.after, self.writes = str(root), code, after, 0
        real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir

        def gate(path) -> None:
            if isinstance(path, int) or not os.path.abspath(os.fspath(path)).startswith(self.root + os.sep):
                return
            if self.writes >= self.after:
                raise OSError(self.code, os.strerror(self.code), os.fspath(path))
            self.writes += 1

        def fake_open(file, mode="r", *args, **kw):
            if any(c in mode for c in "wax+"):
                gate(file)
            return real_open(file, mode, *args, **kw)

        def fake_os_open(path, flags, *args, **kw):
            if flags & WRITE_FLAGS:
                gate(path)
            return real_os_open(path, flags, *args, **kw)

        def fake_mkdir(path, *args, **kw):
            gate(path)
            return real_mkdir(path, *args, **kw)

        monkeypatch.setattr(io, "open", fake_open)
        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(os, "open", fake_os_open)
        monkeypatch.setattr(os, "mkdir", fake_mkdir)


# --------------------------------------------------------------------------- 3. planted symlinks

def finished(tmp_path: Path, seeds=(0, 1)) -> Path:
    return S.run_sweep(tiny(tmp_path / "runs", seeds), workers=0).dir


def resume(folder: Path, **kw) -> S.SweepResult:
    return S.run_sweep(S.load_resume(folder), workers=0, resume=folder, **kw)


def test_resume_never_writes_through_a_planted_temporary_name(tmp_path):
    folder = finished(tmp_path)
    victims = {name: tmp_path / f"victim-{name}" for name in ("summary.tmp", "profile.tmp")}
    for name, victim in victims.items():
        victim.write_text("precious\n")
        (folder / name).symlink_to(victim)
    (folder / "seed=1" / "summary.json").unlink()  # something to rerun
    result = resume(folder)
    assert result.ran == 1 and statuses(folder) == {"seed=0": "completed", "seed=1": "completed"}
    assert all(v.read_text() == "precious\n" for v in victims.values())


@pytest.mark.parametrize("planted", ["summary.csv", "profile.csv", "sweep.yaml", "seed=1", "seed=1/metrics.csv",
                                     "seed=1/summary.json"])
def test_resume_refuses_a_folder_whose_output_names_are_symlinks(tmp_path, planted):
    folder = finished(tmp_path)
    (folder / "seed=1" / "summary.json").unlink()  # seed=1 reruns: its files would be written
    victim = tmp_path / "victim"
    if planted == "seed=1":
        (folder / "seed=1").rename(victim)
    else:
        victim.write_bytes((folder / planted).read_bytes() if (folder / planted).exists() else b"precious\n")
        (folder / planted).unlink(missing_ok=True)
    (folder / planted).symlink_to(victim)
    before = {p: p.read_bytes() for p in [victim, *victim.rglob("*")] if p.is_file()} if victim.exists() else {}
    result = cli("--resume", str(folder), "--workers", "1")
    assert_bad_input(result, str(folder), Path(planted).name, "symbolic link")
    assert {p: p.read_bytes() for p in before} == before
    assert leftovers(folder) == [] and (folder / planted).is_symlink()


def test_every_output_of_a_new_sweep_is_written_via_a_temporary_file(tmp_path, monkeypatch):
    """Each file of the sweep folder appears in one os.replace, never opened in place."""
    from gradlab import files

    replaced, real = [], os.replace
    monkeypatch.setattr(files.os, "replace", lambda a, b: (replaced.append(Path(b).name), real(a, b)))
    folder = finished(tmp_path, seeds=(0,))
    written = {p.name for p in folder.rglob("*") if p.is_file()}
    assert {"sweep.yaml", "summary.csv", "profile.csv", "metrics.csv", "summary.json"} <= written
    assert written <= set(replaced)


# --------------------------------------------------------------------------- 4. --set with --resume

def test_resume_with_set_is_refused_and_sweep_yaml_is_never_rewritten(tmp_path):
    folder = finished(tmp_path)
    spec = folder / "sweep.yaml"
    spec.write_text("# written by hand\n" + spec.read_text())
    mine = spec.read_bytes()
    result = cli("--resume", str(folder), "--set", "train.steps=7")
    assert_bad_input(result, "--set", "--resume", "sweep.yaml")
    assert spec.read_bytes() == mine

    (folder / "seed=1" / "summary.json").unlink()
    again = resume(folder)
    assert again.ran == 1 and spec.read_bytes() == mine
    assert table(folder).steps.tolist() == [3, 3]


# --------------------------------------------------------------------------- 5. a full disk

def test_a_full_disk_mid_sweep_exits_2_and_keeps_whole_files(tmp_path, monkeypatch):
    """The disk fills after k writes into the sweep folder, for k across the sweep's writes: one clear
    error naming the folder, no torn or temporary file, summary.csv whole; resume then gives the sweep
    an uninterrupted pass gives."""
    (tmp_path / "whole").mkdir()
    with monkeypatch.context() as m:  # counts the writes of a whole sweep
        count = Disk(m, tmp_path / "whole", errno.ENOSPC, after=10**9)
        whole = table(finished(tmp_path / "whole", seeds=(0, 1)))
    n = count.writes
    assert n > 15
    for k in sorted({0, 1, 2, 4, n // 2, n - 2, n - 1}):
        root = tmp_path / f"k{k}"
        root.mkdir()
        with monkeypatch.context() as m:
            Disk(m, root, errno.ENOSPC, after=k)
            with pytest.raises(ConfigError, match=r"(?i)no space left on device") as info:
                S.run_sweep(tiny(root / "runs", (0, 1)), workers=0)
        folders = [p for p in (root / "runs").glob("h-*")]
        assert len(folders) <= 1
        if not folders:  # the disk filled before the sweep folder was made: train's message names log.out
            assert k <= 1 and "cannot make a run folder" in str(info.value)
            continue
        folder = folders[0]
        assert f"no space left on device under {folder}" in str(info.value)
        assert leftovers(folder) == []
        if (folder / "summary.csv").exists():
            kept = table(folder)  # whole rows only, each a run whose folder is whole
            for run in kept.run:
                assert json.loads((folder / run / "summary.json").read_text())["status"] == "completed"
        if (folder / "sweep.yaml").exists():
            done = resume(folder)
            assert done.status == "completed"
            pd.testing.assert_frame_equal(table(folder).drop(columns="wall_time"), whole.drop(columns="wall_time"))


def test_a_full_disk_exits_2_from_the_command_line(tmp_path, monkeypatch, inline):
    spec = write_spec(tmp_path)
    Disk(monkeypatch, tmp_path / "runs", errno.ENOSPC, after=4)
    result = cli(str(spec), "--workers", "1", "-q")
    message = assert_bad_input(result, "no space left on device under", str(tmp_path / "runs"))
    assert "Traceback" not in message


def test_a_full_scratch_disk_in_a_worker_stops_the_sweep(tmp_path, monkeypatch):
    train_module = __import__("gradlab.train", fromlist=["train"])

    def full(*args, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_module, "train", full)
    with pytest.raises(ConfigError, match="no space left on device under"):
        S.run_sweep(tiny(tmp_path / "runs"), workers=0)


def test_resume_of_a_read_only_sweep_folder_exits_2(tmp_path, monkeypatch, inline):
    folder = finished(tmp_path)
    (folder / "seed=1" / "summary.json").unlink()
    before = sorted(p.name for p in folder.rglob("*"))
    Disk(monkeypatch, folder, errno.EACCES)
    result = cli("--resume", str(folder), "--workers", "1")
    assert_bad_input(result, str(folder), "cannot write")
    assert sorted(p.name for p in folder.rglob("*")) == before


# --------------------------------------------------------------------------- 6. a run whose process dies

def dies_on_seed_1(raw: dict, label: str, *rest):
    """A worker function that kills its own process for the run seed=1 (as a segfault or the OOM killer would)."""
    if label == "seed=1":
        os.kill(os.getpid(), signal.SIGKILL)
    return REAL_RUN(raw, label, *rest)


@pytest.mark.slow  # a pool of 2 whose worker dies and is replaced: 3 worker start-ups, some 4 s on idle cores
def test_a_run_whose_process_dies_is_crashed_and_the_sweep_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "run_combo", dies_on_seed_1)
    result = S.run_sweep(tiny(tmp_path / "runs", (0, 1, 2)), workers=2)
    folder = result.dir
    assert result.status == "completed" and result.ran == 3
    assert statuses(folder) == {"seed=0": "completed", "seed=1": "crashed", "seed=2": "completed"}
    row = table(folder).set_index("run").loc["seed=1"]
    assert "SIGKILL" in row.error and pd.isna(row.steps)
    crashed = json.loads((folder / "seed=1" / "summary.json").read_text())
    assert crashed["status"] == "crashed" and crashed["crashes"] == 1 and "SIGKILL" in crashed["error"]

    monkeypatch.setattr(S, "run_combo", REAL_RUN)  # --resume reruns it once (here, in this process)
    again = S.run_sweep(S.load_resume(folder), workers=0, resume=folder)
    assert again.ran == 1 and statuses(folder) == {f"seed={s}": "completed" for s in (0, 1, 2)}
    assert not (folder / "seed=1" / "error.txt").exists()


class Crashing:
    """The local executor's interface: the run seed=1 dies every time, the others run here."""

    def __init__(self, workers: int) -> None:
        pass

    def run(self, jobs):
        for job in jobs:
            yield ({"label": job[1], "crashed": "the worker process was killed by SIGKILL"} if job[1] == "seed=1"
                   else S.run_combo(*job))

    def close(self, cancel: bool = False) -> list:
        return []


def test_a_run_that_crashed_twice_stays_crashed(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "LocalExecutor", Crashing)
    first = S.run_sweep(tiny(tmp_path / "runs"), workers=1)
    again = S.run_sweep(S.load_resume(first.dir), workers=1, resume=first.dir)
    assert again.ran == 1 and statuses(first.dir)["seed=1"] == "crashed"
    assert json.loads((first.dir / "seed=1" / "summary.json").read_text())["crashes"] == 2
    third = S.run_sweep(S.load_resume(first.dir), workers=1, resume=first.dir)
    assert third.ran == 0 and third.status == "completed"
    assert statuses(first.dir) == {"seed=0": "completed", "seed=1": "crashed"}


class LoseScheduler:
    """Closes the whole Dask cluster once the first run came back."""

    def __init__(self, cluster) -> None:
        self.cluster = cluster

    def on_run(self, res: dict) -> None:
        self.cluster.close()


@pytest.mark.slow  # a Dask LocalCluster whose worker dies and restarts (the point): 20 s on busy cores
def test_on_dask_a_killed_worker_is_a_crashed_run_and_a_lost_scheduler_exit_2(tmp_path, monkeypatch):
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr(S, "run_combo", dies_on_seed_1)
    # no retry: a task on the worker that died ends as KilledWorker (Dask may count a task that waited on
    # the same worker with the one that killed it: such a run is crashed too, and --resume reruns it)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None,
                                      host="127.0.0.1") as cluster:
            result = S.run_sweep(tiny(tmp_path / "runs", (0, 1, 2)), scheduler=cluster.scheduler_address)
            assert result.status == "completed" and result.ran == 3
            found = table(result.dir).set_index("run")
            assert found.status["seed=1"] == "crashed" and "completed" in found.status.tolist()
            crashed = found[found.status == "crashed"]
            assert set(found.status) == {"completed", "crashed"} and crashed.error.str.startswith("KilledWorker").all()

            monkeypatch.setattr(S, "run_combo", REAL_RUN)
            again = S.run_sweep(S.load_resume(result.dir), scheduler=cluster.scheduler_address, resume=result.dir)
            assert again.ran == len(crashed) and set(statuses(result.dir).values()) == {"completed"}

            monkeypatch.setattr(S, "run_combo", slow_after_seed_0)
            address = cluster.scheduler_address
            with pytest.raises(ConfigError, match="lost the Dask scheduler") as info:
                S.run_sweep(tiny(tmp_path / "lost", (0, 1, 2)), scheduler=address, observers=[LoseScheduler(cluster)])
    assert "\n" not in str(info.value)
    folder = next((tmp_path / "lost").glob("h-*"))
    assert statuses(folder) == {"seed=0": "completed"}  # what came back is kept; --resume runs the rest


# --------------------------------------------------------------------------- 7, 8. signals

def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def workers_of(pid: int) -> list[int]:
    """Children of ``pid`` but multiprocessing's resource tracker."""
    return [c for c in children(pid) if b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(predicate, timeout: float) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


need_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
LONG = {"train": {"steps": 400000, "batch_size": 16}, "log": {"every": 100000}}


def long_spec(tmp_path: Path) -> Path:
    """A short run (steps=3) and two that take minutes."""
    spec = {"name": "h", "base": {**BASE, **LONG, "log": {**LONG["log"], "out": str(tmp_path / "runs")}},
            "grid": {"train.steps": [3, 400000, 400001]}}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def start(spec: Path, **kw) -> subprocess.Popen:
    """The sweep command in a process of its own; its output goes to files (a worker left alive would hold
    pipes open, and waiting for their end would wait for the worker)."""
    code = "import sys; from gradlab.cli import main; sys.argv[0] = 'gradlab'; main()"
    with open(spec.parent / "stdout.txt", "wb") as out, open(spec.parent / "stderr.txt", "wb") as err:
        return subprocess.Popen([sys.executable, "-c", code, "sweep", str(spec), "--workers", "2", "-q"],
                                stdout=out, stderr=err, **kw)


def stop_all(proc: subprocess.Popen, workers: list[int]) -> None:
    """The test's own processes end with it, whatever it found (a worker only while it is still one)."""
    proc.kill()
    proc.wait()
    for pid in workers:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


@need_proc
@pytest.mark.slow  # a real client and 2 spawned workers (the point), some 4 s
def test_kill_9_of_a_sweep_ends_its_workers(tmp_path):
    proc, workers = start(long_spec(tmp_path)), []
    try:
        assert wait_for(lambda: len(workers_of(proc.pid)) == 2, 60) is not None, "the workers never started"
        workers = workers_of(proc.pid)
        assert wait_for(lambda: list((tmp_path / "runs").glob("h-*/summary.csv")), 60) is not None
        proc.kill()
        proc.wait()
        gone = wait_for(lambda: not any(alive(w) for w in workers), 10)
        assert gone is not None, f"workers {workers} still alive 10 s after kill -9 of their sweep"
        print(f"workers gone {gone:.2f} s after kill -9")
    finally:
        stop_all(proc, workers)


@need_proc
@pytest.mark.slow  # a real client and 2 spawned workers (the point), some 4 s each
@pytest.mark.parametrize("how, code", [("SIGINT to the group", 130), ("SIGTERM", 143)])
def test_ctrl_c_and_sigterm_stop_the_workers_at_once_and_keep_what_finished(tmp_path, how, code):
    proc, workers = start(long_spec(tmp_path), start_new_session=True), []
    try:
        assert wait_for(lambda: list((tmp_path / "runs").glob("h-*/summary.csv")), 60) is not None
        workers = workers_of(proc.pid)
        assert len(workers) == 2
        t0 = time.monotonic()
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        proc.wait(timeout=30)
        took = time.monotonic() - t0
        stderr = (tmp_path / "stderr.txt").read_text()
        assert proc.returncode == code, stderr
        assert "Traceback" not in stderr
        assert took < 10, took
        print(f"{how}: exit {proc.returncode} after {took:.2f} s")
        assert wait_for(lambda: not any(alive(w) for w in workers), 5) is not None
        folder = next((tmp_path / "runs").glob("h-*"))
        assert statuses(folder) == {"steps=3,seed=0": "completed"}
        assert leftovers(folder) == []
    finally:
        stop_all(proc, workers)


@need_proc
def test_a_worker_stopped_by_ctrl_c_while_it_imports_says_nothing(capfd):
    """Ctrl-C reaches the whole process group: a worker still importing numpy must end quietly (or ignore
    it, once it serves), never with a traceback on the terminal; the client alone stops the sweep."""
    executor = S.LocalExecutor(1)
    worker = executor._start()
    pid = worker.proc.pid
    try:
        importing = wait_for(lambda: b"numpy" in Path(f"/proc/{pid}/maps").read_bytes(), 60)
        assert importing is not None, "the worker never imported numpy"
        os.kill(pid, signal.SIGINT)
        worker.proc.join(timeout=5)
        assert worker.proc.exitcode in (130, None)  # ended quietly, or already ignoring Ctrl-C
    finally:
        worker.stop(now=True)
        executor.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


def slow_after_seed_0(raw: dict, label: str, *rest):
    """seed=0 comes back at once, seed=1 after it (leaving a mark when done), the others after a minute. seed=1
    waits for seed=0's mark: on a loaded machine its worker could otherwise start first and finish first."""
    out = Path(raw["log"]["out"])
    if label not in ("seed=0", "seed=1"):
        time.sleep(60.0)
    if label == "seed=1":
        wait_for(lambda: (out / "seed=0.done").exists(), 60)
    res = REAL_RUN(raw, label, *rest)
    if label in ("seed=0", "seed=1"):
        (out / f"{label}.done").touch()
    return res


class LateCtrlC:
    """Ctrl-C in the client once seed=1 has finished in its worker, while the client was busy."""

    def __init__(self, out: Path) -> None:
        self.out = out

    def on_run(self, res: dict) -> None:
        wait_for(lambda: (self.out / "seed=1.done").exists(), 60)
        time.sleep(0.5)  # its result is on its way back
        raise KeyboardInterrupt


@need_proc
@pytest.mark.slow  # 2 spawned workers (the point), some 3 s on idle cores
def test_ctrl_c_keeps_the_runs_that_finished_meanwhile(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "run_combo", slow_after_seed_0)
    out = tmp_path / "runs"
    t0 = time.monotonic()
    result = S.run_sweep(tiny(out, (0, 1, 2, 3)), workers=2, observers=[LateCtrlC(out)])
    took = time.monotonic() - t0
    assert result.status == "interrupted"
    assert statuses(result.dir) == {"seed=0": "completed", "seed=1": "completed"}
    assert sorted(p.name for p in result.dir.iterdir() if p.is_dir()) == ["seed=0", "seed=1"]
    assert took < 50, took  # the runs of a minute were stopped, not waited for
    assert workers_of(os.getpid()) == []
    assert result.exit_code == 130


# --------------------------------------------------------------------------- 15. bad input, not a traceback

@pytest.mark.parametrize("base, fragment", [("''", "'base'"), (".", "'base'"), ("sub", "'base'"),
                                            ("latin1.yaml", "UTF-8"), ('"a\\0b"', "'base'"), ("a" * 5000, "'base'")],
                         ids=["empty", "dot", "folder", "latin1", "nul", "long"])
def test_bad_base_paths_exit_2(tmp_path, base, fragment):
    (tmp_path / "sub").mkdir()
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"base: {base}\nseeds: [0]\n", encoding="utf-8")
    assert_bad_input(cli(str(spec)), fragment)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "http://127.0.0.1:8786", "tcp://127.0.0.1",
                                     "tcp://:8786", "tcp://127.0.0.1:port"])
def test_scheduler_addresses_other_than_tcp_host_port_exit_2(tmp_path, address):
    result = cli(str(write_spec(tmp_path)), "--scheduler", address)
    assert_bad_input(result, f"--scheduler {address}", "tcp://HOST:PORT")
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_scheduler_fails_fast_and_leaves_no_folder(tmp_path):
    pytest.importorskip("distributed")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    result = cli(str(write_spec(tmp_path)), "--scheduler", f"tcp://127.0.0.1:{port}")
    took = time.monotonic() - t0
    assert_bad_input(result, "cannot reach the Dask scheduler")
    assert not list((tmp_path / "runs").glob("*")) if (tmp_path / "runs").exists() else True
    assert took < 8, took
    print(f"unreachable scheduler: exit 2 after {took:.2f} s")


@pytest.mark.parametrize("damage", [b"\xff\xfe", b"[1, 2]", b"null", b"{\"status\": ", b"\"completed\""])
def test_a_damaged_summary_json_is_rerun_not_a_traceback(tmp_path, damage):
    folder = finished(tmp_path, seeds=(0, 1, 2))
    (folder / "seed=2" / "summary.json").write_bytes(damage)
    (folder / "seed=0" / "summary.json").unlink()
    for files in (S._files_on_disk(folder / "seed=2"),):
        assert S._status_on_disk(files) == "failed"
        assert S.run_tables({}, files, "failed", 0.0)[0]["status"] == "failed"
    assert not S._completed(folder / "seed=2")

    class Stop:  # Ctrl-C after the first rerun: seed=2 is read back from its damaged folder
        def on_run(self, res):
            raise KeyboardInterrupt

    stopped = resume(folder, observers=[Stop()])
    assert stopped.status == "interrupted" and statuses(folder) == {"seed=0": "completed", "seed=1": "completed",
                                                                   "seed=2": "failed"}
    resume(folder)
    assert set(statuses(folder).values()) == {"completed"}


@pytest.mark.parametrize("seeds", ["3", "'0'", "{a: 1}", "[0, x]", "null"])
def test_a_sweep_yaml_whose_seeds_is_not_a_list_of_numbers_exits_2(tmp_path, seeds):
    folder = finished(tmp_path)
    spec = yaml.safe_load((folder / "sweep.yaml").read_text())
    text = yaml.safe_dump({k: v for k, v in spec.items() if k != "seeds"}) + f"seeds: {seeds}\n"
    (folder / "sweep.yaml").write_text(text)
    assert_bad_input(cli("--resume", str(folder)), "'seeds'")


def test_an_ignored_sigterm_stays_ignored_during_a_sweep():
    """A caller that ignores SIGTERM (nohup) keeps it ignored while a sweep runs, and gets it back after."""
    import signal

    from gradlab.sweep import _stop_signals

    before = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        stops: list[int] = []
        with _stop_signals(stops):
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
            signal.raise_signal(signal.SIGTERM)  # would raise KeyboardInterrupt if taken over
        assert stops == [] and signal.getsignal(signal.SIGTERM) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_the_first_worker_starts_with_sigint_blocked_though_the_resource_tracker_starts_too(tmp_path):
    """multiprocessing's resource tracker unblocks SIGINT after starting itself (bpo-33613): started inside
    the window where the client holds SIGINT, it let the first worker start with Ctrl-C open. In a fresh
    process (no tracker yet), every process the pool starts must start with SIGINT blocked."""
    script = tmp_path / "spy.py"
    script.write_text(
        "import signal\nfrom multiprocessing import util\n"
        "orig = util.spawnv_passfds\n"
        "def spy(path, args, fds):\n"
        "    print('blocked' if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []) else 'OPEN')\n"
        "    return orig(path, args, fds)\n"
        "util.spawnv_passfds = spy\n"
        "if __name__ == '__main__':\n"
        "    from gradlab.sweep import LocalExecutor\n"
        "    pool = LocalExecutor(1)\n"
        "    pool.idle.append(pool._start())\n"
        "    pool.close()\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["blocked", "blocked"]  # the tracker, then the worker
