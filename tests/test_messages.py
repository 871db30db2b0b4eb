"""What the command line says to a user who got something wrong: the source of the problem (the file, or the
--set option), what was probably meant, the right command, and every character of it (rich markup must not
eat [brackets]); and what it says when asked (--version, -h)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.config import ConfigError, config_from_dict
from cli_helpers import assert_bad_input

ROOT = Path(__file__).resolve().parents[1]
TINY = "name: tiny\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 2, width: 8, activation: tanh}\ntrain: {steps: 3}\n"
MODEL_KEYS = "kind, depth, width, activation, init, bias_init, residual, batchnorm, dropout, layers, import_dir"


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="gradlab")


def write(folder: Path, text: str = TINY, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def train(tmp_path: Path, config: Path, *args: str):
    return cli("train", config, "--set", f"log.out={tmp_path / 'runs'}", *args)


# --------------------------------------------------------------------------- brackets are ours only

def test_a_missing_file_with_brackets_in_its_name_is_named_whole(tmp_path):
    path = tmp_path / "configs" / "[abc].yaml"
    message = assert_bad_input(train(tmp_path, path))
    assert message == f"error: {path}: config file not found."


def test_a_config_error_in_a_file_with_brackets_names_it_whole(tmp_path):
    path = write(tmp_path, TINY.replace("depth: 2", "depth: 0"), "[abc].yaml")
    message = assert_bad_input(train(tmp_path, path))
    assert message == f"error: {path}: 'model.depth': Input should be greater than or equal to 1 (got 0)."


def test_the_dask_hint_keeps_its_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    result = cli("sweep", ROOT / "configs" / "sweep_clip_threshold.yaml", "--scheduler", "tcp://127.0.0.1:8786",
                 "--set", f"log.out={tmp_path / 'runs'}")
    message = assert_bad_input(result)
    assert message == "error: --scheduler needs Dask distributed: pip install 'gradlab[dask]'."


# --------------------------------------------------------------------------- --set is its own source

@pytest.mark.parametrize("setting, message", [
    ("model.dept=5", f"--set model.dept=5: unknown key 'model.dept'. Did you mean --set model.depth=5? Allowed keys "
                     f"in model: {MODEL_KEYS}."),
    ("model.depth=0", "--set model.depth=0: 'model.depth': Input should be greater than or equal to 1 (got 0)."),
    ("model.depth=[1", "--set 'model.depth=[1': YAML error at line 1, column 3: expected ',' or ']', but got "
                       "'<stream end>'."),
    ("model.depth", "--set model.depth: expected KEY.PATH=VALUE, e.g. --set model.depth=50."),
    ("depth=5", "--set depth=5: unknown key 'depth'. Did you mean --set model.depth=5? Allowed keys in the top "
                "level: name, seed, data, model, loss, train, log, check."),
    ("train.learning_rate=0.01", "--set train.learning_rate=0.01: unknown key 'train.learning_rate'. Did you mean "
                                 "--set train.lr=0.01?"),
    ("model.activation=ReLU", "--set model.activation=ReLU: 'model.activation.name': Input should be 'linear',"),
    ("model.activation=ReLU", "(got 'ReLU'). Did you mean --set model.activation=relu?"),
    ("model.init=he", "(got 'he'). Did you mean --set model.init=he_normal?"),
    ("model.init.std=0.1", "--set model.init.std=0.1: missing key 'model.init.scheme'."),
    ("model.init={scheme: he_normal, std: 0.1}", "--set 'model.init={scheme: he_normal, std: 0.1}': 'model.init': "
                                                 "'std' does not apply to scheme he_normal (it takes: gain, mode)."),
])
def test_a_problem_the_set_option_caused_is_blamed_on_it(tmp_path, setting, message):
    path = write(tmp_path)
    found = assert_bad_input(train(tmp_path, path, "--set", setting))
    assert found.startswith("error: --set ") and message in found
    assert str(path) not in found


def test_the_files_problems_and_the_options_are_each_named(tmp_path):
    path = write(tmp_path, TINY.replace("steps: 3", "steps: 3, lr: 0"))
    message = assert_bad_input(train(tmp_path, path, "--set", "model.dept=5"))
    assert message.startswith(f"error: {path}: 'train.lr': Input should be greater than 0 (got 0). "
                              "--set model.dept=5: unknown key 'model.dept'. Did you mean --set model.depth=5?")


def test_a_check_option_is_named_as_typed(tmp_path):
    message = assert_bad_input(cli("check", write(tmp_path), "--mode", "bogus"))
    assert message == ("error: --mode bogus: 'check.mode': Input should be 'auto', 'full', 'sample' or "
                       "'directional' (got 'bogus').")


# --------------------------------------------------------------------------- did you mean: values

@pytest.mark.parametrize("change, meant", [
    (("activation: tanh", "activation: ReLU"), "relu"),
    (("activation: tanh", "activation: LeakyReLU"), "leaky_relu"),
    (("activation: tanh", "activation: logistic"), "sigmoid"),
    (("activation: tanh", "activation: tanh, init: he"), "he_normal"),
    (("activation: tanh", "activation: tanh, init: HeNormal"), "he_normal"),
    (("activation: tanh", "activation: tanh, init: kaiming"), "he_normal"),
    (("activation: tanh", "activation: tanh, init: xavier"), "xavier_normal"),
    (("activation: tanh", "activation: tanh, init: glorot"), "xavier_normal"),
    (("activation: tanh", "activation: tanh, init: Orthogonal"), "orthogonal"),
    (("kind: spirals", "kind: Spirals"), "spirals"),
    (("train: {", "loss: CrossEntropy\ntrain: {"), "cross_entropy"),
    (("train: {", "loss: categorical_crossentropy\ntrain: {"), "cross_entropy"),
    (("train: {", "loss: mean_squared_error\ntrain: {"), "mse"),
    (("train: {", "loss: BCEWithLogitsLoss\ntrain: {"), "bce"),
    (("steps: 3", "steps: 3, optimizer: Adam"), "adam"),
    (("steps: 3", "steps: 3, optimizer: SGD"), "sgd"),
    (("steps: 3", "steps: 3, dtype: double"), "float64"),
    (("steps: 3", "steps: 3, schedule: CosineAnnealingLR"), "cosine"),
    (("steps: 3", "steps: 3, schedule: {name: StepLR, every: 2}"), "step"),
    (("model: {depth: 2, width: 8, activation: tanh}", "model: {kind: RNN, hidden: 8}"), "rnn"),
    (("model: {depth: 2, width: 8, activation: tanh}", "model: {kind: rnn, cell: LSTM}"), "lstm"),
    (("model: {depth: 2, width: 8, activation: tanh}", "model: {kind: rnn, cell: SimpleRNN}"), "vanilla"),
    (("model: {depth: 2, width: 8, activation: tanh}", "model: {kind: rnn, activation: Tanh}"), "tanh"),
    (("model: {depth: 2, width: 8, activation: tanh}", "model: {layers: [{type: Dense, units: 8}]}"), "dense"),
])
def test_a_value_in_another_case_or_frameworks_name_is_suggested(tmp_path, change, meant):
    path = write(tmp_path, TINY.replace(*change))
    message = assert_bad_input(train(tmp_path, path))
    assert message.startswith(f"error: {path}: ") and message.endswith(f"Did you mean '{meant}'?")


def test_a_value_nothing_is_close_to_gets_no_guess(tmp_path):
    message = assert_bad_input(train(tmp_path, write(tmp_path, TINY.replace("activation: tanh", "activation: swish"))))
    assert "(got 'swish')." in message and "Did you mean" not in message


def test_the_accepted_aliases_stay_accepted():
    raw = {"data": {"kind": "spirals"}, "model": {"depth": 2, "width": 3, "init": "kaiming_normal"}}
    assert config_from_dict(raw).model.init.scheme == "he_normal"
    with pytest.raises(ConfigError, match=r"Did you mean --set model\.init=he_normal\?"):
        config_from_dict(raw, ["model.init=kaiming"])  # suggested, never silently accepted


# --------------------------------------------------------------------------- did you mean: keys

@pytest.mark.parametrize("change, meant", [
    (("name: tiny", "name: tiny\ndepth: 5"), "unknown key 'depth'. Did you mean 'model.depth'?"),
    (("name: tiny", "name: tiny\nlearning_rate: 0.1"), "unknown key 'learning_rate'. Did you mean 'train.lr'?"),
    (("name: tiny", "name: tiny\nepochs: 3"), "unknown key 'epochs'. Did you mean 'train.epochs'?"),
    (("steps: 3", "steps: 3, learning_rate: 0.1"), "unknown key 'train.learning_rate'. Did you mean 'lr'?"),
    (("steps: 3", "steps: 3, weight_decay: 0.1"), "unknown key 'train.weight_decay'. Did you mean 'l2'?"),
    (("steps: 3", "steps: 3, batchSize: 8"), "unknown key 'train.batchSize'. Did you mean 'batch_size'?"),
    (("steps: 3", "steps: 3, clipnorm: 1.0"), "unknown key 'train.clipnorm'. Did you mean 'clip'?"),
    (("width: 8", "hidden_size: 8"), "unknown key 'model.hidden_size'. Did you mean 'width'?"),
    (("width: 8", "width: 8, kernel_initializer: he_normal"), "unknown key 'model.kernel_initializer'. Did you "
                                                              "mean 'init'?"),
    (("width: 8", "width: 8, lr: 0.1"), "unknown key 'model.lr'. Did you mean 'train.lr'?"),
    (("steps: 3", "steps: 3, dropout: 0.1"), "unknown key 'train.dropout'. Did you mean 'model.dropout'?"),
    (("name: tiny", "name: tiny\nlog_dir: out"), "unknown key 'log_dir'. Did you mean 'log.out'?"),
    (("steps: 3", "steps: 3, lr_scheduler: cosine"), "unknown key 'train.lr_scheduler'. Did you mean 'schedule'?"),
    (("steps: 3", "steps: 3, early_stopping: {patience: 3}"), "unknown key 'train.early_stopping'. Did you mean "
                                                             "'early_stop'?"),
    (("steps: 3", "steps: 3, warmup: 10"), "unknown key 'train.warmup'. Did you mean 'train.schedule.warmup'?"),
    (("steps: 3", "steps: 3, patience: 10"), "unknown key 'train.patience'. Did you mean "
                                             "'train.early_stop.patience'?"),
    (("steps: 3", "steps: 3, seed: 1"), "unknown key 'train.seed'. Did you mean the top-level 'seed'?"),
    (("steps: 3", "steps: 3, criterion: mse"), "unknown key 'train.criterion'. Did you mean the top-level 'loss'?"),
])
def test_a_key_of_another_framework_or_section_is_suggested(tmp_path, change, meant):
    path = write(tmp_path, TINY.replace(*change))
    message = assert_bad_input(train(tmp_path, path))
    assert message.startswith(f"error: {path}: ") and meant in message


def test_a_key_nothing_is_close_to_gets_no_guess(tmp_path):
    message = assert_bad_input(train(tmp_path, write(tmp_path, TINY + "zzzzzz: 1\n")))
    assert "unknown key 'zzzzzz'. Allowed keys in the top level:" in message and "Did you mean" not in message


# --------------------------------------------------------------------------- the right command, the right file

@pytest.mark.parametrize("command", ["train", "check"])
def test_a_sweep_file_names_gradlab_sweep(tmp_path, command):
    path = tmp_path / "s.yaml"
    path.write_text((ROOT / "configs" / "sweep_clip_threshold.yaml").read_text(), encoding="utf-8")
    message = assert_bad_input(cli(command, path))
    assert message == f"error: {path}: a sweep file (it has base, grid, seeds), not a train config; run it with " \
                      f"gradlab sweep {path}."


def test_a_missing_config_under_configs_is_suggested(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert assert_bad_input(cli("train", "quickstart.yaml")) == (
        "error: quickstart.yaml: config file not found. Did you mean configs/quickstart.yaml?")
    assert assert_bad_input(cli("train", "configs/quickstart.yml")).endswith("Did you mean configs/quickstart.yaml?")
    assert assert_bad_input(cli("check", "configs/quickstrat.yaml")).endswith("Did you mean configs/quickstart.yaml?")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs").mkdir()
    write(tmp_path / "configs", TINY, "mine.yaml")
    assert assert_bad_input(cli("train", "mine.yaml")).endswith("Did you mean configs/mine.yaml?")
    assert assert_bad_input(cli("train", "other.yaml")) == "error: other.yaml: config file not found."


# --------------------------------------------------------------------------- --version, -h, --help

COMMANDS = ["train", "report", "runs", "sweep", "check", "gradcheck", "compare", "watch"]


def test_version():
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"gradlab {gradlab.__version__}\n"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_dash_h_is_help_on_every_command(command):
    args = [command] if command else []
    short, long = cli(*args, "-h"), cli(*args, "--help")
    assert short.exit_code == 0 and short.stdout == long.stdout
    assert short.stdout.startswith(f"Usage: gradlab {command + ' ' if command else ''}[OPTIONS]")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags(command):
    text = cli(command, "--help").stdout
    assert "<bool>" not in text, text
    if command not in ("compare", "watch"):  # theirs name their own metavars
        assert "<list[" not in text, text
    if command in ("train", "sweep"):
        assert re.search(r"-q, --quiet\s+Print only the final line", text)
        assert "--set KEY.PATH=VALUE" in text


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_help_says_where_run_folders_and_data_paths_resolve(command):
    text = " ".join(cli(command, "--help").stdout.split())
    assert "Run folders go under log.out (default runs), relative to the current folder; data.path and " \
           "module:Class modules are found relative to the" in text


# --------------------------------------------------------------------------- no talk of seeds that are not seeds

SEEDS = re.compile(r"\bseed[ _-]?00\d\b", re.IGNORECASE)  # the "seed 000" ... "seed 004": not random seeds


def test_nothing_user_facing_cites_a_seed_document():
    files = [*ROOT.joinpath("gradlab").rglob("*.py"), ROOT / "README.md", *ROOT.joinpath("docs").rglob("*.md"),
             *ROOT.joinpath("configs").glob("*.yaml")]
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in files for m in SEEDS.finditer(p.read_text("utf-8"))]
    assert found == []
    assert SEEDS.search("as seed 003 says") and not SEEDS.search("seed 0, ~2 s")


@pytest.mark.parametrize("option, fragments", [
    ("model.dept=5", ["error: --set model.dept=5: unknown key 'model.dept'. Did you mean --set model.depth=5?"]),
    ("train.lr=-1", ["error: --set train.lr=-1: 'train.lr'", "greater than 0 (got -1)"]),
], ids=["unknown-key", "bad-value"])
def test_a_sweep_blames_a_bad_set_option_not_its_file(tmp_path, option, fragments):
    base = write(tmp_path)
    sweep = write(tmp_path, f"base: {base.name}\ngrid: {{model.width: [4, 8]}}\n", "s.yaml")
    message = assert_bad_input(cli("sweep", sweep, "--set", option, "--set", f"log.out={tmp_path / 'runs'}"),
                               *fragments)
    assert "s.yaml" not in message and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("config, option, meant", [
    ("relu_rnn_exploding.yaml", "model.width=32", "--set model.hidden=32"),
    ("relu_rnn_exploding.yaml", "model.hidden_size=32", "--set model.hidden=32"),
    ("relu_rnn_exploding.yaml", "model.depth=2", "--set model.num_layers=2"),
    ("quickstart.yaml", "model.hidden=32", "--set model.width=32"),
    ("quickstart.yaml", "model.num_layers=3", "--set model.depth=3"),
], ids=["rnn-width", "rnn-hidden_size", "rnn-depth", "mlp-hidden", "mlp-num_layers"])
def test_an_mlp_key_in_a_recurrent_net_is_its_sibling_and_back(tmp_path, config, option, meant):
    """Not a key of some other section (an rnn's model.width is not data.width): the net's own word for it."""
    message = assert_bad_input(train(tmp_path, ROOT / "configs" / config, "--set", option))
    assert f"Did you mean {meant}?" in message


DIGITS_KEYS = "allowed keys of digits: val_fraction, standardize, kind, n_samples."


@pytest.mark.parametrize("option, says", [
    ("data.size=16", "--set data.size=16: unknown key 'data.size': a key of data.kind shapes, not of digits; "),
    ("data.channels=3", "--set data.channels=3: unknown key 'data.channels': a key of data.kind shapes, not of "
                        "digits; "),
    ("data={kind: digits, channels: 3}", "--set 'data={kind: digits, channels: 3}': unknown key 'data.channels': a "
                                         "key of data.kind shapes, not of digits; "),
    ("data.n_features=4", "--set data.n_features=4: unknown key 'data.n_features': a key of data.kind blobs, parity "
                          "or teacher, not of digits; "),
], ids=["size", "channels", "mapping", "three-kinds"])
def test_a_key_of_another_data_kind_says_which_kind_has_it(tmp_path, option, says):
    """he2015_conv30 reads the digits: their data.size is shapes', never model.layers.size (no such path) nor
    model.channels (a model key for a data key)."""
    message = assert_bad_input(train(tmp_path, ROOT / "configs" / "he2015_conv30.yaml", "--set", option))
    assert message == f"error: {says}{DIGITS_KEYS}"


@pytest.mark.parametrize("option, meant", [
    ("data={kind: digits, n_sample: 3}", "Did you mean 'n_samples'?"),  # the key to write inside the mapping
    ("data={kind: digits, learning_rate: 3}", "Did you mean 'train.lr'?"),
    ("size=3", "Did you mean --set data.size=3?"),  # the data's (shapes'), never model.layers' items'
    ("model.size=3", None),
])
def test_an_option_writing_a_mapping_gets_the_key_to_write_in_it(tmp_path, option, meant):
    message = assert_bad_input(train(tmp_path, ROOT / "configs" / "he2015_conv30.yaml", "--set", option))
    assert ("Did you mean" not in message) if meant is None else (meant in message), message
    assert "model.layers.size" not in message and "{kind: digits" not in message.partition(": ")[2].partition(":")[2]


@pytest.mark.parametrize("config", ["quickstart.yaml", "cnn_quickstart.yaml"])
def test_the_final_line_has_no_val_figure_without_a_validation_set(tmp_path, config):
    """Two samples leave none to validate on (round(0.2 * 2) = 0): no 'val loss nan'."""
    result = train(tmp_path, ROOT / "configs" / config, "--set", "data.n_samples=2", "--set", "train.steps=2",
                   "--set", "train.batch_size=2", "--quiet")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"completed: 2 steps, train loss \d\.\d+ -> .*", line), line
    kept = train(tmp_path, ROOT / "configs" / "quickstart.yaml", "--set", "data.n_samples=10", "--set",
                 "train.steps=2", "--quiet")
    assert re.search(r"train loss \d\.\d+, val accuracy 0\.\d00 -> ", kept.stdout), kept.stdout
