"""check_function / check_layer: what students write, checked alone, and the ``gradlab check FILE.py:NAME`` form."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gradlab
from gradlab.check import CheckReport, TensorResult
from gradlab.check.functions import CheckInputError, check_file
from gradlab.cli import app

from cli_helpers import assert_bad_input

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LAYERS = EXAMPLES / "cs231n_layers.py"
_spec = importlib.util.spec_from_file_location("cs231n_layers_under_test", LAYERS)
L = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(L)

LSTM_SHAPES = [(3, 4), (3, 5), (3, 5), (4, 20), (5, 20), (20,)]  # x, prev_h, prev_c, Wx, Wh, b: N 3, D 4, H 5
CONV = {"stride": 1, "pad": 1}


def numerical(forward, inputs: list, which: int, r: tuple, h: float = 1e-6) -> np.ndarray:
    """d/d inputs[which] of sum_k sum(out_k * r_k) by centred differences, written here from scratch."""
    x = inputs[which]
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        vals = []
        for step in (h, -h):
            moved = [a.copy() if isinstance(a, np.ndarray) else a for a in inputs]
            moved[which][i] += step
            outs = forward(*moved)[:-1]
            vals.append(sum(float(np.sum(o * rk)) for o, rk in zip(outs, r)))
        grad[i] = (vals[0] - vals[1]) / (2 * h)
    return grad


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12)))


def inputs_of(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def names_failed(report: CheckReport) -> list[str]:
    return [t.name for t in report.failed]


# --------------------------------------------------------------------------- the examples themselves, independently

@pytest.mark.parametrize("pair, shapes, extra", [
    ("affine", [(4, 2, 3), (6, 3), (3,)], []),
    ("lstm_step", LSTM_SHAPES, []),
    ("conv", [(2, 2, 4, 4), (3, 2, 3, 3), (3,)], [CONV]),
])
def test_example_backwards_match_centred_differences(pair, shapes, extra):
    """The correct examples agree with differences computed here; each *_wrong differs in exactly the input
    its docstring names (so the check's verdicts below are measured against an independent truth)."""
    forward = getattr(L, f"{pair}_forward" if pair != "conv" else "conv_forward_naive")
    backward = getattr(L, f"{pair}_backward" if pair != "conv" else "conv_backward_naive")
    wrong = getattr(L, f"{pair}_wrong_backward")
    args = inputs_of(shapes) + extra
    *outs, cache = forward(*args)
    r = tuple(np.random.default_rng(1).standard_normal(o.shape) for o in outs)
    right, bad = backward(*r, cache), wrong(*r, cache)
    differs = []
    for k in range(len(shapes)):
        num = numerical(forward, args, k, r)
        assert max_rel(right[k], num) < 1e-6, (pair, k)
        if max_rel(bad[k], num) > 1e-3:
            differs.append(k)
    assert differs == [{"affine": 2, "lstm_step": 2, "conv": 0}[pair]]


# --------------------------------------------------------------------------- check_function

def test_affine_passes_and_the_wrong_bias_is_named():
    x, w, b = inputs_of([(4, 5), (5, 3), (3,)])
    ok = gradlab.check_function(L.affine_forward, L.affine_backward, [x, w, b])
    assert isinstance(ok, CheckReport) and all(isinstance(t, TensorResult) for t in ok.tensors)
    assert ok.passed and [t.name for t in ok.tensors] == ["affine.x", "affine.w", "affine.b"]
    assert [t.checked for t in ok.tensors] == [20, 15, 3] and ok.n_params == 38
    assert all(t.rel_error < 1e-7 for t in ok.tensors)
    bad = gradlab.check_function(L.affine_wrong_forward, L.affine_wrong_backward, [x, w, b])
    assert not bad.passed and names_failed(bad) == ["affine_wrong.b"]
    # mean instead of sum over N = 4 rows: |a - n| / (|a| + |n|) = (1 - 1/4) / (1 + 1/4) = 0.6 for every entry
    assert bad.failed[0].rel_error == pytest.approx(0.6, rel=1e-6) and bad.failed[0].tier == "wrong"


def test_conv_naive_passes_and_the_overwritten_overlap_is_named():
    x, w, b = inputs_of([(2, 2, 5, 5), (2, 2, 3, 3), (2,)], seed=3)
    ok = gradlab.check_function(L.conv_forward_naive, L.conv_backward_naive, [x, w, b, CONV])
    assert ok.passed and [t.name for t in ok.tensors] == ["conv_naive.x", "conv_naive.w", "conv_naive.b"]
    bad = gradlab.check_function(L.conv_wrong_forward, L.conv_wrong_backward, [x, w, b, CONV])
    assert names_failed(bad) == ["conv_wrong.x"]


def test_an_lstm_step_with_six_inputs_and_two_outputs_passes_and_the_cell_path_is_named():
    args = inputs_of(LSTM_SHAPES, seed=2)
    ok = gradlab.check_function(L.lstm_step_forward, L.lstm_step_backward, args)
    assert ok.passed
    assert [t.name.split(".")[1] for t in ok.tensors] == ["x", "prev_h", "prev_c", "Wx", "Wh", "b"]
    assert sum(t.checked for t in ok.tensors) == 12 + 15 + 15 + 80 + 100 + 20
    bad = gradlab.check_function(L.lstm_step_wrong_forward, L.lstm_step_wrong_backward, args)
    assert names_failed(bad) == ["lstm_step_wrong.prev_c"]


def test_packed_outputs_and_a_single_gradient():
    """forward -> ((h, c), cache) calls backward((dh, dc), cache); one input -> backward may return one array."""
    def pair_forward(x):
        return (np.sin(x), x * x), x

    def pair_backward(d, cache):
        dh, dc = d
        return dh * np.cos(cache) + 2 * cache * dc

    def pair_wrong_backward(d, cache):
        dh, dc = d
        return dh * np.cos(cache) + cache * dc  # the factor 2 of d(x^2)/dx is dropped

    x = inputs_of([(3, 4)])
    assert gradlab.check_function(pair_forward, pair_backward, x).passed
    assert names_failed(gradlab.check_function(pair_forward, pair_wrong_backward, x)) == ["pair.x"]


def test_a_mask_grades_crossed_kinks_by_the_one_sided_derivatives():
    """relu at x = +-eps/2: the step crosses the kink, the centred difference is r/2 and the analytic r or 0.
    Without the winners the check cannot tell and fails correct code; with mask=relu_mask it passes."""
    eps = 1e-6
    x = np.array([[eps / 2, -eps / 2, 1.0, -1.0]])
    blind = gradlab.check_function(L.relu_forward, L.relu_backward, [x], eps=eps)
    assert not blind.passed
    seen = gradlab.check_function(L.relu_forward, L.relu_backward, [x], eps=eps, mask=L.relu_mask)
    assert seen.passed and seen.has_kinks  # the two entries at the kink are graded apart (or re-stepped)
    wrong = gradlab.check_function(L.relu_forward, lambda dout, cache: dout * (cache >= -1.5), [x], eps=eps,
                                   mask=L.relu_mask)  # passes x = -1 too: a smooth entry, wrong
    assert names_failed(wrong) == ["relu.x"]


@pytest.mark.parametrize("backward, fragment", [
    (lambda dout, cache: (dout,), "backward returned 1 gradient(s) for 2 float input(s) (x, w)"),
    (lambda dout, cache: (dout, dout), "backward's gradient for w has shape (3, 2), the input has (2,)"),
])
def test_a_backward_of_the_wrong_form_is_an_input_error(backward, fragment):
    def scale_forward(x, w):
        return x * w, (x, w)

    with pytest.raises(CheckInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        gradlab.check_function(scale_forward, backward, inputs_of([(3, 2), (2,)]))


def test_a_random_forward_is_an_input_error():
    rng = np.random.default_rng(0)

    def noisy_forward(x):
        return x * rng.random(), x

    with pytest.raises(CheckInputError, match="something random is on"):
        gradlab.check_function(noisy_forward, lambda d, c: d, inputs_of([(2, 2)]))


# --------------------------------------------------------------------------- check_layer

class Pairs:
    """A layer whose output has another shape: x (N, 2K) -> out (N, K, 2) = x.reshape * s, s (2,)."""

    def __init__(self, wrong=False):
        self.params = {"s": np.array([0.5, -1.5])}
        self.grads = {"s": np.zeros(2)}
        self.wrong = wrong

    def forward(self, x, train=True):
        self.x = x.reshape(x.shape[0], -1, 2)
        return self.x * self.params["s"]

    def backward(self, dout):
        self.grads["s"][...] = np.sum(dout * self.x, axis=(0, 1)) * (2.0 if self.wrong else 1.0)
        return (dout * self.params["s"]).reshape(self.x.shape[0], -1)


class ReLU:
    """A max-like layer that says where its winners are: kinks = True and self.mask."""

    kinks = True
    params, grads = {}, {}

    def forward(self, x, train=True):
        self.mask = x > 0
        return x * self.mask

    def backward(self, dout):
        return dout * self.mask


def test_check_layer_takes_any_output_shape_and_names_the_wrong_param():
    x = inputs_of([(3, 6)])[0]
    ok = gradlab.check_layer(Pairs(), x)
    assert ok.passed and [t.name for t in ok.tensors] == ["pairs.s", "pairs.input"]
    assert names_failed(gradlab.check_layer(Pairs(wrong=True), x)) == ["pairs.s"]
    affine = gradlab.check_layer(L.Affine(width=6, units=2), x)
    assert affine.passed and [t.shape for t in affine.tensors] == [(6, 2), (2,), (3, 6)]


def test_check_layer_reads_kinks_and_mask():
    eps = 1e-6
    x = np.array([[eps / 2, -eps / 2, 2.0]])
    report = gradlab.check_layer(ReLU(), x, eps=eps)
    assert report.passed and report.has_kinks
    silent = type("SilentReLU", (ReLU,), {"kinks": False})  # says nothing of its winners
    assert not gradlab.check_layer(silent(), x, eps=eps).passed  # the entries at the kink fail correct code


def test_check_layer_refuses_what_is_not_a_layer():
    with pytest.raises(CheckInputError, match="params"):
        gradlab.check_layer(object(), np.ones((2, 2)))


# --------------------------------------------------------------------------- the command line form

def run(*args, cwd: Path | None = None):
    return CliRunner().invoke(app, ["check", *map(str, args)])


def test_cli_exit_0_for_correct_code_and_1_naming_the_wrong_tensor():
    ok = run(f"{LAYERS}:affine", "--shape", "4,5", "--shape", "5,3", "--shape", "3")
    assert ok.exit_code == 0, ok.output
    assert "affine.w" in ok.stdout and "PASS" in ok.stdout
    bad = run(f"{LAYERS}:lstm_step_wrong", *[a for s in LSTM_SHAPES for a in ("--shape", ",".join(map(str, s)))])
    assert bad.exit_code == 1
    assert "FAIL: the gradient backward returns for lstm_step_wrong.prev_c (wrong" in bad.stdout
    layer = run(f"{LAYERS}:conv_forward_naive", "--shape", "1,1,3,3", "--shape", "1,1,2,2", "--shape", "1")
    assert_bad_input(layer, "conv_forward_naive takes 4 input(s) (x, w, b, conv_param), but 3 --shape given")


def test_cli_finds_a_class_and_a_mask(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text("import numpy as np\n"
                 "class Double:\n    params, grads = {}, {}\n"
                 "    def forward(self, x, train=True):\n        return 2 * x\n"
                 "    def backward(self, dout):\n        return 3 * dout\n", encoding="utf-8")
    result = run(f"{f}:Double", "--shape", "2,3")
    assert result.exit_code == 1 and "double.input" in result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["nowhere.py:affine", "--shape", "2"], ["nowhere.py: no such file"]),
    (["{L}:nope", "--shape", "2"], ["no nope (looked for nope_forward/nope_backward", "found here: affine"]),
    (["{L}:sigmoid", "--shape", "2"], ["no backward for it"]),
    (["{L}:affine", "--shape", "4,5", "--shape", "6,3", "--shape", "3"], ["affine raised ValueError", "(4,5), (6,3), (3)"]),
    (["{L}:affine", "--shape", "4x5"], ["--shape '4x5' is not a shape"]),
    (["{L}:affine"], ["give the inputs' shapes"]),
    (["{L}:Affine", "--shape", "4,5"], ["Affine() failed: TypeError", "builds with no arguments"]),
    (["{L}:affine", "--shape", "4,5", "--shape", "5,3", "--shape", "3", "--taylor"], ["--taylor apply to a config only"]),
])
def test_cli_bad_input_is_one_paragraph_naming_the_file(args, fragments):
    result = run(*[a.replace("{L}", str(LAYERS)) for a in args])
    message = assert_bad_input(result, *fragments)
    assert message.startswith(f"error: {args[0].split(':')[0].replace('{L}', str(LAYERS))}: ")


def test_shape_is_refused_for_a_config():
    assert_bad_input(run(EXAMPLES / "custom_ok.yaml", "--shape", "3"), "--shape applies to FILE.py:NAME only")


def test_check_file_from_python():
    report = check_file(f"{LAYERS}:affine", [(2, 3), (3, 2), (2,)], seed=4)
    assert report.passed and report.n_params == 6 + 6 + 2


def test_check_layer_runs_a_cell_of_the_step_protocol_through_time():
    """LSTMCell over T = 4 steps is checked through BPTT; the wrong cell's dprev_c reaches every tensor
    through the earlier steps, so all of them fail (with T = 1 nothing flows into a previous c)."""
    x = inputs_of([(2, 4, 3)])[0]
    ok = gradlab.check_layer(L.LSTMCell(input_size=3, hidden=4), x)
    assert ok.passed and [t.name for t in ok.tensors] == ["lstmcell.W_x", "lstmcell.W_h", "lstmcell.b", "lstmcell.input"]
    bad = gradlab.check_layer(L.LSTMCellWrong(input_size=3, hidden=4), x)
    assert set(names_failed(bad)) == {f"lstmcellwrong.{k}" for k in ("W_x", "W_h", "b", "input")}
    assert gradlab.check_layer(L.LSTMCellWrong(input_size=3, hidden=4), x[:, :1]).passed


CELL_FILE = """
import sys
sys.path.insert(0, {examples!r})
from cs231n_layers import LSTMCell, LSTMCellWrong
sys.path.pop(0)

class Cell(LSTMCell):
    def __init__(self):
        super().__init__(input_size=3, hidden=4)

class CellWrong(LSTMCellWrong):
    def __init__(self):
        super().__init__(input_size=3, hidden=4)
"""


def test_cli_checks_a_cell_class_through_time(tmp_path):
    f = tmp_path / "cells.py"
    f.write_text(CELL_FILE.format(examples=str(EXAMPLES)), encoding="utf-8")
    assert run(f"{f}:Cell", "--shape", "2,4,3").exit_code == 0
    wrong = run(f"{f}:CellWrong", "--shape", "2,4,3")
    assert wrong.exit_code == 1 and "cellwrong.W_h" in wrong.stdout
    assert_bad_input(run(f"{f}:Cell", "--shape", "2,4"), "Cell is a recurrent cell: its --shape is x's, N,T,D")


def test_integer_inputs_are_passed_unchecked():
    """CS231n's word_embedding_forward(x, W): x holds indices (ints), only W is checked; a backward that
    assigns instead of accumulating repeated indices is named."""
    def embed_forward(x, W):
        return W[x], (x, W.shape)

    def embed_backward(dout, cache):
        x, shape = cache
        dW = np.zeros(shape)
        np.add.at(dW, x, dout)
        return dW

    def embed_wrong_backward(dout, cache):
        x, shape = cache
        dW = np.zeros(shape)
        dW[x] = dout  # repeated words keep only their last gradient
        return dW

    x, W = np.array([[0, 2, 0], [1, 2, 3]]), inputs_of([(5, 4)])[0]
    ok = gradlab.check_function(embed_forward, embed_backward, [x, W])
    assert ok.passed and [t.name for t in ok.tensors] == ["embed.W"]
    assert names_failed(gradlab.check_function(embed_forward, embed_wrong_backward, [x, W])) == ["embed.W"]


UNRESOLVABLE = """
import numpy as np

def big_forward(x, w):
    '''out = (1e10 x, 1e-8 w): J's round-off (1e10 * 1e-16 over the step) dwarfs w's gradient, 1e-8 r.'''
    return np.concatenate([1e10 * x, 1e-8 * w]), None

def big_backward(dout, cache):
    n = dout.shape[0] // 2
    return 1e10 * dout[:n], 1e-8 * dout[n:]
"""


def test_a_gradient_below_what_j_can_resolve_is_unresolved_not_passed(tmp_path):
    f = tmp_path / "big.py"
    f.write_text(UNRESOLVABLE, encoding="utf-8")
    report = check_file(f"{f}:big", [(3,), (3,)])
    assert not report.failed and [t.name for t in report.unresolved] == ["big.w"]
    assert report.exit_code == 3 and not report.passed
    result = run(f"{f}:big", "--shape", "3", "--shape", "3")
    assert result.exit_code == 3 and "UNRESOLVED" in result.stdout and "big.w" in result.stdout
