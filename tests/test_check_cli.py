"""The ``gradlab check`` / ``gradlab gradcheck`` command: exit statuses, output, --csv, --json and the studies."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.nn.activations import Tanh

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TANH = ("name: c\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 3, width: 8, activation: tanh}\n"
        "check: {batch: 8}\n")
RELU = TANH.replace("tanh", "relu")
HEADER = "param,index,analytic,numeric,abs_diff,rel_error,kink,cs231n_rel_error,bound,step"
N_PARAMS = 2 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 2 + 2  # 186
N_INPUT = 8 * 2


def write(folder: Path, text: str = TANH, name: str = "c.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def break_tanh(monkeypatch):
    monkeypatch.setattr(Tanh, "backward", lambda self, dout: dout * (1.0 - self.out))  # 1 - out, not 1 - out^2


def assert_bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def read_csv(path: Path) -> tuple[str, list[dict]]:
    text = path.read_text(encoding="utf-8")
    return text.splitlines()[0], list(csv.DictReader(text.splitlines()))


# --------------------------------------------------------------------------- exit statuses

@pytest.mark.parametrize("command", ["check", "gradcheck"])
def test_correct_config_exits_0(tmp_path, command):
    result = run(command, write(tmp_path))
    assert result.exit_code == 0, result.output
    assert "PASS: every tensor passes" in result.stdout
    assert f"{N_PARAMS} parameters" in result.stdout
    assert "(good)" in result.stdout
    assert "Each layer alone, and the loss: all 16 tensors pass" in result.stdout
    assert "FAIL" not in result.output
    assert result.stderr == ""


@pytest.mark.parametrize("command", ["check", "gradcheck"])
def test_broken_backward_exits_1_and_names_it(tmp_path, monkeypatch, command):
    break_tanh(monkeypatch)
    result = run(command, write(tmp_path))
    assert result.exit_code == 1, result.output
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL: ")]
    for name in ("tanh1", "tanh2", "tanh3"):  # each module alone: the parameterless culprits
        assert name in line, line
    assert "dense1.W" in line and "input" in line  # end to end
    assert "dense4.W" not in line and "dense4.b" not in line  # after the last tanh: right
    assert "dense1.W" not in line.split("tanh3")[0]  # the culprit modules come first
    assert "Each layer alone (and the loss): the ones that do not pass" in result.stdout
    assert "PASS" not in result.stdout


def test_broken_backward_json_names_it(tmp_path, monkeypatch):
    break_tanh(monkeypatch)
    result = run("check", write(tmp_path), "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["passed"] is False and data["tier"] == "wrong"
    assert {"dense1.W", "dense2.W", "dense3.W", "input"} <= set(data["failed"])
    assert set(data["failed_alone"]) == {"tanh1.input", "tanh2.input", "tanh3.input"}
    assert not {"dense4.W", "dense4.b"} & set(data["failed"])
    bad = {t["name"]: t for t in data["layers"] if not t["passed"]}
    assert set(bad) == {"tanh1.input", "tanh2.input", "tanh3.input"}
    assert all(t["tier"] == "wrong" and t["rel_error"] > 1e-2 for t in bad.values())


@pytest.mark.parametrize("args, fragments", [
    (["--set", "check.step=1"], ["--set check.step=1: unknown key 'check.step'", "Did you mean --set check.eps=1?"]),
    (["--set", "model.dpeth=2"], ["unknown key 'model.dpeth'"]),
    (["--mode", "bogus"], ["'check.mode'", "'auto', 'full', 'sample' or 'directional'", "(got 'bogus')"]),
    (["--dtype", "float16"], ["'check.dtype'", "'float64' or 'float32'"]),
    (["--eps", "0"], ["'check.eps'", "allowed: 1e-15 to 0.1", "(got 0.0)"]),
    (["--eps", "10"], ["'check.eps'", "allowed: 1e-15 to 0.1", "(got 10.0)"]),  # spans tanh's curve: called wrong
    (["--eps", "1e-300"], ["'check.eps'", "allowed: 1e-15 to 0.1"]),  # theta + h == theta: no difference
    (["--loss-scale", "-1"], ["'check.loss_scale'"]),
])
def test_bad_input_exits_2(tmp_path, args, fragments):
    result = run("check", write(tmp_path), *args)
    assert_bad_input(result, "error: ", *fragments)


def test_a_step_out_of_range_for_a_function_of_yours_exits_2(tmp_path):
    (tmp_path / "f.py").write_text("def affine_forward(x, w):\n    return x @ w, (x, w)\n\n\n"
                                   "def affine_backward(dout, cache):\n    x, w = cache\n"
                                   "    return dout @ w.T, x.T @ dout\n", encoding="utf-8")
    result = run("check", f"{tmp_path / 'f.py'}:affine", "--shape", "3,4", "--shape", "4,2", "--eps", "5")
    assert_bad_input(result, "--eps 5 is out of range", "allowed: 1e-15 to 0.1")


def test_unknown_key_in_the_file_exits_2(tmp_path):
    path = write(tmp_path, TANH.replace("check: {batch: 8}", "check: {batch: 8, epsilon: 1.0e-6}"))
    assert_bad_input(run("gradcheck", path), "unknown key 'check.epsilon'", "c.yaml")


def test_missing_file_exits_2(tmp_path):
    assert_bad_input(run("check", tmp_path / "nope.yaml"), "config file not found")


def test_non_finite_pass_exits_2_naming_the_layer(tmp_path):
    path = write(tmp_path, TANH.replace("activation: tanh", "activation: relu, init: {scheme: normal, std: 1.0e+200}"))
    assert_bad_input(run("check", path), "not finite", "layer 2 (forward)")


# --------------------------------------------------------------------------- --csv and --json

def test_csv_has_one_row_per_checked_entry(tmp_path):
    out = tmp_path / "entries.csv"
    result = run("check", write(tmp_path), "--csv", out)
    assert result.exit_code == 0
    header, rows = read_csv(out)
    assert header == HEADER
    assert len(rows) == N_PARAMS + N_INPUT
    counts = {}
    for r in rows:
        counts[r["param"]] = counts.get(r["param"], 0) + 1
    assert counts == {"dense1.W": 16, "dense1.b": 8, "dense2.W": 64, "dense2.b": 8, "dense3.W": 64, "dense3.b": 8,
                      "dense4.W": 16, "dense4.b": 2, "input": 16}
    first = rows[0]
    assert first["param"] == "dense1.W" and first["index"] == "0,0" and first["kink"] == "0"
    for r in rows:
        a, n = float(r["analytic"]), float(r["numeric"])
        assert float(r["abs_diff"]) == pytest.approx(abs(a - n), rel=1e-12, abs=1e-300)
        assert float(r["rel_error"]) < 1e-5
    assert sorted({r["index"] for r in rows if r["param"] == "dense4.b"}) == ["0", "1"]


def test_csv_in_sample_and_directional_modes(tmp_path):
    path = write(tmp_path)
    out = tmp_path / "sample.csv"
    assert run("check", path, "--mode", "sample", "--set", "check.samples=3", "--csv", out).exit_code == 0
    header, rows = read_csv(out)
    assert header == HEADER
    # 3 distinct entries of each tensor; dense4.b has only 2, so both
    assert len(rows) == 8 * 3 + 2
    assert sorted(r["index"] for r in rows if r["param"] == "dense4.b") == ["0", "1"]
    assert len({(r["param"], r["index"]) for r in rows}) == len(rows)
    out = tmp_path / "dir.csv"
    assert run("check", path, "--mode", "directional", "--csv", out).exit_code == 0
    header, rows = read_csv(out)
    assert header == HEADER
    assert len(rows) == 9 * 4 and {r["index"] for r in rows} == {"v0", "v1", "v2", "v3"}


def test_csv_marks_kinks_and_the_smaller_steps_that_avoid_them(tmp_path):
    """At eps 1e-2 some entries cross a ReLU kink; they are differenced again at 1e-2 and 1e-4 of their
    step: the CSV gives each entry the step it was graded at, and those still across a kink are marked."""
    out = tmp_path / "kinks.csv"
    result = run("check", write(tmp_path, RELU), "--eps", "1e-2", "--csv", out, "--json")
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    _, rows = read_csv(out)
    kinked = [r for r in rows if r["kink"] == "1"]
    assert len(kinked) == sum(t["kinks"] for t in data["tensors"])
    steps = {t["name"]: t["step"] for t in data["tensors"]}
    smaller = [r for r in rows if float(r["step"]) < 0.5 * steps[r["param"]]]
    assert len(smaller) >= sum(t["restepped"] for t in data["tensors"]) > 0
    assert all(t["kink_failures"] == 0 for t in data["tensors"])


def test_json_summary(tmp_path):
    result = run("check", write(tmp_path), "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["passed"] is True and data["tier"] == "good" and data["failed"] == []
    assert data["mode"] == "full" and data["eps"] == 1e-5 and data["dtype"] == "float64"
    assert data["exit_code"] == 0 and data["unresolved"] == [] and data["culprit"] == ""
    assert 0 <= data["max_rel_error"] < 1e-5  # CS231n's element-wise rel_error, beside the norm one
    assert data["n_params"] == N_PARAMS and data["has_kinks"] is False
    assert data["rel_error"] < 1e-7
    assert [t["name"] for t in data["tensors"]] == [*(f"dense{l}.{k}" for l in (1, 2, 3, 4) for k in "Wb"), "input"]
    d2 = data["tensors"][2]
    assert d2["shape"] == [8, 8] and d2["checked"] == 64 and d2["layer"] == 2 and d2["tier"] == "good"
    assert len(data["layers"]) == 16  # 15 module tensors alone, and the loss
    assert {"max_rel_error", "bound", "verdict", "step", "cure"} <= set(d2)
    assert d2["bound"] < 1e-7 and d2["verdict"] == "pass"
    assert "taylor" not in data and "eps_sweep" not in data


def test_json_with_studies(tmp_path):
    result = run("check", write(tmp_path), "--json", "--taylor", "--eps-sweep")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert [r["param"] for r in data["taylor"]] == [t["name"] for t in data["tensors"]]
    assert all(1.8 <= r["rate"] <= 2.2 for r in data["taylor"])
    eps = [r["eps"] for r in data["eps_sweep"]]
    assert eps == pytest.approx([10.0 ** -k for k in range(1, 11)])
    centred = [r["centred"] for r in data["eps_sweep"]]
    assert min(centred) < 1e-9 and centred[0] > 1e-6 and centred[-1] > 1e-8  # the V


# --------------------------------------------------------------------------- the studies as tables

def test_taylor_table(tmp_path):
    result = run("check", write(tmp_path), "--taylor")
    assert result.exit_code == 0
    assert "Taylor test" in result.stdout and "rate" in result.stdout
    rates = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 2 and cells[0] in ("dense1.W", "dense4.b", "input"):
            rates[cells[0]] = float(cells[1])
    assert set(rates) == {"dense1.W", "dense4.b", "input"}
    assert all(1.8 <= r <= 2.2 for r in rates.values()), rates


def test_taylor_table_broken(tmp_path, monkeypatch):
    break_tanh(monkeypatch)
    result = run("check", write(tmp_path), "--taylor", "--json")
    assert result.exit_code == 1
    rates = {r["param"]: r["rate"] for r in json.loads(result.stdout)["taylor"]}
    assert 0.8 <= rates["dense1.W"] <= 1.3 and 1.8 <= rates["dense4.W"] <= 2.2


def test_eps_sweep_table(tmp_path):
    result = run("check", write(tmp_path), "--eps-sweep")
    assert result.exit_code == 0
    assert "Relative error against eps" in result.stdout
    rows = {}
    for line in result.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 3 and cells[0].startswith("1e-"):
            rows[cells[0]] = (float(cells[1]), float(cells[2]))
    assert sorted(rows, key=lambda e: float(e)) == [f"1e-{k:02d}" for k in range(10, 0, -1)]
    assert rows["1e-01"][1] > 1e-3  # one-sided truncation
    assert min(rows["1e-04"][0], rows["1e-05"][0]) < 1e-7
    assert rows["1e-10"][0] > 10 * min(c for c, _ in rows.values())  # round-off


# --------------------------------------------------------------------------- flags

def test_flags_reach_the_check(tmp_path):
    path = write(tmp_path)
    data = json.loads(run("check", path, "--json", "--mode", "sample", "--eps", "1e-6").stdout)
    assert data["mode"] == "sample" and data["eps"] == 1e-6
    assert all(t["checked"] == min(10, math.prod(t["shape"])) for t in data["tensors"])
    scaled = json.loads(run("check", path, "--json", "--loss-scale", "1000").stdout)
    plain = json.loads(run("check", path, "--json").stdout)
    assert scaled["passed"]
    assert scaled["tensors"][0]["max_analytic"] == pytest.approx(1000 * plain["tensors"][0]["max_analytic"], rel=1e-9)


def test_float32_warns_on_stderr(tmp_path):
    result = run("check", write(tmp_path), "--dtype", "float32", "--eps", "1e-3")
    assert result.exit_code in (0, 1)
    assert "warning:" in result.stderr and "float32" in result.stderr and "CS231n" in result.stderr
    assert "float32" in result.stdout  # the table title names the dtype


def test_after_steps_and_one_sided(tmp_path):
    path = write(tmp_path)
    result = run("check", path, "--after-steps", "20")
    assert result.exit_code == 0
    assert "note: checked after 20 training steps" in result.stdout
    one = json.loads(run("check", path, "--json", "--one-sided", "--eps", "1e-4").stdout)
    centred = json.loads(run("check", path, "--json", "--eps", "1e-4").stdout)
    assert centred["rel_error"] < 1e-7 < one["rel_error"]
    assert_bad_input(run("check", path, "--after-steps", "-1"))


# --------------------------------------------------------------------------- the examples

@pytest.mark.skipif(not (EXAMPLES / "custom_ok.yaml").exists() or not (EXAMPLES / "custom_wrong.yaml").exists(),
                    reason="examples/custom_ok.yaml and examples/custom_wrong.yaml are not written yet")
def test_custom_examples():
    ok = run("check", EXAMPLES / "custom_ok.yaml")
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.stdout
    wrong = run("check", EXAMPLES / "custom_wrong.yaml", "--json")
    assert wrong.exit_code == 1, wrong.output
    data = json.loads(wrong.stdout)
    bad_alone = {t["name"] for t in data["layers"] if not t["passed"]}
    assert {"swishwrong1.beta", "swishwrong1.input", "swishwrong3.input"} <= bad_alone
    assert all(n.startswith("swishwrong") for n in bad_alone)  # no dense layer is blamed
    assert "swishwrong2.beta" in {t["name"] for t in data["tensors"] if not t["passed"]}
    text = run("check", EXAMPLES / "custom_wrong.yaml")
    assert text.exit_code == 1
    (line,) = [ln for ln in text.stdout.splitlines() if ln.startswith("FAIL: ")]
    assert "swishwrong1" in line and "swishwrong3" in line, line
    assert "swishwrong1.beta" in line, line
