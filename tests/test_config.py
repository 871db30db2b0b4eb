"""gradlab.config: loading, --set overrides, friendly ConfigError messages, round trips and fuzzing."""
from __future__ import annotations

import math
import re
import shlex
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradlab.config import Config, ConfigError, config_from_dict, load_config, parse_yaml, validate

QUICKSTART = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
KINDS = ("spirals", "moons", "blobs", "xor", "parity", "teacher", "csv", "npz", "adding", "copy", "temporal_order",
         "shapes", "images", "digits")
TOP_KEYS = "name, seed, data, model, loss, train, log, check"


def minimal() -> dict:
    return {"data": {"kind": "spirals"}, "model": {"depth": 2, "width": 4}}


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str, overrides: tuple[str, ...] = ()) -> str:
    """The ConfigError message of loading `text` from tmp_path/exp.yaml; it must name the file, or the
    override that caused it."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert message.startswith((f"{path}: ", *(f"--set {shlex.quote(o)}: " for o in overrides))), message
    assert "\n" not in message
    return message


def dict_error(raw, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, overrides)
    message = str(info.value)
    # a problem an override caused is blamed on it, as typed: --set model.depth=0
    assert message.startswith(("<config>: ", *(f"--set {shlex.quote(o)}: " for o in overrides))), message
    return message


# --------------------------------------------------------------------------- YAML level

def test_yaml_syntax_error_names_file_and_line(tmp_path):
    message = load_error(tmp_path, "name: x\nmodel: {depth: 3\ndata: {kind: spirals}\n")
    assert "YAML error at line 3" in message


def test_yaml_bad_indentation_names_line(tmp_path):
    message = load_error(tmp_path, "data: {kind: spirals}\nmodel:\n  depth: 2\n width: 3\n")
    assert "YAML error at line 4" in message


def test_python_tags_are_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    text = f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
    message = load_error(tmp_path, text)
    assert "line 1" in message and "python/object/apply:os.system" in message
    assert not marker.exists()
    for tag in ('!!python/object:os.system {}', "!!python/name:os.system ''", "!!python/tuple [1, 2]"):
        assert "could not determine a constructor" in load_error(tmp_path, f"name: {tag}\n")


def test_duplicate_keys_are_refused(tmp_path):
    message = load_error(tmp_path, "data: {kind: spirals}\nmodel:\n  depth: 2\n  width: 4\n  depth: 3\n")
    assert "duplicate key 'depth'" in message and "line 5" in message
    message = load_error(tmp_path, "name: a\ndata: {kind: spirals}\nname: b\n")
    assert "duplicate key 'name'" in message and "line 3" in message


@pytest.mark.parametrize("text, fragment", [
    ("name: 2020-02-30\n", "line 1"),                     # a timestamp that is not a date
    ("seed: " + "9" * 5000 + "\n", "line 1"),             # longer than Python prints ints
    ("a: !!float abc\n", "line 1"),
    ("a: !!bool maybe\n", "line 1"),
    ("a: !!map [1]\n", "expected a mapping"),
    ("? [a, b]\n: 1\n", "a key must be a plain name"),  # unhashable key
    ("x: 1\ny: \x01\n", "line 2"),                       # control character
    ("a: " + "[" * 1000 + "]" * 1000 + "\n", "nested too deeply"),
])
def test_yaml_values_pyyaml_cannot_build(tmp_path, text, fragment):
    message = load_error(tmp_path, text)
    assert "YAML error" in message and fragment in message


def test_config_must_be_a_mapping(tmp_path):
    for text in ("- data\n- model\n", "3\n", "just text\n"):
        message = load_error(tmp_path, text)
        assert f"must be a YAML mapping of keys ({TOP_KEYS})" in message
    assert "must be a YAML mapping" in dict_error([1, 2])
    assert "must be a YAML mapping" in dict_error([1, 2], ("model.depth=3",))


def test_empty_config_names_the_required_keys(tmp_path):
    for text in ("", "# only a comment\n"):
        message = load_error(tmp_path, text)
        assert "missing key 'data'" in message and "missing key 'model'" in message


def test_empty_config_can_be_completed_with_set(tmp_path):
    config = load_config(write(tmp_path, ""), ["data.kind=xor", "model.depth=2", "model.width=3"])
    assert config.data.kind == "xor" and config.model.depth == 2


def test_missing_and_unreadable_config_files(tmp_path):
    with pytest.raises(ConfigError, match=r"nothere\.yaml: config file not found\."):
        load_config(tmp_path / "nothere.yaml")
    with pytest.raises(ConfigError, match="a folder, not a config file"):
        load_config(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 9: b'\\xe9'\)"):
        load_config(tmp_path / "latin1.yaml")


# --------------------------------------------------------------------------- schema level

def test_unknown_key_with_did_you_mean(tmp_path):
    message = load_error(tmp_path, "data: {kind: spirals}\nmodel: {dpeth: 5, width: 4}\n")
    assert "unknown key 'model.dpeth'. Did you mean 'depth'?" in message
    assert "Allowed keys in model: kind, depth, width, activation, init, bias_init, residual, batchnorm, dropout, layers, import_dir." in message
    message = dict_error(minimal(), ("model.dpeth=5",))
    assert message.startswith("--set model.dpeth=5: unknown key 'model.dpeth'. Did you mean --set model.depth=5?")


def test_unknown_top_level_key(tmp_path):
    message = load_error(tmp_path, "data: {kind: spirals}\nmodel: {depth: 2, width: 4}\ntrian: {lr: 0.1}\n")
    assert "unknown key 'trian'. Did you mean 'train'?" in message
    assert f"Allowed keys in the top level: {TOP_KEYS}." in message
    message = dict_error({**minimal(), "zzzzzz": 1})
    assert "unknown key 'zzzzzz'." in message and "Did you mean" not in message


def test_unknown_nested_key_in_data_branch():
    message = dict_error(minimal(), ("data.n_clases=3",))
    assert "unknown key 'data.n_clases'. Did you mean --set data.n_classes=3?" in message
    assert "Allowed keys in data:" in message and "n_classes" in message


def test_wrong_type(tmp_path):
    message = load_error(tmp_path, "data: {kind: spirals}\nmodel: {depth: ten, width: 4}\n")
    assert "'model.depth': should be a whole number, e.g. 3" in message and "(got 'ten')" in message
    assert "'model.depth': should be a whole number, e.g. 3" in dict_error(minimal(), ("model.depth=2.5",))
    assert "'train.lr': should be a number, e.g. 0.1 or 1e-3" in dict_error(minimal(), ("train.lr=fast",))
    assert "'model': Input should be a valid dictionary" in dict_error(minimal(), ("model=3",))


@pytest.mark.parametrize("override, fragment", [
    ("model.depth=0", "'model.depth': Input should be greater than or equal to 1 (got 0)."),
    ("model.depth=-3", "'model.depth': Input should be greater than or equal to 1 (got -3)."),
    ("model.width=0", "'model.width': Input should be greater than or equal to 1 (got 0)."),
    ("train.lr=0", "'train.lr': Input should be greater than 0 (got 0)."),
    ("train.lr=-0.1", "'train.lr': Input should be greater than 0 (got -0.1)."),
    ("train.lr=.nan", "'train.lr': Input should be a finite number"),
    ("train.lr=.inf", "'train.lr': Input should be a finite number"),
    ("model.dropout=1.0", "'model.dropout': Input should be less than 1 (got 1.0)."),
    ("model.dropout=-0.1", "'model.dropout': Input should be greater than or equal to 0 (got -0.1)."),
    ("train.batch_size=0", "'train.batch_size': should be greater than or equal to 1 or 'full' (got 0)."),
    ("train.clip=-1", "'train.clip.threshold': Input should be greater than 0 (got -1)."),
])
def test_out_of_range(tmp_path, override, fragment):
    assert fragment in dict_error(minimal(), (override,))
    assert fragment in load_error(tmp_path, yaml.safe_dump(minimal()), (override,))


def test_out_of_range_written_in_the_file(tmp_path):
    text = "data: {kind: spirals}\nmodel: {depth: 0, width: 4, dropout: 1.0}\ntrain: {lr: 0}\n"
    message = load_error(tmp_path, text)
    for key in ("'model.depth'", "'model.dropout'", "'train.lr'"):
        assert key in message  # every problem at once


def test_bad_data_kind_lists_the_kinds(tmp_path):
    message = load_error(tmp_path, "data: {kind: mnist}\nmodel: {depth: 2, width: 4}\n")
    assert "'data.kind' is 'mnist'; allowed: " + ", ".join(f"'{k}'" for k in KINDS) + "." in message
    assert "'data.kind' is nothing; allowed:" in dict_error({"data": {}, "model": {"depth": 2, "width": 4}})


def test_bad_activation_lists_the_activations():
    message = dict_error(minimal(), ("model.activation=swish",))
    assert "'model.activation.name': Input should be 'linear', 'sigmoid', 'tanh', 'relu', 'leaky_relu'" in message
    assert "(got 'swish')" in message
    message = dict_error(minimal(), ("model.activation={name: tanh, alpha: 0.1}",))
    assert "'model.activation': 'alpha' applies only to leaky_relu, prelu, elu, not to tanh." in message


def test_bad_init_scheme_and_keys_that_do_not_apply():
    message = dict_error(minimal(), ("model.init=glorot_magic",))
    assert "'model.init.scheme': Input should be 'normal'" in message and "'he_normal'" in message
    assert "missing key 'model.init.scheme'." in dict_error(minimal(), ("model.init.std=0.1",))
    message = dict_error(minimal(), ("model.init=xavier_normal", "model.init.std=0.1"))
    assert "'model.init': 'std' does not apply to scheme xavier_normal (it takes: gain)." in message
    message = dict_error(minimal(), ("model.init={scheme: normal, limit: 0.1}",))
    assert "'model.init': 'limit' does not apply to scheme normal (it takes: gain, std)." in message
    message = dict_error(minimal(), ("model.init={scheme: he_normal, mode: fan_avg}",))
    assert "'model.init': he_normal takes mode fan_in or fan_out" in message


def test_optimizer_keys_that_do_not_apply():
    message = dict_error(minimal(), ("train.optimizer={name: sgd, beta1: 0.9}",))
    assert "'train.optimizer': 'beta1' does not apply to optimizer sgd." in message
    assert "'train.optimizer.name': Input should be 'sgd', 'momentum' or 'adam'" in dict_error(
        minimal(), ("train.optimizer=rmsprop",))


def test_steps_and_epochs_together():
    message = dict_error(minimal(), ("train.steps=10", "train.epochs=2"))
    assert "'train': give either 'steps' or 'epochs', not both." in message
    assert config_from_dict(minimal(), ("train.epochs=2",)).train.steps is None
    assert config_from_dict(minimal()).train.steps == 500


def test_set_without_equals_sign():
    with pytest.raises(ConfigError, match=r"^--set model\.depth: expected KEY\.PATH=VALUE, e\.g\. --set model\.depth=50\.$"):
        config_from_dict(minimal(), ["model.depth"])
    for bad in ("=3", "model..depth=3", ".depth=3"):
        with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
            config_from_dict(minimal(), [bad])


def test_set_value_with_bad_yaml_names_the_option():
    with pytest.raises(ConfigError, match=r"^--set 'model\.init=\{scheme: normal': YAML error"):
        config_from_dict(minimal(), ["model.init={scheme: normal"])


def test_set_into_bare_names_expands_them():
    config = config_from_dict(minimal(), ["model.init=normal", "model.init.std=0.05",
                                          "model.activation=leaky_relu", "model.activation.alpha=0.2",
                                          "train.clip=2.0", "train.clip.scope=layer"])
    assert (config.model.init.scheme, config.model.init.std) == ("normal", 0.05)
    assert config.model.activation.alpha == 0.2
    assert (config.train.clip.threshold, config.train.clip.scope) == (2.0, "layer")


def test_config_from_dict_does_not_change_its_input():
    raw = minimal()
    config_from_dict(raw, ["model.depth=7", "train.lr=0.5"])
    assert raw == minimal()


def test_csv_path_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    path = write(tmp_path / "sub", "data: {kind: csv, path: data.csv, target: y}\nmodel: {depth: 1, width: 2}\n")
    assert Path(load_config(path).data.path) == tmp_path / "sub" / "data.csv"


# --------------------------------------------------------------------------- aliases and round trips

@pytest.mark.parametrize("alias, scheme", [
    ("glorot_uniform", "xavier_uniform"), ("glorot_normal", "xavier_normal"),
    ("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform"),
])
def test_init_aliases(alias, scheme):
    init = config_from_dict(minimal(), (f"model.init={alias}",)).model.init
    assert init.scheme == scheme
    if scheme.startswith("he_"):
        assert init.mode == "fan_in"
    mapped = config_from_dict(minimal(), (f"model.init={{scheme: {alias}, gain: 2.0}}",)).model.init
    assert (mapped.scheme, mapped.gain) == (scheme, 2.0)


def test_quickstart_loads():
    config = load_config(QUICKSTART)
    assert isinstance(config, Config)
    assert (config.name, config.model.depth, config.model.activation.name) == ("quickstart", 10, "tanh")
    assert config.model.init.scheme == "xavier_normal"


ROUND_TRIPS = {
    "quickstart": [],
    "init_normal": ["model.init={scheme: normal, std: 0.02, gain: 2.0}"],
    "init_variance_scaling": ["model.init={scheme: variance_scaling, scale: 2.0, mode: fan_avg, distribution: uniform}"],
    "init_identity": ["model.init={scheme: identity, scale: 0.5}", "model.activation=linear"],
    "init_alias_kaiming": ["model.init={scheme: kaiming_normal, mode: fan_out}"],
    "clip_mapping": ["train.clip={mode: value, threshold: 0.5, scope: layer}"],
    "clip_number": ["train.clip=1.0"],
    "adam": ["train.optimizer={name: adam, beta1: 0.8}", "train.lr=0.001"],
    "momentum": ["train.optimizer=momentum"],
    "leaky_relu": ["model.activation={name: leaky_relu, alpha: 0.2}", "model.init=he_normal"],
    "elu_default": ["model.activation=elu"],
    "residual_true": ["model.residual=true", "model.batchnorm=true", "model.dropout=0.25"],
    "residual_3": ["model.residual=3"],
    "epochs": ["train.steps=null", "train.epochs=2", "train.batch_size=full"],
    "teacher": ["data={kind: teacher, n_features: 3, depth: 1}", "loss=mse"],
}


@pytest.mark.parametrize("overrides", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_resolved_config_round_trips(tmp_path, overrides):
    config = load_config(QUICKSTART, overrides)
    resolved = config.resolved()
    path = write(tmp_path, yaml.safe_dump(resolved, sort_keys=False), "config.yaml")
    again = load_config(path)
    assert again == config
    assert again.resolved() == resolved


def test_resolved_fills_defaults():
    config = load_config(QUICKSTART, ["model.residual=true", "model.activation=leaky_relu",
                                      "train.optimizer=adam", "model.init=kaiming_normal"])
    resolved = config.resolved()
    assert resolved["model"]["residual"] == 2
    assert resolved["model"]["activation"] == {"name": "leaky_relu", "alpha": 0.01}
    assert resolved["model"]["init"] == {"scheme": "he_normal", "gain": 1.0, "mode": "fan_in"}
    assert resolved["train"]["optimizer"] == {"name": "adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}


# --------------------------------------------------------------------------- fuzzing

REAL_KEYS = [
    "name", "seed", "data", "model", "loss", "train", "log", "kind", "depth", "width", "activation", "init",
    "scheme", "std", "gain", "limit", "scale", "mode", "distribution", "alpha", "bias_init", "residual",
    "batchnorm", "dropout", "lr", "steps", "epochs", "clip", "threshold", "scope", "optimizer", "momentum",
    "beta1", "beta2", "eps", "batch_size", "shuffle", "l2", "dtype", "every", "val_every", "out", "n_samples",
    "n_classes", "n_features", "n_outputs", "noise", "val_fraction", "standardize", "path", "target", "task",
]
REAL_VALUES = [
    "spirals", "moons", "blobs", "xor", "parity", "teacher", "csv", "npz", "mlp", "tanh", "relu", "leaky_relu",
    "linear", "he_normal", "kaiming_normal", "xavier_normal", "identity", "normal", "variance_scaling",
    "fan_in", "fan_avg", "full", "norm", "value", "global", "layer", "sgd", "adam", "momentum", "mse",
    "cross_entropy", "bce", "float32", "auto", "regression",
]
keys = st.one_of(st.sampled_from(REAL_KEYS), st.text(max_size=8))
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=70), st.integers(),
    # 4000 digits: still printable (pydantic-core itself cannot repr an int over Python's 4300-digit limit)
    st.sampled_from([10**4000, -(10**4000), 2**64, -(2**63) - 1]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 1e-320]),
    st.sampled_from(REAL_VALUES), st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12,
)
random_mappings = st.dictionaries(keys, values, max_size=7)

PATHS = [
    "name", "seed", "loss", "data", "data.kind", "data.n_samples", "data.noise", "data.path", "data.target",
    "data.n_classes", "data.val_fraction", "model", "model.depth", "model.width", "model.activation",
    "model.activation.name", "model.activation.alpha", "model.init", "model.init.scheme", "model.init.std",
    "model.init.mode", "model.init.scale", "model.init.gain", "model.residual", "model.dropout", "model.batchnorm",
    "train", "train.lr", "train.steps", "train.epochs", "train.clip", "train.clip.threshold", "train.clip.mode",
    "train.optimizer", "train.optimizer.name", "train.optimizer.beta1", "train.batch_size", "train.dtype",
    "log", "log.every", "log.out",
]


def with_value(raw: dict, path: str, value) -> dict:
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    return raw


@st.composite
def mutated_configs(draw) -> dict:
    """The quickstart config with a few key paths set to random values or deleted."""
    raw = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.one_of(st.sampled_from(PATHS), st.builds(".".join, st.lists(keys, min_size=1, max_size=3))))
        with_value(raw, path, draw(values))
    return raw


def only_config_errors(call) -> None:
    try:
        result = call()
    except ConfigError as exc:
        assert str(exc)
        return
    assert isinstance(result, Config)


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@FUZZ
@given(random_mappings)
def test_fuzz_random_mappings(raw):
    only_config_errors(lambda: config_from_dict(raw))


@FUZZ
@given(mutated_configs())
def test_fuzz_mutated_quickstart(raw):
    only_config_errors(lambda: config_from_dict(raw))


@FUZZ
@given(random_mappings, st.lists(st.one_of(
    st.builds("{}={}".format, st.sampled_from(PATHS), st.sampled_from(["3", "null", "[1]", "{a: 1}", "x", ".nan", "{"])),
    st.text(max_size=20)), max_size=3))
def test_fuzz_overrides(raw, overrides):
    only_config_errors(lambda: config_from_dict(raw, overrides))


YAML_CHARS = ":{}[],-#&*!|>'\"%@`?\t\n 0123456789.abcdefz~=<"
YAML_TOKENS = ["[a]", "{a: 1}", "? ", "!!", "!!int x", "!!bool x", "!!map ", "!!python/tuple [1]", "&a ", "*a",
               "<<: ", "2020-02-30", "0x", "9" * 5000, "\x00", "\t", "\n  ", "---\n", "..."]


@st.composite
def mutated_yaml(draw) -> str:
    """quickstart.yaml with characters deleted, duplicated or replaced, or a whole key or value replaced."""
    text = QUICKSTART.read_text(encoding="utf-8")
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "token"]))
        if op == "token":  # a whole key or value (the text between separators) becomes a YAML oddity
            spans = [m.span() for m in re.finditer(r"[^\s:{},\[\]]+", text)]
            if spans:
                start, end = draw(st.sampled_from(spans))
                text = text[:start] + draw(st.sampled_from(YAML_TOKENS)) + text[end:]
            continue
        i = draw(st.integers(0, len(text)))
        n = draw(st.integers(1, 12))
        if op == "delete":
            text = text[:i] + text[i + n:]
        elif op == "duplicate":
            text = text[:i] + text[i:i + n] + text[i:]
        else:
            new = draw(st.one_of(st.text(alphabet=YAML_CHARS, min_size=1, max_size=n), st.sampled_from(YAML_TOKENS)))
            text = text[:i] + new + text[i + (len(new) if op == "replace" else 0):]
    return text


yaml_texts = st.one_of(mutated_yaml(), st.text(max_size=80), st.text(alphabet=YAML_CHARS, max_size=80))


@FUZZ
@given(yaml_texts)
def test_fuzz_yaml_text_through_parse_and_validate(text):
    only_config_errors(lambda: validate(parse_yaml(text, "fuzz.yaml"), "fuzz.yaml"))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(st.one_of(yaml_texts.map(lambda t: t.encode("utf-8")), st.binary(max_size=60)))
def test_fuzz_yaml_files_through_load_config(fuzz_dir, data):
    path = fuzz_dir / "fuzz.yaml"
    path.write_bytes(data)
    only_config_errors(lambda: load_config(path))
