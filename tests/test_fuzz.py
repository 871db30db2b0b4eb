"""Fuzz: mutated configs, ``--set`` lists, sweep files and damaged run folders, through the Python API and
the command line (in-process), must end in exit 0, 2 or 3 (API: a result, or ``gradlab.ConfigError`` and
nothing else), never print a traceback or a numpy RuntimeWarning, and never write outside the run folder.

Data files (CSV and .npz) are generated too. Each example runs in a fresh folder ``work`` (the current
directory; runs go to ``work/runs``) beside a sentinel folder ``outside`` that holds the files the inputs
point at through planted symlinks (a data CSV, a config, report.html and summary.tmp in damaged run folders)
and a module ``evil`` that, if ever imported, writes into ``outside``. After every example everything but
``work/runs`` is compared with its snapshot, byte for byte.

Sizes stay tiny (at most 3 steps, width 6, 32 samples; a mutated size key only ever gets a small number) so
an example takes milliseconds, except those that spawn sweep workers or draw plots. Seeded (derandomize)
and bounded; GRADLAB_FUZZ_SHRINK=1 shrinks a failure to a minimal input (slow), GRADLAB_FUZZ_SCALE=N
runs N times the examples.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import os
import shutil
import stat
import sys
import tempfile
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app

PHASES = [Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("GRADLAB_FUZZ_SHRINK") else [])


def fuzz(examples: int):
    """Seeded and bounded; GRADLAB_FUZZ_SCALE=10 runs ten times as many examples (a longer hunt)."""
    return settings(max_examples=examples * int(os.environ.get("GRADLAB_FUZZ_SCALE", "1")), deadline=None,
                    derandomize=True, database=None, phases=PHASES,
                    suppress_health_check=list(HealthCheck), print_blob=False)


# --------------------------------------------------------------------------- the inputs

BASES = {
    "spirals": {
        "name": "fz", "seed": 0,
        "data": {"kind": "spirals", "n_samples": 32, "noise": 0.1, "val_fraction": 0.25},
        "model": {"depth": 2, "width": 4, "activation": "tanh", "init": "xavier_normal", "residual": False},
        "loss": "cross_entropy",
        "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 8, "steps": 3, "clip": 1.0},
        "log": {"every": 1, "val_every": 2},
        "check": {"batch": 4, "mode": "full"},
    },
    "layers": {
        "name": "fz-layers",
        "data": {"kind": "teacher", "n_samples": 24, "n_features": 3, "depth": 1, "width": 4},
        "model": {"layers": [{"type": "dense", "units": 5}, {"type": "activation", "name": "relu"},
                             {"type": "batchnorm"}, {"type": "custom", "class": "mylayer:Scale", "args": {"c": 0.5}},
                             {"type": "dropout", "p": 0.1}, {"type": "dense", "units": 3}],
                  "init": {"scheme": "normal", "std": 0.3}},
        "loss": "mse",
        "train": {"optimizer": {"name": "momentum", "momentum": 0.9}, "lr": 0.05, "batch_size": "full",
                  "steps": 2, "clip": {"mode": "value", "threshold": 0.5, "scope": "layer"}, "l2": 0.001},
    },
    "rnn": {
        "name": "fz-rnn", "seed": 1,
        "data": {"kind": "adding", "T": 3, "n_samples": 16},
        "model": {"kind": "rnn", "cell": "lstm", "hidden": 3, "forget_bias": 1.0},
        "loss": "mse",
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 4, "steps": 2, "bptt": {"truncate": 2}},
        "check": {"batch": 2},
    },
    "copy": {
        "name": "fz-copy",
        "data": {"kind": "copy", "T": 6, "n_symbols": 3, "length": 2, "n_samples": 16, "val_fraction": 0.25},
        "model": {"kind": "rnn", "cell": "gru", "hidden": 3, "num_layers": 2, "recurrent_init": {"scheme": "identity",
                                                                                                 "scale": 1.0}},
        "loss": "cross_entropy",
        "train": {"optimizer": {"name": "adam", "beta1": 0.8}, "lr": 0.01, "batch_size": 8, "steps": 2, "clip": 1.0},
        "log": {"every": 2},
    },
    "csv": {
        "name": "fz-csv",
        "data": {"kind": "csv", "path": "data.csv", "target": "label", "val_fraction": 0.0},
        "model": {"depth": 1, "width": 3, "activation": {"name": "leaky_relu", "alpha": 0.1}, "batchnorm": True},
        "loss": "bce",
        "train": {"optimizer": "sgd", "lr": 0.1, "epochs": 1, "batch_size": 16},
    },
}
# keys whose valid values make a run bigger or longer: a mutation gives them small values only
SIZE_KEYS = {"steps", "epochs", "width", "depth", "n_samples", "units", "hidden", "num_layers", "T", "batch",
             "samples", "directions", "n_features", "n_classes", "n_outputs", "length", "n_symbols",
             "batch_size", "truncate", "every", "val_every"}
NO_DROP = {("train",), ("train", "steps"), ("train", "epochs")}  # the defaults (500 steps) take seconds
NO_TOUCH = {("log", "out")}  # where runs go is the test's own choice (work/runs)
# strings worth trying: names valid elsewhere, imports from outside the config's folder, paths, YAML-ish text
STRINGS = ["relu", "he_normal", "adam", "full", "lstm", "gru", "vanilla", "mlp", "rnn", "cnn", "moons", "parity",
           "norm", "value", "sigmoid", "orthogonal", "identity", "momentum", "mse", "layer",
           "float32", "evil:Layer", "mylayer:Scale", "os:system", "this:X", "../outside", ".", "", "..", "/",
           "data.csv", "fifo.yaml", "/dev/zero", "1e308", "nan", "-1", "true", "ü", "日本", "\u202e", "a\x00b", "<<",
           "*x", "!!python"]
EXTRA_KEYS = ["seed", "epochs", "steps", "import_dir", "layers", "activation", "cell_args", "bptt", "kind",
              "alpha", "std", "gain", "mode", "class", "args", "T", "path", "<<", "ünï", ""]
HUGE = [1e308, -1e308, 1e-320, -1e-320, float("inf"), float("-inf"), float("nan"), 10**30, -(10**30), 2**63]


def scalars(size: bool) -> st.SearchStrategy:
    small = st.one_of(st.booleans(), st.none(), st.integers(-3, 6), st.sampled_from([0.5, 2.0, -1.5, 0.0, 1e-320]),
                      st.text(max_size=6), st.sampled_from(STRINGS))
    return small if size else st.one_of(small, st.sampled_from(HUGE))


def values(size: bool) -> st.SearchStrategy:
    """A value of any YAML type: scalars, lists, nested mappings (whose size keys hold small numbers only)."""
    return st.recursive(scalars(size), lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.one_of(st.sampled_from(EXTRA_KEYS), st.text(max_size=4)),
                                                     inner, max_size=2).map(tame)), max_leaves=4)


def tame(node: dict) -> dict:
    """A generated mapping such as ``{steps: 1e30}`` would be a valid, endless run: size keys get 3."""
    return {k: 3 if k in SIZE_KEYS and _big(v) else v for k, v in node.items()}


def paths(node, prefix=()):
    """Every key path of a nested config (list items by index)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        yield (*prefix, k)
        yield from paths(v, (*prefix, k))


def at(raw, path):
    for k in path:
        raw = raw[k]
    return raw


def plausible(value, size: bool) -> st.SearchStrategy:
    """A value of the same type: another number (huge, tiny, negative), another name, the other bool."""
    if isinstance(value, bool) or value is None:
        return st.one_of(st.booleans(), st.none())
    if isinstance(value, (int, float)):
        return st.integers(-1, 6) if size else st.one_of(st.sampled_from(HUGE), st.floats(-10, 10), st.integers(-3, 9))
    if isinstance(value, str):
        return st.one_of(st.sampled_from(STRINGS), st.text(max_size=6))
    return values(size)


@st.composite
def mutated(draw, base: dict) -> object:
    """A base config with 1-3 mutations: a value of the same type but odd (huge, tiny, negative, another
    name), a value of another type, a key dropped, renamed or added."""
    raw = copy.deepcopy(base)
    ops = draw(st.sampled_from([["tweak"], ["tweak"] * 4 + ["drop", "rename", "replace", "replace", "add", "whole"]]))
    for _ in range(draw(st.integers(1, 3))):
        choices = [p for p in paths(raw) if p not in NO_TOUCH] if isinstance(raw, dict) else []
        op = draw(st.sampled_from(ops))
        if op == "whole":
            if draw(st.integers(0, 9)) == 0:  # rarely: the config is not a mapping at all
                return draw(values(False))
            continue
        if not choices:
            break
        path = draw(st.sampled_from(choices))
        parent, key = at(raw, path[:-1]), path[-1]
        if op == "drop" and path not in NO_DROP:
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = draw(st.one_of(st.sampled_from([key + "s", key.upper(), key[:-1], key + "\u0301", f" {key}"]),
                                 st.sampled_from(EXTRA_KEYS)))
            parent[new] = parent.pop(key)
        elif op == "tweak":
            parent[key] = draw(plausible(parent[key], key in SIZE_KEYS))
        elif op == "replace":
            parent[key] = draw(values(key in SIZE_KEYS))
        elif op == "add":
            node = at(raw, path) if isinstance(at(raw, path), dict) else parent
            if isinstance(node, dict):
                new = draw(st.sampled_from(EXTRA_KEYS))
                node[new] = draw(values(new in SIZE_KEYS))
    return raw


def set_items(base: dict | None = None) -> st.SearchStrategy:
    """``--set`` strings: known and made-up key paths (bracketed, negative and out-of-range indices) with
    YAML values of any type, and malformed items."""
    known = sorted({".".join(map(str, p)) for b in ([base] if base else BASES.values()) for p in paths(b)
                    if p not in NO_TOUCH})
    key = st.one_of(st.sampled_from(known or ["seed"]), st.sampled_from(
        ["model.layers[0].units", "model.layers[-1].units", "model.layers[99].p", "model.layers.1.name",
         "model.activation.alpha", "model.init.std", "train.clip.threshold", "model..depth", "model.depth.x",
         "data", "train.optimizer.beta1", "check.eps", "[0]", ""]))

    def value_text(pair):
        k, v = pair
        small = k.rsplit(".", 1)[-1].split("[")[0] in SIZE_KEYS
        return k, v if isinstance(v, str) else yaml.safe_dump(v if not small or not _big(v) else 3,
                                                               default_flow_style=True, allow_unicode=True).strip()

    item = st.tuples(key, st.one_of(values(False), st.sampled_from(["[", "{a: 1", "&a [*a]", "!!python/name:os.system",
                                                                   "<<: {x: 1}", "'", "- 1", "1e400"]))).map(value_text)
    raw_items = st.sampled_from(["novalue", "=3", "model.depth", "model.depth==2", "model.depth=2=3"])
    return st.lists(st.one_of(item.map(lambda kv: f"{kv[0]}={kv[1]}"), raw_items), min_size=1, max_size=3)


def _big(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > 6


def yaml_text(raw) -> str:
    return yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)


def any_mutated() -> st.SearchStrategy:
    return st.sampled_from(sorted(BASES)).flatmap(lambda name: mutated(BASES[name]))


@st.composite
def config_texts(draw, base: dict | None = None) -> bytes:
    """The YAML of a mutated config, sometimes damaged as text: cut short, a merge key, a duplicate key,
    a python tag, bytes that are not UTF-8, a BOM."""
    raw = draw(mutated(base) if base else any_mutated())
    text = yaml_text(raw)
    damage = draw(st.sampled_from(["none"] * 5 + ["cut", "merge", "duplicate", "tag", "latin1", "bom", "empty"]))
    if damage == "cut":
        text = text[:draw(st.integers(0, len(text)))]
    elif damage == "merge" and isinstance(raw, dict) and isinstance(raw.get("train"), dict):
        train = json.dumps(raw["train"])
        text = yaml_text({k: v for k, v in raw.items() if k != "train"}) + f"train: {{<<: {train}, lr: 0.05}}\n"
    elif damage == "duplicate":
        text += "seed: 3\nseed: 4\n"
    elif damage == "tag":
        text += "x: !!python/object/apply:os.getcwd []\n"
    elif damage == "empty":
        text = ""
    data = text.encode("utf-8")
    if damage == "latin1":
        data = data + "name: caf\u00e9\n".encode("latin-1")
    elif damage == "bom":
        data = b"\xef\xbb\xbf" + data
    return data


# --------------------------------------------------------------------------- the folders

MYLAYER = '''
import numpy as np


class Scale:
    """out = c x: a layer of the user's, in the config's own folder."""

    def __init__(self, c=1.0):
        self.c = float(c)
        self.params, self.grads = {}, {}

    def forward(self, x, train=True):
        return x * self.c

    def backward(self, g):
        return g * self.c
'''
EVIL = '''
from pathlib import Path
Path(__file__).with_name("pwned.txt").write_text("imported")


class Layer:
    def __init__(self, width=1):
        self.params, self.grads = {}, {}

    def forward(self, x, train=True):
        return x

    def backward(self, g):
        return g
'''


def make_folders(root: Path) -> tuple[Path, Path]:
    """``root/outside`` (the sentinel) and ``root/work`` (inputs, with symlinks into outside)."""
    outside, work = root / "outside", root / "work"
    (outside / "deep").mkdir(parents=True)
    work.mkdir()
    rows = ["x1,x2,label"] + [f"{np.sin(i):.4f},{np.cos(3 * i):.4f},{i % 2}" for i in range(24)]
    (outside / "victim.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (outside / "victim.yaml").write_text(yaml_text(BASES["spirals"]), encoding="utf-8")
    (outside / "victim.txt").write_text("do not overwrite\n", encoding="utf-8")
    (outside / "deep" / "victim.html").write_text("<p>mine</p>\n", encoding="utf-8")
    (outside / "evil.py").write_text(EVIL, encoding="utf-8")
    (work / "mylayer.py").write_text(MYLAYER, encoding="utf-8")
    (work / "data.csv").symlink_to(outside / "victim.csv")
    (work / "link.yaml").symlink_to(outside / "victim.yaml")
    for name, base in BASES.items():
        (work / f"{name}.yaml").write_text(yaml_text(base), encoding="utf-8")
    (work / "notutf8.yaml").write_bytes(b"name: caf\xe9\n")
    os.mkfifo(work / "fifo.yaml")  # read, it would wait for a writer forever
    (work / "sub").mkdir()
    return outside, work


def snapshot(root: Path, allowed: tuple[Path, ...]) -> dict:
    """Every entry under ``root`` but ``allowed``: its kind, permissions and bytes (a link: its target)."""
    state = {}
    for folder, dirs, files in os.walk(root):
        folder = Path(folder)
        dirs[:] = [d for d in dirs if folder / d not in allowed]
        for name in dirs + files:
            path = folder / name
            if path in allowed:
                continue
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                state[path] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                state[path] = ("dir", stat.S_IMODE(mode))
            elif stat.S_ISFIFO(mode):  # reading it would wait for a writer
                state[path] = ("fifo", stat.S_IMODE(mode))
            else:
                state[path] = ("file", stat.S_IMODE(mode), path.read_bytes())
    return state


@contextlib.contextmanager
def sandbox(**files: bytes):
    """A fresh ``work`` folder (holding ``files``) as the current directory; on the way out, nothing but
    ``work/runs`` (and ``work/entries.csv``, which ``check --csv`` names) may differ from before."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        root = Path(tmp).resolve()
        _, work = make_folders(root)
        for name, data in files.items():
            (work / name.replace("_", ".")).write_bytes(data)
        allowed = (work / "runs", work / "entries.csv")
        before = snapshot(root, allowed)
        saved = sys.dont_write_bytecode, os.environ.get("PYTHONDONTWRITEBYTECODE")
        sys.dont_write_bytecode = True  # importing mylayer.py would write work/__pycache__
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"  # and so would spawned sweep workers
        try:
            with contextlib.chdir(work):
                yield work
        finally:
            sys.dont_write_bytecode = saved[0]
            if saved[1] is None:
                os.environ.pop("PYTHONDONTWRITEBYTECODE")
            else:
                os.environ["PYTHONDONTWRITEBYTECODE"] = saved[1]
            sys.modules.pop("evil", None)
        after = snapshot(root, allowed)
        changed = sorted(str(p.relative_to(root)) for p in set(before) | set(after) if before.get(p) != after.get(p))
        assert not changed, f"written outside the run folder: {changed}"


@contextlib.contextmanager
def no_runtime_warnings():
    """No numpy RuntimeWarning may reach the user (they are recorded here, as a terminal would show them)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    shown = [f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})" for w in caught
             if issubclass(w.category, RuntimeWarning)]
    assert not shown, shown


# --------------------------------------------------------------------------- what every call must do

def api(call, *args, **kw):
    """The API's result, or None for bad input; any other exception fails the test (with its traceback)."""
    with no_runtime_warnings():
        try:
            out = call(*args, **kw)
        except gradlab.ConfigError as exc:
            assert str(exc).strip(), "a ConfigError without a message"
            event(f"{call.__name__}: bad input")
            return None
    event(f"{call.__name__}: {getattr(out, 'status', 'ok')}")
    return out


def cli(*args: str, allowed=(0, 2, 3)):
    """``gradlab ARGS`` in-process: an allowed exit status, no traceback, bad input said on stderr."""
    with no_runtime_warnings():
        result = CliRunner().invoke(app, [str(a) for a in args])
    event(f"{args[0]}: exit {result.exit_code}")
    shown = f"gradlab {' '.join(map(str, args))} -> {result.exit_code}\n{result.output[-3000:]}"
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        shown + "\n" + "".join(traceback.format_exception(result.exception))
    assert result.exit_code in allowed, shown
    assert "Traceback" not in result.output, shown
    if result.exit_code == 2:
        assert "error:" in result.stderr, shown
    return result


def runs(work: Path) -> list[Path]:
    top = work / "runs"
    return sorted(p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []


def valid_run_files(folder: Path) -> None:
    """Whatever a run or sweep wrote parses: summary.json (never left at running), and CSVs of whole rows."""
    for path in folder.rglob("*.csv"):
        if path.is_symlink():
            continue
        text = path.read_text(encoding="utf-8")
        assert text.endswith("\n"), f"{path}: ends in a torn row {text[-40:]!r}"
        widths = {len(row) for row in csv.reader(io.StringIO(text))}
        assert len(widths) == 1, f"{path}: rows of {sorted(widths)} fields"
        pd.read_csv(path)
    for path in folder.rglob("summary.json"):
        assert json.loads(path.read_text(encoding="utf-8"))["status"] != "running", path


def based(name: str, **changes) -> dict:
    """A base config with some keys changed, ``model__depth=3`` for model.depth (an explicit example)."""
    raw = copy.deepcopy(BASES[name])
    for key, value in changes.items():
        node = raw
        *parents, last = key.split("__")
        for k in parents:
            node = node[k]
        node[last] = value
    return raw


def text_of(raw) -> bytes:
    return yaml_text(raw).encode("utf-8")


# --------------------------------------------------------------------------- the Python API

@fuzz(40)
@given(raw=any_mutated())
@example(raw=based("spirals", data__noise=1e308))  # finite but absurd: bad input, not "diverged at step 0"
@example(raw=based("spirals", model__depth=True))  # a bool is not a number
@example(raw=based("spirals", model__kind="cnn"))
@example(raw=based("spirals", model__activation="evil:Layer", model__import_dir="../outside"))
@example(raw=based("spirals", model__activation="this:X"))
def test_api_configs(raw):
    """config_from_dict on a mutated mapping, then train: a result or ConfigError, nothing else."""
    with sandbox():
        cfg = api(gradlab.config_from_dict, raw)
        if cfg is not None:
            result = api(gradlab.train, cfg)
            if result is not None:
                assert result.status in ("completed", "diverged"), result.status
                assert result.exit_code in (0, 3)
                valid_run_files(Path(result.run_dir))


@fuzz(40)
@given(text=config_texts(), sets=st.one_of(st.just([]), set_items()))
@example(text=text_of(BASES["spirals"]), sets=["model.layers[-1].units=3"])
@example(text=text_of(BASES["layers"]), sets=["model.layers[-1].units=3"])
@example(text=text_of(BASES["layers"]), sets=["model.layers[0].args={c: 1e308}"])
@example(text=b"train: {<<: {steps: 2, lr: 0.1}, lr: 0.05}\n" + text_of({k: v for k, v in BASES["spirals"].items()
                                                                       if k != "train"}), sets=[])
def test_api_load_config_and_sets(text, sets):
    """load_config on mutated (or damaged) YAML text with a --set list, then train."""
    with sandbox(exp_yaml=text) as work:
        cfg = api(gradlab.load_config, work / "exp.yaml", sets)
        if cfg is not None:
            result = api(gradlab.train, cfg, source="exp.yaml")
            if result is not None:
                assert result.exit_code in (0, 3)
                valid_run_files(Path(result.run_dir))


CELLS = st.one_of(st.integers(-3, 3), st.floats(-5, 5, allow_nan=False).map(lambda x: round(x, 3)),
                  st.sampled_from(["1e300", "-1e300", "1e308", "1e-320", "nan", "inf", "", "abc", "ü", '"1,5"',
                                   "0x1F", "1_000", " 2 "]))


@st.composite
def csv_texts(draw) -> bytes:
    """A data CSV: repeated, empty and odd column names, cells of every kind, ragged rows, odd line ends."""
    names = draw(st.one_of(st.just(["x1", "x2", "label"]), st.lists(st.sampled_from(
        ["x1", "x2", "x3", "label", "label", "Label", "", "ü", " x1"]), min_size=1, max_size=4)))
    if draw(st.booleans()) and "label" not in names:
        names.append("label")
    plain = draw(st.booleans())  # most rows numbers with a 0/1 label: a file that may well load
    rows = []
    for i in range(draw(st.integers(0, 24))):
        width = len(names) if draw(st.integers(0, 9)) else draw(st.integers(1, 6))
        rows.append([str(i % 2) if name == "label" and plain else
                     f"{np.sin(i + j):.3f}" if plain else str(draw(CELLS)) for j, name in enumerate(names[:width])])
    newline = draw(st.sampled_from(["\n", "\n", "\r\n", "\r"]))
    text = newline.join(",".join(row) for row in [names, *rows]) + (newline if draw(st.integers(0, 5)) else "")
    return (b"\xef\xbb\xbf" if draw(st.integers(0, 9)) == 0 else b"") + text.encode("utf-8")


ARRAYS = st.sampled_from(["float", "int", "bool", "object", "text", "complex", "nan", "huge", "3d", "empty", "1d"])


def array(kind: str, n: int, rng: np.random.Generator):
    return {"float": lambda: rng.normal(size=(n, 2)), "int": lambda: rng.integers(0, 3, size=(n, 2)),
            "bool": lambda: rng.random((n, 2)) > 0.5, "object": lambda: np.array([{"a": i} for i in range(n)]),
            "text": lambda: np.array([f"s{i}" for i in range(n)]), "complex": lambda: rng.normal(size=(n, 2)) + 1j,
            "nan": lambda: np.full((n, 2), np.nan), "huge": lambda: rng.normal(size=(n, 2)) * 1e300,
            "3d": lambda: rng.normal(size=(n, 3, 2)), "empty": lambda: np.zeros((0, 2)),
            "1d": lambda: np.arange(n) % 2}[kind]()


@st.composite
def npz_files(draw) -> bytes:
    """An .npz: X and y of any dtype and shape (object arrays pickled), a member that is not .npy, a missing
    member, or not a zip at all."""
    form = draw(st.sampled_from(["arrays", "arrays", "arrays", "not-npy", "text", "npy"]))
    rng = np.random.default_rng(draw(st.integers(0, 3)))
    n = draw(st.integers(0, 24))
    buffer = io.BytesIO()
    if form == "text":
        return b"X,y\n1,2\n"
    if form == "npy":
        np.save(buffer, rng.normal(size=(n, 2)))
        return buffer.getvalue()
    if form == "not-npy":
        import zipfile
        with zipfile.ZipFile(buffer, "w") as z:
            z.writestr("X.npy", b"not an array")
            z.writestr("y.npy", b"\x93NUMPY")
        return buffer.getvalue()
    likely = draw(st.booleans())  # float-ish X and labels y: an archive that may well load
    members = {"X": array(draw(st.sampled_from(["float", "int", "huge", "3d"]) if likely else ARRAYS), n, rng),
               "y": array("1d" if likely else draw(ARRAYS), draw(st.sampled_from([n, n, n + 1])), rng)}
    if draw(st.integers(0, 5)) == 0:
        del members[draw(st.sampled_from(["X", "y"]))]
    np.savez(buffer, **members)
    return buffer.getvalue()


@fuzz(30)
@given(kind=st.sampled_from(["csv", "npz"]), csv_text=csv_texts(), npz=npz_files(),
       loss=st.sampled_from(["bce", "cross_entropy", "mse"]), task=st.sampled_from(["auto", "classification",
                                                                                   "regression"]),
       standardize=st.booleans())
@example(kind="csv", csv_text=b"x1,label,label\n1,0,1\n2,1,0\n3,0,1\n4,1,0\n", npz=b"", loss="cross_entropy",
         task="auto", standardize=True)
@example(kind="csv", csv_text=b"x1,label\n1e300,0\n-1e300,1\n1e300,0\n-1e300,1\n", npz=b"", loss="cross_entropy",
         task="auto", standardize=True)
def test_api_data_files(kind, csv_text, npz, loss, task, standardize):
    """A config reading a generated CSV or .npz (through train): a result or ConfigError, nothing else."""
    raw = copy.deepcopy(BASES["csv"])
    raw["loss"] = loss
    raw["data"] = {"kind": kind, "path": f"gen.{kind}", "task": task, "standardize": standardize,
                   "val_fraction": 0.25, **({"target": "label"} if kind == "csv" else {})}
    if kind == "npz" and loss == "bce":
        raw["loss"] = "cross_entropy"
    with sandbox(gen_csv=csv_text, gen_npz=npz):
        cfg = api(gradlab.config_from_dict, raw)
        if cfg is not None:
            result = api(gradlab.train, cfg)
            if result is not None:
                assert result.exit_code in (0, 3)
                valid_run_files(Path(result.run_dir))


@st.composite
def sweep_specs(draw) -> object:
    """A sweep: a base (a file, a hostile path, or an inline mutated mapping), grid and zip lists over real
    and made-up keys (at most 2 x 2 values), seeds and a name, each sometimes of the wrong type."""
    base_name = draw(st.sampled_from(["spirals", "layers", "rnn"]))
    base = draw(st.one_of(st.sampled_from([f"{base_name}.yaml", "link.yaml", "", ".", "sub", "missing.yaml",
                                           "notutf8.yaml", "../outside/victim.yaml", "data.csv", "fifo.yaml",
                                           "/dev/zero"]),
                          st.just(BASES[base_name]), mutated(BASES[base_name])))
    keys = [".".join(map(str, p)) for p in paths(BASES[base_name]) if p not in NO_TOUCH] + \
        ["seed", "model.init", "model.activation", "train.lr", "model.layers[-1].units", "nope.x", ""]
    size_of = lambda k: k.rsplit(".", 1)[-1].split("[")[0] in SIZE_KEYS
    grid_lists = st.dictionaries(st.sampled_from(keys), st.just(None), max_size=2).flatmap(
        lambda d: st.fixed_dictionaries({k: st.one_of(st.lists(values(size_of(k)), min_size=1, max_size=2),
                                                      values(size_of(k))) for k in d}))
    spec = {"base": base}
    if draw(st.booleans()):
        spec["grid"] = draw(st.one_of(grid_lists, grid_lists, values(False)))
    if draw(st.integers(0, 3)) == 0:
        spec["zip"] = draw(st.one_of(grid_lists, values(False)))
    if draw(st.booleans()):
        spec["seeds"] = draw(st.one_of(st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True),
                                       values(True)))
    if draw(st.integers(0, 3)) == 0:
        spec["name"] = draw(st.one_of(st.text(max_size=6), values(False)))
    if draw(st.integers(0, 5)) == 0:
        spec[draw(st.sampled_from(["grids", "base2", "seed"]))] = 1
    return spec if draw(st.integers(0, 15)) else draw(values(False))


@fuzz(30)
@given(spec=sweep_specs(), sets=st.one_of(st.just([]), set_items(BASES["spirals"])))
@example(spec={"base": "."}, sets=[])
@example(spec={"base": ""}, sets=[])
@example(spec={"base": "notutf8.yaml"}, sets=[])
@example(spec={"base": "spirals.yaml", "seeds": 3}, sets=[])
@example(spec={"base": "spirals.yaml", "grid": {"data.noise": [1e308]}}, sets=[])
def test_api_sweeps(spec, sets):
    """sweep_from_dict and run_sweep(workers=0) on a generated sweep: every run folder and table parses."""
    with sandbox() as work:
        sweep = api(gradlab.sweeps.sweep_from_dict, spec, "sweep.yaml", work, sets)
        if sweep is not None:
            result = api(gradlab.sweeps.run_sweep, sweep, workers=0)
            if result is not None:
                assert result.status == "completed"
                assert len(result.rows) == len(sweep.combos)
                valid_run_files(result.dir)


# --------------------------------------------------------------------------- the command line

TRAIN_OPTIONS = ["-q"]
CHECK_OPTIONS = ["--json", "--mode=directional", "--mode=sample", "--mode=bogus", "--strict", "--csv=entries.csv",
                 "--csv=nofolder/entries.csv", "--csv=runs", "--eps=1e-300", "--eps=10", "--eps=1e10", "--eps=nan",
                 "--eps=-1",
                 "--dtype=float32", "--dtype=float16", "--loss-scale=1e-12", "--loss-scale=0", "--loss-scale=inf",
                 "--after-steps=2", "--taylor", "--eps-sweep", "--one-sided", "--seed=3", "--shape=3"]


SPIRALS = text_of(BASES["spirals"])
TARGETS = ["exp.yaml"] * 9 + ["/dev/zero", "fifo.yaml", "sub", "link.yaml", "missing.yaml", "notutf8.yaml"]


@fuzz(40)
@given(text=config_texts(), sets=st.one_of(st.just([]), set_items()),
       command=st.sampled_from(["train", "train", "check"]),
       options=st.lists(st.sampled_from(CHECK_OPTIONS), max_size=2, unique=True), target=st.sampled_from(TARGETS))
@example(text=SPIRALS, sets=[], command="check", options=["--csv=nofolder/entries.csv"], target="exp.yaml")
@example(text=SPIRALS, sets=[], command="check", options=["--eps=1e-300"], target="exp.yaml")
@example(text=SPIRALS, sets=[], command="check", options=["--mode=directional", "--eps=1e-300"], target="exp.yaml")
@example(text=SPIRALS, sets=[], command="check", options=["--eps=10"], target="exp.yaml")
@example(text=text_of(based("spirals", data__noise=1e308)), sets=[], command="train", options=[], target="exp.yaml")
@example(text=SPIRALS, sets=["model.kind=cnn"], command="train", options=[], target="exp.yaml")
@example(text=b"\xff\xfe" + SPIRALS, sets=[], command="check", options=[], target="exp.yaml")
@example(text=SPIRALS, sets=[], command="train", options=[], target="fifo.yaml")
@example(text=SPIRALS, sets=[], command="check", options=[], target="/dev/zero")
def test_cli_train_and_check(text, sets, command, options, target):
    """gradlab train / check on mutated YAML (or a device, a FIFO, a folder...) with --set lists and options."""
    if command == "train":
        options = ["-q"] if len(options) == 1 else []
    with sandbox(exp_yaml=text) as work:
        result = cli(command, target, *[f"--set={s}" for s in sets], *options)
        if command == "train":
            for run in runs(work):
                valid_run_files(run)
            if result.exit_code in (0, 3):
                assert len(runs(work)) == 1


@st.composite
def plausible_sweeps(draw) -> dict:
    """A sweep that may well run: a base file, numbers of the right type, small seeds."""
    name = draw(st.sampled_from(["spirals", "layers", "rnn"]))
    keys = [".".join(map(str, p)) for p in paths(BASES[name])
            if p not in NO_TOUCH and type(at(BASES[name], p)) in (int, float)]
    picked = draw(st.lists(st.sampled_from(keys), min_size=1, max_size=2, unique=True))
    grid = {k: draw(st.lists(plausible(at(BASES[name], [int(x) if x.isdecimal() else x for x in k.split(".")]),
                                       k.rsplit(".", 1)[-1] in SIZE_KEYS), min_size=1, max_size=2)) for k in picked}
    return {"base": f"{name}.yaml", "grid": grid, "seeds": draw(st.lists(st.integers(0, 2), min_size=1, max_size=2,
                                                                          unique=True))}


@fuzz(4)
@given(spec=st.one_of(plausible_sweeps(), sweep_specs()), sets=st.one_of(st.just([]), set_items(BASES["spirals"])))
@example(spec={"base": "spirals.yaml", "grid": {"train.lr": [0.1, 1e308]}}, sets=[])
def test_cli_sweep(spec, sets):
    """gradlab sweep FILE (one spawned worker) on a generated sweep file, with or without --set."""
    with sandbox(sweep_yaml=yaml_text(spec).encode("utf-8")) as work:
        result = cli("sweep", "sweep.yaml", "--workers", "1", "-q", *[f"--set={s}" for s in sets], allowed=(0, 2))
        for run in runs(work):
            valid_run_files(run)
        if result.exit_code == 0:
            assert len(runs(work)) == 1


RESUME_DAMAGE = ["unfinished", "symlink-tmp", "symlink-summary", "symlink-run", "set", "sweep-yaml", "error-txt",
                 "summary-text"]
RESUME_PICKS = st.fixed_dictionaries({
    "sets": set_items(BASES["spirals"]),
    "sweep_yaml": st.sampled_from(["", "[1, 2]", "base: ''\n", "seeds: 3\nbase: {}\n", "name: x\n", "base: .\n"]),
    "summary": st.sampled_from(['{"status": "completed"}', "[]", "{", '{"status": 3}', ""]),
})


@fuzz(3)
@given(damage=st.lists(st.sampled_from(RESUME_DAMAGE), min_size=1, max_size=2, unique=True), picks=RESUME_PICKS)
@example(damage=["unfinished", "symlink-tmp"], picks={"sets": [], "sweep_yaml": "", "summary": ""})
@example(damage=["set"], picks={"sets": ["train.lr=0.5"], "sweep_yaml": "", "summary": ""})
@example(damage=["symlink-summary"], picks={"sets": [], "sweep_yaml": "", "summary": ""})
@example(damage=["symlink-run"], picks={"sets": [], "sweep_yaml": "", "summary": ""})
def test_cli_sweep_resume(damage, picks):
    """gradlab sweep --resume on a finished sweep folder that was damaged or booby-trapped: a run left
    unfinished, summary.tmp/profile.tmp/summary.csv as symlinks to files outside, --set given, sweep.yaml
    edited, a run folder that is a symlink to a folder outside. sweep.yaml is never rewritten and nothing
    outside is touched."""
    with sandbox() as work:
        spec = {"base": "spirals.yaml", "grid": {"model.depth": [1, 2]}, "seeds": [0]}
        sweep = gradlab.sweeps.sweep_from_dict(spec, "sweep.yaml", work)
        folder = gradlab.sweeps.run_sweep(sweep, workers=0).dir
        runs_in = sorted(p for p in folder.iterdir() if p.is_dir())
        outside = work.parent / "outside"
        if "unfinished" in damage:
            (runs_in[0] / "summary.json").unlink()
        if "symlink-tmp" in damage:
            for name in ("summary.tmp", "profile.tmp", ".summary.csv.tmp"):
                (folder / name).symlink_to(outside / "victim.txt")
        if "symlink-summary" in damage:
            (folder / "summary.csv").unlink()
            (folder / "summary.csv").symlink_to(outside / "victim.csv")
        if "symlink-run" in damage:  # an unfinished run's folder is a link to a folder outside
            shutil.rmtree(runs_in[0])
            runs_in[0].symlink_to(outside / "deep")
        if "sweep-yaml" in damage:
            (folder / "sweep.yaml").write_text(picks["sweep_yaml"], encoding="utf-8")
        if "error-txt" in damage:
            (runs_in[-1] / "error.txt").write_text("Traceback (most recent call last):\n", encoding="utf-8")
        if "summary-text" in damage:
            (runs_in[-1] / "summary.json").write_text(picks["summary"], encoding="utf-8")
        sweep_yaml = (folder / "sweep.yaml").read_bytes()
        args = ["sweep", "--resume", folder, "--workers", "1", "-q"]
        if "set" in damage:
            args += [f"--set={s}" for s in picks["sets"]]
        result = cli(*args, allowed=(0, 2))
        if result.exit_code == 0:
            valid_run_files(folder)
        rewritten = (folder / "sweep.yaml").read_bytes() != sweep_yaml
    assert not rewritten, "resume rewrote sweep.yaml"
    if "set" in damage:
        assert result.exit_code == 2, "--set with --resume must be refused"
    if "symlink-summary" in damage or "symlink-run" in damage:
        assert result.exit_code == 2, "resume ran in a folder whose output names are symlinks"


REPORT_DAMAGE = ["cut-csv", "torn-row", "text-cell", "duplicate-rows", "drop-file", "summary", "config-import",
                 "symlink-outputs", "empty-csv", "sweep"]
REPORT_PICKS = st.fixed_dictionaries({
    "csv": st.sampled_from(["metrics.csv", "grad_norms.csv", "layer_stats.csv"]),
    "cut": st.floats(0, 1),
    "cell": st.integers(0, 20),
    "cell_text": st.sampled_from(["abc", "ü", "1e999", "--"]),
    "drop": st.sampled_from(["summary.json", "config.yaml", "metrics.csv", "params_final.npz"]),
    "summary": st.sampled_from(["{", "[]", '{"status": "running"}', '{"status": 7, "steps": "x"}',
                                '{"final_train_loss": 1e999}']),
    "import_dir": st.sampled_from(["OUTSIDE", "../../../outside", "/"]),
    "json": st.booleans(),
})
NO_PICKS = {"csv": "layer_stats.csv", "cut": 0.5, "cell": 3, "cell_text": "abc", "drop": "summary.json",
            "summary": "{", "import_dir": "OUTSIDE", "json": False}


@fuzz(3)
@given(damage=st.lists(st.sampled_from(REPORT_DAMAGE), min_size=1, max_size=2, unique=True), picks=REPORT_PICKS)
@example(damage=["symlink-outputs"], picks=NO_PICKS)
@example(damage=["config-import"], picks=NO_PICKS)
@example(damage=["duplicate-rows"], picks=NO_PICKS)
def test_cli_report(damage, picks):
    """gradlab report on a run (or sweep) folder that was damaged or booby-trapped: cut and torn CSVs, text
    cells, duplicate rows, missing files, a config whose module:Class lives outside (report must not import
    it), report.html and the PNGs as symlinks to files outside."""
    with sandbox() as work:
        outside = work.parent / "outside"
        if "sweep" in damage:
            sweep = gradlab.sweeps.sweep_from_dict({"base": "spirals.yaml", "grid": {"model.depth": [1, 2]}},
                                                   "sweep.yaml", work)
            folder = gradlab.sweeps.run_sweep(sweep, workers=0).dir
            run = min(p for p in folder.iterdir() if p.is_dir())
        else:
            folder = run = Path(gradlab.train(gradlab.load_config(work / "spirals.yaml")).run_dir)
        table = run / picks["csv"]
        text = table.read_text(encoding="utf-8")
        lines = text.splitlines()
        if "cut-csv" in damage:
            table.write_text(text[:int(picks["cut"] * len(text))], encoding="utf-8")
        if "torn-row" in damage:
            table.write_text(text + lines[-1][:7], encoding="utf-8")
        if "text-cell" in damage:
            cells = lines[-1].split(",")
            cells[picks["cell"] % len(cells)] = picks["cell_text"]
            table.write_text("\n".join([*lines[:-1], ",".join(cells)]) + "\n", encoding="utf-8")
        if "duplicate-rows" in damage:
            table.write_text(text + "".join(text.splitlines(keepends=True)[1:]), encoding="utf-8")
        if "empty-csv" in damage:
            table.write_text("", encoding="utf-8")
        if "drop-file" in damage:
            (run / picks["drop"]).unlink(missing_ok=True)
        if "summary" in damage:
            (run / "summary.json").write_text(picks["summary"], encoding="utf-8")
        if "config-import" in damage:
            raw = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
            raw["model"]["activation"] = {"name": "evil:Layer"}
            raw["model"]["import_dir"] = str(outside) if picks["import_dir"] == "OUTSIDE" else picks["import_dir"]
            (run / "config.yaml").write_text(yaml_text(raw), encoding="utf-8")
        if "symlink-outputs" in damage:
            for name in ("report.html", "gradient_flow.png", "grad_heatmap.png", "sweep_ratio_heatmap.png"):
                target = folder / name
                target.unlink(missing_ok=True)
                target.symlink_to(outside / "deep" / "victim.html")
        result = cli("report", folder, *(["--json"] if picks["json"] else []), allowed=(0, 2))
    if "symlink-outputs" in damage:  # after the check that nothing outside was written
        assert result.exit_code == 2, "report ran in a folder whose output names are symlinks"
