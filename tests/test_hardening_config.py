"""Configs from folders people pass around: what they may import, and what the loader refuses or reads.

A config naming ``module:Class`` runs that module's code, so ``report`` imports nothing and the other
commands import only from the config's own folder (or an ``--allow-imports`` one). The loader refuses alias
bombs, files that are not regular or are too large, and numbers of the wrong type; it takes merge keys and
YAML 1.2 floats (``1e-3``).
"""
from __future__ import annotations

import itertools
import os
import shlex
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.config import MAX_NODES, ConfigError, config_from_dict, load_config, parse_yaml, read_text
from gradlab.config.yamlfile import dump_yaml
from gradlab.sweep import load_sweep, run_combo

from cli_helpers import assert_bad_input

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
CORPUS = ROOT / "tests" / "corpus"
DATA = {"kind": "spirals", "n_samples": 32, "noise": 0.1}
_ids = itertools.count()

# a module that leaves a marker file when it is imported, and holds a working layer
MARKING = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")

class Layer:
    def __init__(self):
        self.params, self.grads = {{}}, {{}}
    def forward(self, x, train=True):
        return x
    def backward(self, dout):
        return dout
"""


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def marking_module(folder: Path, marker: Path, package: str | None = None) -> str:
    """A module (or ``package.layers``) in ``folder`` that writes ``marker`` on import; its import name,
    unique to the test (imports are cached per name)."""
    name = f"marking_{next(_ids)}_{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    if package is None:
        (folder / f"{name}.py").write_text(MARKING.format(marker=str(marker)), encoding="utf-8")
        return name
    pkg = folder / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text(MARKING.format(marker=str(marker)), encoding="utf-8")
    (pkg / "layers.py").write_text(MARKING.format(marker=str(marker) + ".layers"), encoding="utf-8")
    return f"{name}.layers"


def write(path: Path, raw: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def tiny(model: dict, tmp_path: Path, **extra) -> dict:
    return {"name": "t", "data": DATA, "model": model, "train": {"steps": 3, "batch_size": 8},
            "log": {"out": str(tmp_path / "runs")}, **extra}


def custom_layers(spec: str) -> dict:
    return {"layers": [{"type": "dense", "units": 4}, {"type": "activation", "name": "tanh"},
                       {"type": "custom", "class": spec}]}


# --------------------------------------------------------------------------- report never imports

def test_report_of_a_hand_made_run_folder_imports_nothing(tmp_path, monkeypatch):
    """A run folder whose config.yaml names evil:Layer with import_dir '.' and an evil.py beside it that
    writes a marker on import, reported from inside it (`gradlab report .`): report reads the tables, shows
    the class name as text, and never imports."""
    result = gradlab.train(config_from_dict(tiny({"depth": 2, "width": 4}, tmp_path)))
    run = Path(result.run_dir)
    marker = tmp_path / "imported.txt"
    name = marking_module(run, marker)
    raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    raw["model"] = {**raw["model"], **custom_layers(f"{name}:Layer"), "import_dir": "."}
    for key in ("depth", "width", "activation", "residual", "batchnorm", "dropout"):
        raw["model"].pop(key, None)
    write(run / "config.yaml", raw)
    monkeypatch.chdir(run)
    outcome = cli("report", ".")
    assert outcome.exit_code in (0, 2), outcome.output
    assert "Traceback" not in outcome.output
    assert not marker.exists() and name not in sys.modules
    if outcome.exit_code == 0:
        assert f"{name}:Layer" in (run / "report.html").read_text(encoding="utf-8")


# --------------------------------------------------------------------------- the import rule

def test_an_installed_module_is_refused_unless_its_folder_is_allowed(tmp_path, monkeypatch):
    """site/<pkg>/ stands for site-packages: importable, but outside the config's folder."""
    site, marker = tmp_path / "site", tmp_path / "imported.txt"
    spec = marking_module(site, marker, package="pkg") + ":Layer"
    monkeypatch.syspath_prepend(str(site))
    config = write(tmp_path / "cfg" / "exp.yaml", tiny(custom_layers(spec), tmp_path))
    package = site / spec.split(".")[0]
    message = assert_bad_input(cli("train", config, "-q"), str(config), "'model.layers[2].class'",
                               f"module '{spec.partition(':')[0]}'", str(package / "__init__.py"),
                               f"--allow-imports {package}", "runs that module's code")
    assert not marker.exists(), message
    ok = cli("train", config, "-q", "--allow-imports", package)
    assert ok.exit_code == 0, ok.output
    assert marker.exists() and Path(str(marker) + ".layers").exists()


def test_a_standard_library_module_is_refused(tmp_path):
    config = write(tmp_path / "exp.yaml", tiny({"depth": 1, "width": 2, "activation": "this:X"}, tmp_path))
    assert_bad_input(cli("check", config), "'model.activation'", "module 'this'", "this.py", "--allow-imports")
    rnn = tiny({"kind": "rnn", "cell": "sys:X", "hidden": 2}, tmp_path, data={"kind": "adding", "T": 3},
               loss="mse")
    assert_bad_input(cli("train", write(tmp_path / "rnn.yaml", rnn)), "'model.cell'", "module 'sys'",
                     "built into Python")


@pytest.mark.parametrize("import_dir", ["..", "/", "link"])
def test_an_import_dir_outside_the_config_folder_is_refused(tmp_path, import_dir):
    """'..' and '/' lie outside; so does 'link', a symlink inside the folder to a folder outside it."""
    far, marker = tmp_path / "far", tmp_path / "imported.txt"
    name = marking_module(far, marker)
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "link").symlink_to(far, target_is_directory=True)
    model = {"depth": 1, "width": 2, "activation": f"{name}:Layer", "import_dir": import_dir}
    config = write(folder / "exp.yaml", tiny(model, tmp_path))
    home = (folder / import_dir).resolve()
    assert_bad_input(cli("train", config), "'model.import_dir'", f"{home} lies outside the config's folder",
                     f"--allow-imports {home}")
    assert not marker.exists()


def test_a_module_file_symlinked_from_outside_is_refused(tmp_path):
    far, marker = tmp_path / "far", tmp_path / "imported.txt"
    name = marking_module(far, marker)
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / f"{name}.py").symlink_to(far / f"{name}.py")
    config = write(folder / "exp.yaml", tiny({"depth": 1, "width": 2, "activation": f"{name}:Layer"}, tmp_path))
    assert_bad_input(cli("check", config), "'model.activation'", str(far / f"{name}.py"), f"--allow-imports {far}")
    assert not marker.exists()


def test_import_dir_inside_the_folder_and_allowed_folders_work(tmp_path):
    marker = tmp_path / "imported.txt"
    name = marking_module(tmp_path / "cfg" / "layers", marker)
    model = {"depth": 1, "width": 2, "activation": f"{name}:Layer", "import_dir": "layers"}
    config = load_config(write(tmp_path / "cfg" / "exp.yaml", tiny(model, tmp_path)))
    assert config.model.import_dir == str(tmp_path / "cfg" / "layers") and marker.exists()
    far = tmp_path / "far"
    other = marking_module(far, tmp_path / "other.txt")
    model = {"depth": 1, "width": 2, "activation": f"{other}:Layer", "import_dir": str(far)}
    path = write(tmp_path / "cfg" / "far.yaml", tiny(model, tmp_path))
    with pytest.raises(ConfigError, match="outside the config's folder"):
        load_config(path)
    assert load_config(path, allow_imports=[far]).model.import_dir == str(far)
    with pytest.raises(ConfigError, match=r"--allow-imports .*nowhere: no such folder"):
        load_config(path, allow_imports=[tmp_path / "nowhere"])


def test_a_sweep_refuses_on_the_client_and_in_the_worker(tmp_path, monkeypatch):
    """The client validates every combination under the rule; a worker handed a config whose module lies
    outside the folders it was told to allow refuses it too (the run fails; nothing is imported)."""
    far, marker = tmp_path / "far", tmp_path / "imported.txt"
    name = marking_module(far, marker)
    model = {"depth": 1, "width": 2, "activation": f"{name}:Layer", "import_dir": str(far)}
    write(tmp_path / "cfg" / "base.yaml", tiny(model, tmp_path))
    sweep = write(tmp_path / "cfg" / "sweep.yaml", {"base": "base.yaml", "grid": {"model.width": [2, 3]}})
    assert_bad_input(cli("sweep", sweep, "-q"), "'model.import_dir'", "--allow-imports")
    with pytest.raises(ConfigError, match="outside the config's folder"):
        load_sweep(sweep)
    assert not marker.exists()
    resolved = load_sweep(sweep, allow_imports=[far]).combos[0].config.resolved()
    marker.unlink()
    sys.modules.pop(name)
    monkeypatch.chdir(far)  # the worker's own folder must not count as allowed
    res = run_combo(resolved, "w", {"folder": str(tmp_path / "cfg"), "allow_imports": ()})
    assert res["status"] == "failed" and b"--allow-imports" in res["files"]["error.txt"]
    assert not marker.exists()
    assert run_combo(resolved, "w", {"folder": str(tmp_path / "cfg"), "allow_imports": (str(far),)})["status"] \
        == "completed"


def test_report_try_follows_the_rule(tmp_path):
    """A run trained from a config beside its module: --try trains again, so the module's folder (outside
    the run folder) must be allowed; without --try, --allow-imports has nothing to allow."""
    folder = tmp_path / "cfg"
    name = marking_module(folder, tmp_path / "imported.txt")
    model = {"depth": 3, "width": 4, "activation": f"{name}:Layer", "init": {"scheme": "normal", "std": 0.01}}
    result = gradlab.train(load_config(write(folder / "exp.yaml", tiny(model, tmp_path))))
    run = Path(result.run_dir)
    assert gradlab.reports.diagnose_dir(run), "the tiny run must offer remedies to try"
    assert_bad_input(cli("report", run, "--try", "--steps", "2", "--workers", "1"), "'model.import_dir'",
                     f"--allow-imports {folder}")
    assert not (run / "remedies.csv").exists()
    assert_bad_input(cli("report", run, "--allow-imports", folder), "go with --try")


def shipped_configs() -> list[Path]:
    return sorted([*EXAMPLES.glob("*.yaml"), *CORPUS.glob("*.yaml")])


@pytest.mark.parametrize("path", shipped_configs(), ids=lambda p: p.name)
def test_every_shipped_config_validates_without_the_flag(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # from anywhere: their modules sit beside them
    config = load_config(path)
    assert config.model.import_dir in (None, str(path.parent))


# --------------------------------------------------------------------------- YAML

def bomb(levels: int, width: int = 10, indent: str = "") -> str:
    """A billion laughs as mapping lines: each level a list of ``width`` aliases of the level before."""
    lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels)]
    return "".join(f"{indent}{line}\n" for line in lines)


BOMB_CONFIG = """name: t
data: {kind: spirals, n_samples: 32}
model:
  layers:
    - {type: dense, units: 4}
    - type: custom
      class: %s:Swish
      args:
%s"""


def swish_beside(folder: Path) -> str:
    """examples/custom_layer.py copied into ``folder`` under a name of its own; that name."""
    name = f"swish_{next(_ids)}_{os.getpid()}"
    (folder / f"{name}.py").write_text((EXAMPLES / "custom_layer.py").read_text(encoding="utf-8"), encoding="utf-8")
    return name


def test_an_alias_bomb_in_custom_layer_args_is_refused_at_once(tmp_path):
    """1.5 kB whose args expand to 10^9 values: refused while parsing, before anything is built or written."""
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB_CONFIG % (swish_beside(tmp_path), bomb(9, indent="        ")), encoding="utf-8")
    assert path.stat().st_size < 1600
    t0 = time.perf_counter()
    message = assert_bad_input(cli("train", path, "--set", f"log.out={tmp_path / 'runs'}"), str(path),
                               "YAML error", f"more than {MAX_NODES:,} values")
    seconds = time.perf_counter() - t0
    assert seconds < 10, (seconds, message)  # measured: 0.01 s for the parse; unbounded it ran past 120 s
    assert not (tmp_path / "runs").exists()


def test_an_alias_bomb_in_a_sweep_grid_is_refused(tmp_path):
    """The swept value is a custom layer's args, where any data is allowed."""
    path = tmp_path / "sweep.yaml"
    base = yaml.safe_dump(tiny(custom_layers(f"{swish_beside(tmp_path)}:Swish"), tmp_path))
    args = bomb(8, indent="      ").replace("      l0:", "    - l0:", 1)
    path.write_text("base:\n" + textwrap.indent(base, "  ") + "grid:\n  model.layers.2.args:\n" + args,
                    encoding="utf-8")
    assert_bad_input(cli("sweep", path, "-q"), str(path), f"more than {MAX_NODES:,} values")
    assert not (tmp_path / "runs").exists()


def test_aliases_within_the_bound_still_work():
    data = parse_yaml(bomb(3), "t")  # 10^3 values
    assert len(data["l2"]) == 10 and data["l2"][0][0] == ["x"] * 10
    with pytest.raises(ConfigError, match="more than"):
        parse_yaml("a: &a [1, *a]\n", "t")  # an alias inside its own anchor expands forever


MERGED = """name: merged
data: {kind: spirals, n_samples: 32}
model:
  layers:
    - &dense {type: dense, units: 8}
    - &act {type: activation, name: tanh}
    - {<<: *dense, units: 4}
    - *act
train: {steps: 2, batch_size: 8}
"""


def test_merge_keys_are_read_and_a_key_written_twice_is_still_an_error(tmp_path):
    path = tmp_path / "merged.yaml"
    path.write_text(MERGED, encoding="utf-8")
    layers = load_config(path).model.layers
    assert [(item.type, getattr(item, "units", None)) for item in layers] == [
        ("dense", 8), ("activation", None), ("dense", 4), ("activation", None)]  # its own units win
    raw = parse_yaml("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], z: 3}\n", "t")
    assert raw["c"] == {"x": 1, "y": 1, "z": 3}  # the first merged mapping wins, the mapping's own key most
    for text, fragment in [("data: {kind: spirals, kind: moons}\n", "duplicate key 'kind' (line 1)"),
                           ("a: &a {x: 1}\nb: {<<: *a, y: 1, y: 2}\n", "duplicate key 'y' (line 2)"),
                           ("a: &a {x: 1}\nb: {<<: *a, <<: *a}\n", "duplicate key '<<' (line 2)"),
                           ("b: {<<: 3}\n", "'<<' merges a mapping or a list of mappings, not a scalar")]:
        with pytest.raises(ConfigError, match="YAML error") as info:
            parse_yaml(text, "t")
        assert fragment in str(info.value)
    ok = cli("train", path, "-q", "--set", f"log.out={tmp_path / 'runs'}")
    assert ok.exit_code == 0, ok.output


# --------------------------------------------------------------------------- numbers are numbers

def minimal(**model) -> dict:
    return {"data": dict(DATA), "model": {"depth": 2, "width": 4, **model}}


@pytest.mark.parametrize("override, fragment", [
    ("model.depth=true", "'model.depth': should be a whole number, e.g. 3 or 1e4 (true, 1.5 and \"3\" are not) (got True)"),
    ("model.depth=1.5", "'model.depth': should be a whole number"),
    ("model.depth='3'", "(got '3')"),
    ("train.steps=false", "'train.steps': should be a whole number"),
    ("data.n_samples=64.5", "'data.n_samples': should be a whole number"),
    ("seed=true", "'seed': should be a whole number"),
    ("train.lr=true", "'train.lr': should be a number, e.g. 0.1 or 1e-3 (true and \"0.1\" are not) (got True)"),
    ("train.lr='0.1'", "'train.lr': should be a number"),
    ("model.dropout=yes", "'model.dropout': should be a number"),  # yes is YAML 1.1's true
    ("train.shuffle=1", "'train.shuffle': should be true or false (got 1)"),
])
def test_booleans_and_strings_are_not_numbers(override, fragment):
    with pytest.raises(ConfigError) as info:
        config_from_dict(minimal(), [override])
    assert fragment in str(info.value)


def test_float_keys_take_ints_and_yaml_1_2_floats(tmp_path):
    config = config_from_dict(minimal(), ["train.lr=1", "model.bias_init=0", "train.l2=1e-4", "check.eps=2e-06"])
    assert (config.train.lr, config.model.bias_init, config.train.l2, config.check.eps) == (1.0, 0.0, 1e-4, 2e-06)
    assert all(isinstance(v, float) for v in (config.train.lr, config.model.bias_init))
    path = write(tmp_path / "exp.yaml", minimal())
    path.write_text(path.read_text(encoding="utf-8") + "train: {lr: 1e-3, steps: 1e2}\n", encoding="utf-8")
    config = load_config(path)  # YAML reads 1e2 as a float; a whole one is the count it names
    assert (config.train.lr, config.train.steps, type(config.train.steps)) == (1e-3, 100, int)
    with pytest.raises(ConfigError, match=r"'train.steps': should be a whole number, .*\(got 100.5\)"):
        load_config(path, ["train.steps=100.5"])


EPS_LAYER = """
import numpy as np

class Norm:
    def __init__(self, eps=1e-5):
        if not isinstance(eps, float):
            raise TypeError(f"eps must be a float, not {type(eps).__name__}")
        self.eps, self.params, self.grads = eps, {}, {}
    def forward(self, x, train=True):
        return x / np.sqrt(1.0 + self.eps)
    def backward(self, dout):
        return dout / np.sqrt(1.0 + self.eps)
"""


def test_custom_layer_args_in_exponent_notation_arrive_as_floats(tmp_path):
    """args: {eps: 2e-06} reached the layer as the string '2e-06' (YAML 1.1) and check ended in exit 1."""
    name = f"eps_layer_{next(_ids)}_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(EPS_LAYER, encoding="utf-8")
    model = {"layers": [{"type": "dense", "units": 4}, {"type": "custom", "class": f"{name}:Norm",
                                                        "args": {"eps": "EPS"}}]}
    path = write(tmp_path / "exp.yaml", tiny(model, tmp_path, check={"batch": 4}))
    path.write_text(path.read_text(encoding="utf-8").replace("EPS", "2e-06"), encoding="utf-8")
    assert load_config(path).model.layers[1].args == {"eps": 2e-06}
    outcome = cli("check", path)
    assert outcome.exit_code == 0, outcome.output


# --------------------------------------------------------------------------- clear messages

def test_an_unknown_model_kind_names_the_key_the_value_and_the_kinds():
    for kind, shown in (("transformer", "'transformer'"), (3, "3")):
        with pytest.raises(ConfigError) as info:
            config_from_dict({"data": DATA, "model": {"kind": kind}})
        assert str(info.value) == f"<config>: 'model.kind' is {shown}; allowed: 'mlp', 'rnn', 'cnn'."


def test_a_list_index_that_is_not_one_says_which_are_allowed():
    raw = {"data": DATA, "model": custom_layers("custom_layer:Swish")}
    for override, fragment in [("model.layers[-1].units=3", "'-1' is not an index of that list (allowed: 0..2; "
                                                            "counting from the end (-1) is not supported)"),
                               ("model.layers.units=3", "'units' is not an index of that list (allowed: 0..2)"),
                               ("model.layers[3].units=3", "'3' is not an index of that list (allowed: 0..2)")]:
        with pytest.raises(ConfigError) as info:
            config_from_dict(raw, [override])
        assert str(info.value) == f"--set {shlex.quote(override)}: {fragment}."
    message = assert_bad_input(cli("train", EXAMPLES / "custom_ok.yaml", "--set", "model.layers[-1].name=tanh"))
    assert "counting from the end (-1) is not supported" in message


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder"])
def test_what_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, special):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "fifo.yaml", "folder": tmp_path}[special]
    if special == "fifo":
        os.mkfifo(path)  # nobody writes: reading it would wait for ever
    kind = {"/dev/zero": "a character device", "fifo": "a FIFO (named pipe)", "folder": "a folder"}[special]
    assert_bad_input(cli("train", path), f"{path}: {kind}, not a config file; allowed: a regular YAML file of at "
                                         "most 5 MB.")
    assert_bad_input(cli("check", path), f"{path}: {kind}")
    with pytest.raises(ConfigError, match="not a sweep file"):
        read_text(path, "sweep")


def test_a_config_over_5_mb_is_refused_naming_it(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\n" + "# padding\n" * 600_000, encoding="utf-8")
    assert_bad_input(cli("train", path), f"{path}: over 5 MB, too large for a config file")
    path.write_text("name: t\n", encoding="utf-8")
    assert read_text(path) == "name: t\n"
    with pytest.raises(ConfigError, match=r"nothere\.yaml: sweep file not found\."):
        read_text(tmp_path / "nothere.yaml", "sweep")


# --------------------------------------------------------------------------- the loader, seeded properties

SCALARS = st.one_of(st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.booleans(), st.none(), st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
                                                      max_size=12))
DATA_TREES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text("abcxyz_", min_size=1, max_size=6), inner, max_size=4)),
    max_leaves=20)


@settings(max_examples=80, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DATA_TREES)
@example("0E0").via("a string safe_dump writes plain (YAML 1.1 floats need a dot): a float to YAML 1.2")
@example({"name": "1e5"}).via("a run name that looks like a number")
def test_the_loader_reads_back_what_yaml_writes(data):
    """Whatever dump_yaml writes (numbers, 1e-05-style floats, strings that look like numbers), the loader
    reads back as the same data, and so does PyYAML's own safe_load: the YAML 1.2 float resolver turns no
    string or int into a float."""
    text = dump_yaml({"v": data})
    assert parse_yaml(text, "t") == {"v": data} == yaml.safe_load(text)


def test_safe_dump_alone_writes_some_strings_the_loader_reads_as_floats():
    """Why the writers use dump_yaml: PyYAML's safe_dump follows YAML 1.1, where 1e5 is a string."""
    assert yaml.safe_dump({"name": "1e5"}) == "name: 1e5\n" and parse_yaml("name: 1e5\n", "t") == {"name": 1e5}
    assert dump_yaml({"name": "1e5"}) == "name: '1e5'\n"


@settings(max_examples=80, derandomize=True, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False), st.integers(-10**9, 10**9))
@example(1e-3, 0).via("lr: 1e-3")
@example(2e-06, 1).via("args: {eps: 2e-06}")
@example(1e5, -7).via("1e5, which YAML 1.1 reads as a string")
@example(1e16, 10**9).via("repr gives 1e+16")
def test_numbers_in_any_notation_read_as_their_type(x, n):
    for text in (repr(x), f"{x:e}", f"{x:E}", f"{x:g}"):
        value = parse_yaml(f"v: {text}", "t")["v"]
        assert isinstance(value, (float, int)) and not isinstance(value, bool) and value == float(text), text
    assert parse_yaml(f"v: {n}", "t")["v"] == n and type(parse_yaml(f"v: {n}", "t")["v"]) is int
    assert parse_yaml(f"v: '{x:e}'", "t")["v"] == f"{x:e}"  # quoted, it stays a string


@settings(max_examples=60, derandomize=True, deadline=None)
@given(st.integers(2, 12), st.integers(2, 30))
def test_the_alias_bound_is_exact_and_fast(width, levels):
    """The expanded count is width^levels-ish; the loader refuses exactly those over MAX_NODES, each
    decided without expanding anything."""
    text = bomb(levels, width)
    size = [1 + width]  # level 0: a list of width scalars
    for _ in range(1, levels):
        size.append(1 + width * size[-1])  # a list of width aliases of the level before
    expanded = 1 + sum(1 + s for s in size)  # the root mapping, each key and its list
    t0 = time.perf_counter()
    try:
        parse_yaml(text, "t")
        refused = False
    except ConfigError:
        refused = True
    assert refused == (expanded > MAX_NODES), (width, levels, expanded)
    assert time.perf_counter() - t0 < 5
