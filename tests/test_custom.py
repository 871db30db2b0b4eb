"""Layers of your own (module:Class), explicit `model.layers` lists, and the `check:` config section."""
from __future__ import annotations

import csv
import itertools
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import gradlab
from gradlab.config import CheckConfig, ConfigError, config_from_dict, load_config
from gradlab.nn import Activation, CustomActivation, CustomModule, build_mlp, find_class, make_loss
from gradlab.optim import SGD, clip_grads, norm

from gradlab.check import centred_difference, rel_error

from jitter import jitter_builds

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DATA = {"kind": "spirals", "n_samples": 64, "noise": 0.1}
_ids = itertools.count()


def swish(name: str = "Swish"):
    return find_class(f"custom_layer:{name}", EXAMPLES)


def module_file(tmp_path: Path, body: str) -> str:
    """Write a module with a unique name (imports are cached per name) into tmp_path; return the name."""
    name = f"user_layers_{next(_ids)}_{tmp_path.name[-12:].replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("import numpy as np\n" + textwrap.dedent(body), encoding="utf-8")
    return name


def write_config(tmp_path: Path, model: dict, **extra) -> Path:
    raw = {"name": "t", "data": DATA, "model": model, "train": {"steps": 3, "batch_size": 16},
           "log": {"out": str(tmp_path / "runs")}, **extra}
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def error_of(path: Path, overrides=(), allow_imports=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides, allow_imports)
    message = str(info.value)
    # a problem an override caused is blamed on it, as typed (--set check.batch=0), the rest on the file
    sources = (f"{path}: ", *(f"--set {o}: " for o in overrides))
    assert message.startswith(sources) and "\n" not in message and "Traceback" not in message
    return message


LAYERS = [
    {"type": "dense", "units": 6},
    {"type": "activation", "name": "tanh"},
    {"type": "dense", "units": 5},
    {"type": "batchnorm"},
    {"type": "custom", "class": "custom_layer:Swish", "args": {"beta": 0.5}},
    {"type": "dropout", "p": 0.1},
    {"type": "dense", "units": 4},
    {"type": "activation", "name": "leaky_relu", "alpha": 0.1},
    {"type": "custom", "class": "custom_layer:Swish"},
]


# --------------------------------------------------------------------------- the example layers

def swish_errors(cls, rng) -> dict[str, float]:
    """Relative errors of cls's backward against centred differences, for x and beta, in float64."""
    layer = cls(width=5, beta=0.7)
    layer.params["beta"][:] = rng.uniform(0.3, 2.0, 5)
    x, r = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    J = lambda: float(np.sum(layer.forward(x) * r))  # noqa: E731 - dJ/dout = r
    layer.forward(x)
    dx = layer.backward(r.copy())
    dbeta = layer.grads["beta"].copy()
    return {"x": rel_error(dx, centred_difference(J, x)),
            "beta": rel_error(dbeta, centred_difference(J, layer.params["beta"]))}


def test_swish_backward_matches_centred_differences():
    errors = swish_errors(swish(), np.random.default_rng(0))
    assert errors["x"] < 1e-7 and errors["beta"] < 1e-7, errors


def test_swish_wrong_backward_is_caught():
    errors = swish_errors(swish("SwishWrong"), np.random.default_rng(0))
    assert errors["x"] > 1e-2 and errors["beta"] > 1e-2, errors


@pytest.mark.parametrize("name", ["custom_ok", "custom_wrong"])
def test_example_configs_train(tmp_path, name):
    cfg = load_config(EXAMPLES / f"{name}.yaml", [f"log.out={tmp_path}", "train.steps=5"])
    assert cfg.model.import_dir == str(EXAMPLES)
    result = gradlab.train(cfg)
    assert result.status == "completed" and result.steps == 5
    assert result.first.loss == pytest.approx(np.log(2), abs=0.01)  # two classes, logits near 0 at init
    assert result.final["final_train_loss"] < result.first.loss - 0.03  # measured 0.699 -> 0.632 (wrong: 0.634)
    prefix = "swish" if name == "custom_ok" else "swishwrong"
    assert [p.param for p in result.last.params if "beta" in p.param] == [f"{prefix}{l}.beta" for l in (1, 2, 3)]


def test_both_example_configs_build_the_same_net():
    ok, wrong = (load_config(EXAMPLES / f"{n}.yaml") for n in ("custom_ok", "custom_wrong"))
    nets = [build_mlp(c.model, 2, 2, np.random.default_rng(0), np.random.default_rng(1)) for c in (ok, wrong)]
    assert [k.replace("swishwrong", "swish") for k in nets[1].params] == list(nets[0].params)
    assert all(np.array_equal(nets[0].params[k], p) for k, p in zip(nets[0].params, nets[1].params.values()))


def swish_dx_without_beta(self, grad_out):
    """Swish's backward with the chain rule's inner factor beta dropped from dx: right only at beta = 1."""
    x, s = self.x, self.s
    ds = s * (1.0 - s)
    self.grads["beta"] = np.sum(grad_out * x * x * ds, axis=0)
    return grad_out * (s + x * ds)


def test_the_examples_check_at_generic_values(monkeypatch):
    """custom_ok passes and custom_wrong fails, named, at beta and biases off their defaults too; a Swish
    whose dx forgets beta passes at the example's beta = 1 and fails there."""
    jitter_builds(monkeypatch)
    ok = gradlab.check(load_config(EXAMPLES / "custom_ok.yaml"))
    assert ok.passed and ok.tier == "good", [(t.name, t.rel_error) for t in ok.failed]
    wrong = gradlab.check(load_config(EXAMPLES / "custom_wrong.yaml"))
    alone = {t.name for t in wrong.layers if not t.passed}
    assert alone == {f"swishwrong{l}.{k}" for l in (1, 2, 3) for k in ("beta", "input")}
    monkeypatch.undo()
    monkeypatch.setattr(swish(), "backward", swish_dx_without_beta)
    assert gradlab.check(load_config(EXAMPLES / "custom_ok.yaml")).passed  # beta = 1: the bug hides
    jitter_builds(monkeypatch)
    hidden = gradlab.check(load_config(EXAMPLES / "custom_ok.yaml"))
    assert {t.name for t in hidden.layers if not t.passed} == {"swish1.input", "swish2.input", "swish3.input"}


# --------------------------------------------------------------------------- the adapter

ASSIGNING = """
class Scale:
    '''out = x * a, a: (D,); backward *assigns* a new gradient array every time.'''
    def __init__(self, width):
        self.params = {"a": np.linspace(0.5, 1.5, width)}
        self.grads = {"a": np.zeros(width)}
    def forward(self, x):  # no train argument: allowed
        self.x = x
        return x * self.params["a"]
    def backward(self, grad_out):
        self.grads = {"a": (grad_out * self.x).sum(axis=0)}  # even a whole new dict
        return grad_out * self.params["a"]
"""


def test_grads_assigned_as_new_arrays_stay_current_in_the_net(tmp_path):
    name = module_file(tmp_path, ASSIGNING)
    cfg = config_from_dict({"data": DATA, "model": {"depth": 2, "width": 3, "activation": f"{name}:Scale",
                                                    "import_dir": str(tmp_path)}}, allow_imports=[tmp_path])
    model = build_mlp(cfg.model, 2, 2, np.random.default_rng(0), np.random.default_rng(1))
    act = model.layers[0].modules[1]
    assert isinstance(act, CustomActivation) and act.name == "scale1" and act.batched is False
    fixed = model.grads["scale1.a"]
    x, y = np.random.default_rng(2).standard_normal((8, 2)), np.arange(8) % 2
    loss = make_loss("cross_entropy")
    for _ in range(2):  # twice: the fixed array is refilled, not replaced
        model.loss_and_grads(x, y, loss)
        assert model.grads["scale1.a"] is fixed and act.grads["a"] is fixed and act.layer.grads["a"] is fixed
        expected = (model.deltas[1] * act.layer.x).sum(axis=0)  # the layer is the last module of layer 1
        np.testing.assert_allclose(fixed, expected, rtol=1e-12)
    # clipping scales model.grads in place and the layer sees it; the optimizer updates the live params
    clip_grads(model.grads, {k: norm(g) for k, g in model.grads.items()}, config_from_dict(
        {"data": DATA, "model": {"depth": 1, "width": 1}, "train": {"clip": 1e-9}}).train.clip)
    assert np.abs(act.layer.grads["a"]).max() <= 1e-9
    before = act.layer.params["a"].copy()
    model.grads["scale1.a"][:] = 1.0
    SGD(0.1).step(model.params, model.grads)
    assert model.params["scale1.a"] is act.layer.params["a"]
    np.testing.assert_allclose(act.layer.params["a"], before - 0.1)


def test_adapter_reports_no_statistics_unless_the_layer_has_them():
    layer = swish()(width=3)
    wrapped = CustomActivation(layer, "swish1")
    assert isinstance(wrapped, Activation) and wrapped.params is layer.params and wrapped.grads is layer.grads
    out = wrapped.forward(np.ones((2, 3)))
    assert wrapped.out is out and wrapped.saturated() is None and wrapped.dead() is None
    assert wrapped.named_params() == {"swish1.beta": layer.params["beta"]}
    assert not (wrapped.kinks or wrapped.batched or wrapped.columnwise)  # promises a user layer did not make
    layer.columnwise = True
    assert CustomActivation(layer, "swish1").columnwise  # ...unless it says so
    layer.saturated = lambda: 0.25
    assert wrapped.saturated() == 0.25


def test_a_gradient_of_the_wrong_shape_is_named(tmp_path):
    name = module_file(tmp_path, ASSIGNING.replace(".sum(axis=0)}", "}"))
    wrapped = CustomModule(find_class(f"{name}:Scale", tmp_path)(width=3), "scale2")
    wrapped.forward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"scale2: backward left grads\['a'\] of shape \(4, 3\)"):
        wrapped.backward(np.ones((4, 3)))


# --------------------------------------------------------------------------- layers lists

def test_layers_grouping_names_and_logged_layers():
    cfg = config_from_dict({"data": DATA, "model": {"layers": LAYERS, "import_dir": str(EXAMPLES)}})
    model = build_mlp(cfg.model, 2, 3, np.random.default_rng(0), np.random.default_rng(1))
    names = [[m.name for m in layer.modules] for layer in model.layers]
    assert names == [["dense1", "tanh1"], ["dense2", "bn2", "swish2", "dropout2"],
                     ["dense3", "leaky_relu3", "swish3"], ["dense4"]]
    assert model.param_layer == {"dense1.W": 1, "dense1.b": 1, "dense2.W": 2, "bn2.gamma": 2, "bn2.beta": 2,
                                 "swish2.beta": 2, "dense3.W": 3, "dense3.b": 3, "swish3.beta": 3,
                                 "dense4.W": 4, "dense4.b": 4}  # dense2 has no bias: batch norm follows it
    assert model.params["swish2.beta"].tolist() == [0.5] * 5 and model.params["dense4.W"].shape == (4, 3)
    assert model.layers[2].modules[1].alpha == 0.1
    assert [type(layer.activation).__name__ for layer in model.layers] == ["Tanh", "NoneType", "LeakyReLU", "NoneType"]
    assert model.forward(np.ones((7, 2))).shape == (7, 3)


def test_a_repeated_module_in_one_logged_layer_gets_a_suffix():
    layers = [{"type": "dense", "units": 3}, {"type": "activation", "name": "custom_layer:Swish"},
              {"type": "activation", "name": "custom_layer:Swish"}, {"type": "activation", "name": "prelu"},
              {"type": "activation", "name": "prelu"}]
    cfg = config_from_dict({"data": DATA, "model": {"layers": layers, "import_dir": str(EXAMPLES)}})
    model = build_mlp(cfg.model, 2, 2, np.random.default_rng(0), np.random.default_rng(1))
    assert list(model.params) == ["dense1.W", "dense1.b", "swish1.beta", "swish1_2.beta", "prelu1.alpha",
                                  "prelu1_2.alpha", "dense2.W", "dense2.b"]
    assert model.layers[0].activation.name == "swish1"  # the first activation is the logged one


def test_an_empty_layers_list_is_one_dense_layer():
    model = build_mlp(config_from_dict({"data": DATA, "model": {"layers": []}}).model, 2, 3,
                      np.random.default_rng(0), np.random.default_rng(1))
    assert list(model.params) == ["dense1.W", "dense1.b"]


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("style", ["activation", "layers"])
def test_training_writes_custom_params_and_stats(tmp_path, style):
    model = ({"depth": 2, "width": 5, "activation": "custom_layer:Swish"} if style == "activation" else
             {"layers": LAYERS})
    path = write_config(tmp_path, {**model, "import_dir": str(EXAMPLES)})
    result = gradlab.train(load_config(path, allow_imports=[EXAMPLES]))
    assert result.status == "completed" and result.steps == 3
    run = Path(result.run_dir)
    assert run.parent == tmp_path / "runs"
    rows = read_csv(run / "grad_norms.csv")
    layer_of = {r["param"]: int(r["layer"]) for r in rows}
    wanted = {"swish1.beta": 1, "swish2.beta": 2} if style == "activation" else {"swish2.beta": 2, "swish3.beta": 3}
    assert {k: v for k, v in layer_of.items() if "swish" in k} == wanted
    assert all(float(r["grad_norm"]) > 0 for r in rows if "swish" in r["param"])
    stats = read_csv(run / "layer_stats.csv")
    assert {r["frac_saturated"] for r in stats if r["layer"] == "2"} == {""}  # swish2; no Activation
    assert set(np.load(run / "params_final.npz").files) == set(layer_of)


def test_run_config_yaml_reruns_from_anywhere(tmp_path, monkeypatch):
    """The resolved config holds model.import_dir as an absolute path, so the run folder's copy works (with
    that folder allowed: it lies outside the run folder)."""
    path = write_config(tmp_path, {"layers": LAYERS, "import_dir": str(EXAMPLES)})
    result = gradlab.train(load_config(path, allow_imports=[EXAMPLES]))
    monkeypatch.chdir(tmp_path / "runs")
    again = load_config(Path(result.run_dir) / "config.yaml", ["log.out=elsewhere"], allow_imports=[EXAMPLES])
    assert again.model.import_dir == str(EXAMPLES)
    rerun = gradlab.train(again, write=False)
    assert rerun.status == "completed" and rerun.final == result.final  # the same run, number for number
    assert rerun.last.loss == result.last.loss


# --------------------------------------------------------------------------- round trips

ROUND_TRIPS = {
    "activation": {"depth": 2, "width": 5, "activation": "custom_layer:Swish"},
    "layers": {"layers": LAYERS},
    "layers_builtin": {"layers": [{"type": "dense", "units": 3}, {"type": "activation", "name": "elu"}]},
}


@pytest.mark.parametrize("model", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_resolved_config_round_trips(tmp_path, model):
    check = {"batch": 4, "eps": 1e-6, "mode": "directional", "directions": 2, "strict": True, "loss_scale": 10.0}
    config = load_config(write_config(tmp_path, {**model, "import_dir": str(EXAMPLES)}, check=check),
                         allow_imports=[EXAMPLES])
    resolved = config.resolved()
    assert resolved["check"] == {**CheckConfig().model_dump(), **check}
    copy = tmp_path / "copy" / "config.yaml"
    copy.parent.mkdir()
    copy.write_text(yaml.safe_dump(resolved, sort_keys=False), encoding="utf-8")
    again = load_config(copy, allow_imports=[EXAMPLES])
    assert again == config and again.resolved() == resolved


def test_resolved_layers_leave_out_depth_and_friends():
    resolved = config_from_dict({"data": DATA, "model": {"layers": LAYERS, "import_dir": str(EXAMPLES)}}).resolved()
    assert list(resolved["model"]) == ["kind", "init", "bias_init", "layers", "import_dir"]
    assert resolved["model"]["layers"][4] == {"type": "custom", "class": "custom_layer:Swish", "args": {"beta": 0.5}}
    assert resolved["model"]["layers"][7] == {"type": "activation", "name": "leaky_relu", "alpha": 0.1}
    plain = config_from_dict({"data": DATA, "model": {"depth": 1, "width": 2}}).resolved()["model"]
    assert "import_dir" not in plain and "layers" not in plain and plain["activation"] == {"name": "relu"}


def test_check_defaults():
    check = config_from_dict({"data": DATA, "model": {"depth": 1, "width": 2}}).check
    assert check.model_dump() == {"batch": 8, "eps": None, "mode": "auto", "samples": 10, "directions": 4,
                                  "dtype": "float64", "strict": False, "loss_scale": 1.0}


@pytest.mark.parametrize("override, fragment", [
    ("check.batch=0", "'check.batch': Input should be greater than or equal to 1 (got 0)"),
    ("check.eps=0", "'check.eps': allowed: 1e-15 to 0.1, relative to each tensor's scale"),
    ("check.mode=every", "'check.mode': Input should be 'auto', 'full', 'sample' or 'directional' (got 'every')"),
    ("check.samples=0", "'check.samples'"),
    ("check.directions=-1", "'check.directions'"),
    ("check.dtype=float16", "'check.dtype': Input should be 'float64' or 'float32'"),
    ("check.loss_scale=-1", "'check.loss_scale': Input should be greater than 0"),
    ("check.step=1", "unknown key 'check.step'. Did you mean --set check.eps=1?"),
])
def test_check_section_errors(tmp_path, override, fragment):
    assert fragment in error_of(write_config(tmp_path, {"depth": 1, "width": 2}), [override])


# --------------------------------------------------------------------------- errors

NO_BACKWARD = "class NoBackward:\n    params, grads = {}, {}\n    def forward(self, x, train=True):\n        return x\n"
NO_PARAMS = "class NoParams:\n    def forward(self, x, train=True):\n        return x\n    def backward(self, g):\n        return g\n"
INT_PARAMS = NO_PARAMS.replace("class NoParams:", "class IntParams:\n    params = {'k': np.arange(3)}\n    grads = {}")
BAD_IMPORT = "import numpyy\nclass A:\n    pass\n"
RAISES = "raise RuntimeError('boom at import')\n"
NOT_A_CLASS = "def swish(x):\n    return x\n"


@pytest.mark.parametrize("body, ref, fragments", [
    (None, "no_such_module_xyz:Swish", ["no module 'no_such_module_xyz' in ", "or on sys.path; allowed: a file "
                                        "no_such_module_xyz.py next to the config"]),
    (NO_BACKWARD, "{m}:Nope", ["module '{m}' (", "has no 'Nope'; classes defined there: NoBackward"]),
    (NO_BACKWARD, "{m}:NoBackward", ["{m}:NoBackward has no backward(); a layer class needs forward(x, train=True)"]),
    (NO_PARAMS, "{m}:NoParams", ["NoParams: an instance's 'params' is NoneType, not a dict"]),
    (INT_PARAMS, "{m}:IntParams", ["IntParams: params['k'] is ndarray int64"]),
    (BAD_IMPORT, "{m}:A", ["importing module '{m}' failed: No module named 'numpyy'"]),
    (RAISES, "{m}:A", ["importing module '{m}' failed: RuntimeError: boom at import"]),
    (NOT_A_CLASS, "{m}:swish", ["{m}:swish is a function, not a class"]),
])
@pytest.mark.parametrize("style", ["activation", "layers", "activation_item"])
def test_bad_custom_classes_name_the_key_path(tmp_path, body, ref, fragments, style):
    m = module_file(tmp_path, body) if body else ""
    ref = ref.format(m=m)
    model, where = {
        "activation": ({"depth": 2, "width": 3, "activation": ref}, "model.activation"),
        "layers": ({"layers": [*LAYERS[:3], {"type": "custom", "class": ref}]}, "model.layers[3].class"),
        "activation_item": ({"layers": [LAYERS[0], {"type": "activation", "name": ref}]}, "model.layers[1].name"),
    }[style]
    message = error_of(write_config(tmp_path, model))
    assert f": '{where}': " in message
    for fragment in fragments:
        assert fragment.format(m=m) in message


def test_bad_constructor_arguments(tmp_path):
    path = write_config(tmp_path, {"layers": [LAYERS[0], {"type": "custom", "class": "custom_layer:Swish",
                                                          "args": {"gamma": 1}}], "import_dir": str(EXAMPLES)})
    message = error_of(path, allow_imports=[EXAMPLES])
    assert "'model.layers[1].class': Swish(gamma=1, width=6, dtype=<class 'numpy.float64'>) failed: TypeError:" in message


@pytest.mark.parametrize("model, fragment", [
    ({"width": 4}, "missing key 'model.depth' (or give 'model.layers', a list of layers, instead of depth and width)."),
    ({}, "missing key 'model.depth' and 'model.width'"),
    ({"depth": 2, "layers": LAYERS[:2]}, "'model': 'model.layers' replaces depth, width, activation, residual, "
                                         "batchnorm, dropout: remove model.depth or set them to null"),
    ({"layers": LAYERS[:2], "activation": "tanh", "residual": True}, "remove model.activation, model.residual"),
    ({"depth": 1, "width": 2, "activation": "custom_layer:Swish", "import_dir": "nowhere"},
     "'model.import_dir': no folder "),
    ({"depth": 1, "width": 2, "import_dir": "a\0b"}, "'model.import_dir': not a usable path"),
    ({"layers": LAYERS[1:]}, "'model.layers': item [0] is {type: activation}, but the list must start with "
                             "{type: dense, units: N}"),
    ({"layers": [{"type": "dense"}]}, "missing key 'model.layers[0].units'."),
    ({"layers": [{"type": "conv", "units": 3}]}, "'model.layers[0].type' is 'conv'; allowed: 'dense', 'activation', "
                                                  "'batchnorm', 'dropout', 'custom'."),
    ({"layers": [LAYERS[0], {"type": "custom", "class": "Swish"}]},
     "'model.layers[1].class': should be an import path module:Class of your own layer (e.g. custom_layer:Swish) "
     "(got 'Swish')."),
    ({"layers": [LAYERS[0], {"type": "custom", "klass": "a:B"}]},
     "unknown key 'model.layers[1].klass'. Did you mean 'class'? Allowed keys in model.layers[1]: type, class, args."),
    ({"layers": [LAYERS[0], {"type": "dropout", "p": 1.0}]}, "'model.layers[1].p': Input should be less than 1"),
    ({"depth": 1, "width": 2, "activation": "swish"}, "'model.activation.name': Input should be 'linear', 'sigmoid'"),
    ({"depth": 1, "width": 2, "activation": {"name": "custom_layer:Swish", "alpha": 0.1}},
     "'model.activation': 'alpha' applies only to leaky_relu, prelu, elu, not to custom_layer:Swish."),
])
def test_model_shape_errors(tmp_path, model, fragment):
    assert fragment in error_of(write_config(tmp_path, model))


def test_import_dir_is_relative_to_the_config(tmp_path):
    (tmp_path / "sub").mkdir()
    m = module_file(tmp_path / "sub", (EXAMPLES / "custom_layer.py").read_text())
    assert "no module" in error_of(write_config(tmp_path, {"depth": 1, "width": 2, "activation": f"{m}:Swish"}))
    path = write_config(tmp_path, {"depth": 1, "width": 2, "activation": f"{m}:Swish", "import_dir": "sub"})
    assert load_config(path).model.import_dir == str(tmp_path / "sub")


def test_a_module_hidden_by_one_already_imported_is_refused(tmp_path):
    swish()  # imports examples/custom_layer.py as custom_layer
    (tmp_path / "custom_layer.py").write_text("", encoding="utf-8")
    message = error_of(write_config(tmp_path, {"depth": 1, "width": 2, "activation": "custom_layer:Swish"}))
    assert "'model.activation': module 'custom_layer' is already imported from " in message
    assert f"which hides {tmp_path / 'custom_layer.py'}; rename custom_layer.py." in message


def test_set_reaches_into_the_layers_list():
    swap = ["model.layers[1].name=custom_layer:SwishWrong", "model.layers.4.units=8", "model.layers.3.name=tanh"]
    cfg = load_config(EXAMPLES / "custom_ok.yaml", swap)
    assert [getattr(i, "name", getattr(i, "units", None)) for i in cfg.model.layers] == [
        16, "custom_layer:SwishWrong", 16, "tanh", 8, "custom_layer:Swish"]
    with pytest.raises(ConfigError, match=r"--set model.layers.6.units=1: '6' is not an index of that list "
                                          r"\(allowed: 0..5\)\."):
        load_config(EXAMPLES / "custom_ok.yaml", ["model.layers.6.units=1"])


# --------------------------------------------------------------------------- layers that change the width

HALVE = """
class Halve:
    '''x (N, 2K) -> the mean of each pair of columns (N, K); no params.'''
    def __init__(self):
        self.params, self.grads = {}, {}
    def forward(self, x, train=True):
        self.n = x.shape[-1]
        return 0.5 * (x[..., 0::2] + x[..., 1::2])
    def backward(self, dout):
        return np.repeat(0.5 * dout, 2, axis=-1)

class SaysItsWidth(Halve):
    out_width = 3  # said, so never measured: forward would fail on the dummy batch
    def forward(self, x, train=True):
        if x.shape[0] == 2:
            raise RuntimeError("measured")
        return super().forward(x)

class Flat:
    def __init__(self):
        self.params, self.grads = {}, {}
    def forward(self, x, train=True):
        return x.reshape(-1)
    def backward(self, dout):
        return dout
"""


AFFINE = f"""
import sys
sys.path.insert(0, {str(EXAMPLES)!r})
from cs231n_layers import Affine  # the example's
sys.path.pop(0)
"""


def shape_layers(name: str) -> list[dict]:
    return [{"type": "dense", "units": 6}, {"type": "activation", "name": "tanh"},
            {"type": "custom", "class": f"{name}:Affine", "args": {"units": 8}},
            {"type": "activation", "name": "tanh"}, {"type": "custom", "class": f"{name}:Halve"},
            {"type": "dense", "units": 3}, {"type": "custom", "class": f"{name}:SaysItsWidth"}]


def test_a_layer_that_changes_the_width_hands_it_on_and_trains_and_checks(tmp_path):
    """6 -> Affine 8 -> Halve 4 -> dense 3 -> 6 -> SaysItsWidth 3 -> output: every next matrix takes the width
    the layer before gave, and the check passes on the whole net."""
    name = module_file(tmp_path, HALVE + AFFINE)
    layers = shape_layers(name)
    layers[-2]["units"] = 6
    path = write_config(tmp_path, {"layers": layers}, check={"batch": 4})
    cfg = load_config(path, [f"log.out={tmp_path / 'runs'}", "train.steps=60"])
    model = gradlab.setup(cfg).model
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {"dense1.W": (2, 6), "dense1.b": (6,), "affine1.W": (6, 8), "affine1.b": (8,),
                      "dense2.W": (4, 6), "dense2.b": (6,), "dense3.W": (3, 2), "dense3.b": (2,)}  # 2 classes
    result = gradlab.train(cfg)
    assert result.status == "completed" and result.final["final_train_loss"] < result.first.loss
    report = gradlab.check(cfg)
    assert report.passed, [(t.name, t.rel_error) for t in report.failed]
    assert "affine1.W" in {t.name for t in report.tensors}


def test_a_wrong_shape_changing_layer_is_named_by_the_check(tmp_path):
    wrong = HALVE.replace("np.repeat(0.5 * dout", "np.repeat(dout")  # drops the 1/2 of the mean
    name = module_file(tmp_path, wrong)
    path = write_config(tmp_path, {"layers": [{"type": "dense", "units": 6}, {"type": "activation", "name": "tanh"},
                                              {"type": "custom", "class": f"{name}:Halve"}]}, check={"batch": 4})
    report = gradlab.check(load_config(path))
    assert not report.passed and {t.name for t in report.layers if not t.passed} == {"halve1.input"}


def test_a_layer_that_does_not_give_n_by_width_is_refused(tmp_path):
    name = module_file(tmp_path, HALVE)
    path = write_config(tmp_path, {"layers": [{"type": "dense", "units": 4}, {"type": "custom", "class": f"{name}:Flat"}]})
    message = error_of(path)
    assert "'model.layers[1].class': Flat.forward maps a batch of shape (2, 4) to (8,)" in message


# --------------------------------------------------------------------------- cells of your own

def cell_config(tmp_path: Path, cell: str, **train) -> dict:
    return {"name": "c", "data": {"kind": "adding", "T": 5, "n_samples": 64},
            "model": {"kind": "rnn", "cell": cell, "hidden": 4, "import_dir": str(EXAMPLES)},
            "loss": "mse", "train": {"steps": 15, "batch_size": 16, "optimizer": "adam", "lr": 0.01, **train},
            "check": {"batch": 4}, "log": {"out": str(tmp_path / "runs")}}


def as_builtin(stacked: dict, H: int) -> dict:
    """LSTMCell's W_x, W_h, b (gates i, f, o, g side by side) as the built-in LSTM's lstm1.W_i, lstm1.U_i, ..."""
    out = {}
    for k, gate in enumerate("ifog"):
        cols = slice(k * H, (k + 1) * H)
        out[f"lstm1.W_{gate}"] = stacked["W_x"][:, cols]
        out[f"lstm1.U_{gate}"] = stacked["W_h"][:, cols]
        out[f"lstm1.b_{gate}"] = stacked["b"][cols]
    return out


@pytest.mark.parametrize("truncate, l2", [(None, 0.0), (2, 0.05)])
def test_a_custom_lstm_cell_computes_the_builtin_lstms_gradients(tmp_path, truncate, l2):
    """The same weights in cs231n_layers:LSTMCell and in the built-in LSTM (an independent implementation):
    equal losses and gradients, with full and truncated BPTT, and with train.l2 on every weight matrix
    (the cell names them W_x, W_h)."""
    bptt = {"bptt": {"truncate": truncate}} if truncate else {}
    mine = gradlab.setup(config_from_dict(cell_config(tmp_path, "cs231n_layers:LSTMCell", **bptt)))
    ref = gradlab.setup(config_from_dict(cell_config(tmp_path, "lstm", **bptt)))
    cell = mine.model.layers[0].modules[0]
    for k, v in {**as_builtin(cell.params, 4), "dense2.W": mine.model.params["dense2.W"],
                 "dense2.b": mine.model.params["dense2.b"]}.items():
        ref.model.params[k][...] = v
    x, y = mine.data.X_train[:8], mine.data.y_train[:8]
    J = [s.model.loss_and_grads(x, y, s.loss, l2) for s in (mine, ref)]
    assert J[0] == pytest.approx(J[1], rel=1e-12)
    got = {**as_builtin(cell.grads, 4), "dense2.W": mine.model.grads["dense2.W"], "dense2.b": mine.model.grads["dense2.b"]}
    assert all(np.abs(g).max() > 0 for g in got.values())
    for k, g in got.items():
        np.testing.assert_allclose(g, ref.model.grads[k], rtol=1e-9, atol=1e-13, err_msg=k)
    np.testing.assert_allclose(cell.time_norms, ref.model.layers[0].modules[0].time_norms, rtol=1e-9)


def test_a_custom_cell_trains_and_checks_and_a_wrong_one_is_named(tmp_path):
    cfg = config_from_dict(cell_config(tmp_path, "cs231n_layers:LSTMCell"))
    result = gradlab.train(cfg)
    assert result.status == "completed" and result.final["final_train_loss"] < result.first.loss
    assert [p.param for p in result.last.params][:3] == ["lstmcell1.W_x", "lstmcell1.W_h", "lstmcell1.b"]
    ok = gradlab.check(cfg)
    assert ok.passed, [(t.name, t.rel_error) for t in ok.failed]
    truncated = gradlab.check(config_from_dict(cell_config(tmp_path, "cs231n_layers:LSTMCell", bptt={"truncate": 2})))
    assert truncated.passed
    wrong = gradlab.check(config_from_dict(cell_config(tmp_path, "cs231n_layers:LSTMCellWrong")))
    assert not wrong.passed
    assert {t.name for t in wrong.layers if not t.passed} >= {"lstmcellwrong1.W_x", "lstmcellwrong1.input"}
    assert all(t.name.startswith("lstmcellwrong1.") for t in wrong.layers if not t.passed)


CELLS = """
class NoStep:
    def __init__(self, hidden):
        self.params, self.grads = {}, {}

class BadShape:
    def __init__(self, hidden):
        self.params, self.grads = {}, {}
        self.hidden = hidden
    def step(self, x_t, state):
        return x_t, state, None
    def step_backward(self, dh, dstate, cache):
        return dh, dstate
"""


@pytest.mark.parametrize("model, fragment", [
    ({"cell": "lstmm"}, "'model.cell': should be vanilla, lstm, gru or an import path module:Class of your own cell"),
    ({"cell": "{m}:NoStep"}, "'model.cell': {m}:NoStep has no step() or step_backward(); a cell class needs"),
    ({"cell": "{m}:Nope"}, "'model.cell': module '{m}' ("),
    ({"cell": "{m}:BadShape", "hidden": 3}, "'model.cell': BadShape: a step on x_t of shape (2, 1) gave h_t (2, 1)"),
    ({"cell": "{m}:NoStep", "forget_bias": 1.0}, "'forget_bias' applies to the built-in cells only"),
    ({"cell": "lstm", "cell_args": {"k": 1}}, "'cell_args' applies to a cell of your own (module:Class) only"),
])
def test_bad_cells_name_model_cell(tmp_path, model, fragment):
    m = module_file(tmp_path, CELLS)
    raw = {"kind": "rnn", "hidden": 4, **{k: v.format(m=m) if isinstance(v, str) else v for k, v in model.items()}}
    message = error_of(write_config(tmp_path, raw, data={"kind": "adding", "T": 4}))
    assert fragment.format(m=m) in message


@pytest.mark.parametrize("name, passes", [("custom_shape", True), ("custom_cell", True), ("custom_cell_wrong", False)])
def test_the_shape_and_cell_examples_check(name, passes):
    """The examples as documented (the cells on a shorter sequence, to stay fast): exit 0, 0 and 1."""
    cfg = load_config(EXAMPLES / f"{name}.yaml", ["data.T=4", "data.n_samples=64"] if "cell" in name else [])
    report = gradlab.check(cfg)
    assert report.passed is passes, [(t.name, t.rel_error) for t in report.failed]
    if not passes:
        assert {t.name.split(".")[0] for t in report.layers if not t.passed} == {"lstmcellwrong1"}
