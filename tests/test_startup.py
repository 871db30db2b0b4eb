"""Start-up: what the command line imports before it does anything, in a fresh interpreter each time.

``gradlab --help`` waits for nothing but typer and rich; a command loads numpy, pydantic and the parts of
gradlab it needs when it runs, and pandas, matplotlib and dask only where they are used (a CSV data set,
a report, a sweep on Dask). The timings are in benchmarks/bench_cli.py; here, the facts that make them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
# markdown_it: typer's rich help panels import rich.markdown and with it markdown_it (~0.15 s of a 0.4 s
# --help); gradlab's help is click's plain text (rich_markup_mode=None)
HEAVY = ("numpy", "pandas", "matplotlib", "dask", "distributed", "pydantic", "yaml", "threadpoolctl", "markdown_it")

# runs the command in-process, then prints which heavy packages it had imported and how it ended
RUN = """
import json, sys
argv = sys.argv[1:]
sys.argv = ["gradlab", *argv]
code = None
try:
    if argv == ["--import-only"]:
        import gradlab.cli
    else:
        import gradlab.cli
        gradlab.cli.app()
except SystemExit as exc:
    code = exc.code
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print(json.dumps({"loaded": loaded, "code": code}), file=sys.stderr)
""" % (HEAVY,)


def loaded_by(*argv: str, cwd: Path = ROOT) -> tuple[set[str], object]:
    """The heavy packages a fresh interpreter has imported after ``gradlab ARGV``, and its exit code."""
    proc = subprocess.run([sys.executable, "-c", RUN, *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    last = proc.stderr.strip().splitlines()[-1]
    found = json.loads(last)
    return set(found["loaded"]), found["code"]


def test_importing_the_command_line_loads_none_of_the_heavy_packages():
    loaded, _ = loaded_by("--import-only")
    assert loaded == set()


def test_help_loads_none_of_them():
    loaded, code = loaded_by("--help")
    assert code == 0
    assert loaded == set()


@pytest.mark.parametrize("command", ["train", "check", "sweep", "report"])
def test_a_commands_help_loads_no_numpy_pandas_or_matplotlib(command):
    """typer itself imports pydantic to parse a command's options (its TypeAdapters): the rest stays out."""
    loaded, code = loaded_by(command, "--help")
    assert code == 0
    assert loaded <= {"pydantic"}


def test_a_directional_check_loads_no_pandas_matplotlib_or_dask():
    loaded, code = loaded_by("check", str(QUICKSTART), "--mode", "directional")
    assert code == 0
    assert {"numpy", "pydantic", "yaml", "threadpoolctl"} <= loaded  # it did run the check
    assert not loaded & {"pandas", "matplotlib", "dask", "distributed"}


def test_a_quiet_training_run_loads_no_pandas_or_matplotlib(tmp_path):
    """train -q writes its CSVs with the csv module and skips the report: no pandas, no matplotlib."""
    loaded, code = loaded_by("train", str(QUICKSTART), "-q", "--set", "train.steps=2",
                             "--set", f"log.out={tmp_path}")
    assert code == 0
    assert "numpy" in loaded
    assert not loaded & {"pandas", "matplotlib", "dask", "distributed"}


def test_every_public_name_resolves_to_what_its_module_defines():
    code = """
import importlib, gradlab
import gradlab.check.command, gradlab.report.load, gradlab.train  # the subpackages, as the commands load them
from gradlab import _NAMES
for name in gradlab.__all__:
    value = getattr(gradlab, name)
    if name == "__version__":
        continue
    module, attr = _NAMES[name]
    expected = importlib.import_module(module)
    expected = expected if attr is None else getattr(expected, attr)
    assert value is expected, name
assert callable(gradlab.check) and gradlab.check.__module__ == "gradlab.check.runner"
assert callable(gradlab.report) and callable(gradlab.train)
assert gradlab.gradcheck.__name__ == "gradlab.check" and gradlab.reports.__name__ == "gradlab.report"
assert gradlab.sweeps.__name__ == "gradlab.sweep"
assert set(gradlab.__all__) <= set(dir(gradlab))
check = gradlab.gradcheck
for name in check.__all__:
    assert getattr(check, name) is not None, name
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_submodule_is_an_attribute_after_a_bare_import_as_before():
    code = """
import gradlab
assert gradlab.nn.Dense.__name__ == "Dense" and callable(gradlab.sweep.run_sweep)
assert callable(gradlab.logging.jsonable) and gradlab.optim.__name__ == "gradlab.optim"
assert callable(gradlab.train) and gradlab.train.__module__ == "gradlab.train"  # the function, not the module
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_an_unknown_name_is_an_attribute_error():
    import gradlab

    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        gradlab.nothing  # noqa: B018
    with pytest.raises(AttributeError, match="no attribute 'np'"):
        gradlab.gradcheck.np  # noqa: B018 - a module's own import is not a name of the package


# --------------------------------------------------------------------------- Ctrl-C while it starts

def mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


GUARD = """
import signal, sys
import gradlab, gradlab.boot as boot, gradlab.cli as cli, gradlab.console as console
seen = {}
parse, load = console.Command.parse_args, gradlab.load_config
def parse_args(self, ctx, args):  # typer parses the command's options: pydantic's TypeAdapters are built
    seen["parse"] = signal.getsignal(signal.SIGINT) is boot._exit_quietly
    return parse(self, ctx, args)
def load_config(*args, **kwargs):  # the command runs
    seen["run"] = signal.getsignal(signal.SIGINT) is console._interrupt  # records the signal, raises KeyboardInterrupt
    return load(*args, **kwargs)
console.Command.parse_args, gradlab.load_config = parse_args, load_config
sys.argv = ["gradlab", "check", sys.argv[1], "--mode", "directional"]
try:
    cli.app()
except SystemExit as exc:
    print(seen, exc.code)
"""


def test_the_options_are_parsed_under_boots_guard_and_the_command_runs_under_its_own():
    """Between the start and the command's own handling, a Ctrl-C exits quietly (boot); once the command runs,
    it raises KeyboardInterrupt, which the command turns into 'interrupted' and 130."""
    env = {**os.environ, "GRADLAB_WORKER": "1"}  # boot guards this interpreter as it guards the command
    proc = subprocess.run([sys.executable, "-c", GUARD, str(QUICKSTART)], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "{'parse': True, 'run': True} 0", proc.stdout + proc.stderr


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/PID/maps to time the signal")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_the_command_loads_numpy_is_quiet(sig):
    """numpy loads once the check runs (its own handling: 'interrupted', 130; 'terminated', 143): never a
    traceback, never click's 'Aborted!' with exit 1."""
    proc = subprocess.Popen([sys.executable, "-m", "gradlab", "check", str(QUICKSTART), "--mode", "directional"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while proc.poll() is None and not mapped(proc.pid, "numpy") and time.monotonic() < deadline:
        time.sleep(0.002)
    if proc.poll() is not None:
        pytest.skip("the check ended before numpy was seen loading")
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], output
    assert "Traceback" not in output and "Abort" not in output, output
    assert output.strip() == {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated (SIGTERM)"}[sig]


@pytest.mark.slow
def test_bench_cli_quick_times_every_side_and_checks_how_each_ended(capsys):
    """Five fresh interpreters, one running a check: some 3 s on an idle machine, 12 s at load 6."""
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the script imports protocol from its own folder
    try:
        import bench_cli
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert bench_cli.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in ("python -c pass", "typer app --help", "gradlab --help", "gradlab train --help",
                 "gradlab check --mode directional"):
        assert f"ok: {name}: exit 0 every run (1)" in out
        assert f"\n{name}: " in out
    assert "load average" in out
