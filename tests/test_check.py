"""The gradient check (gradlab.check): correct nets pass, broken backward passes fail and are named,
kinks are graded by the subgradient test, warnings and pre-flight, and the finite-difference step-size facts."""
from __future__ import annotations

import math

import numpy as np
import pytest

import gradlab
from gradlab.check import (
    DEFAULT_EPS,
    RESOLVE,
    culprit,
    resolution,
    TINY,
    centred_difference,
    check,
    eps_sweep,
    one_sided_difference,
    prepare,
    rel_error,
    sweep_eps,
    taylor,
    taylor_test,
    tier,
)
from gradlab.config import ConfigError
from gradlab.nn import MLP, BatchNorm, Dense, Dropout
from gradlab.nn.activations import ELU, PReLU, ReLU, Sigmoid, Tanh
from gradlab.nn.losses import BCE, MSE, CrossEntropy

from jitter import is_weight, jitter_builds

SPIRALS = {"kind": "spirals", "n_samples": 64}
BLOBS = {"kind": "blobs", "n_samples": 64, "n_classes": 3}
TEACHER = {"kind": "teacher", "n_samples": 64, "n_features": 4, "n_outputs": 2, "width": 8}
RELU_FAMILY = {"relu", "leaky_relu", "prelu"}


def make(model: dict, check: dict | None = None, data: dict = SPIRALS, **top) -> gradlab.Config:
    """A small config: the first 8 training samples, float64, eps 1e-7 unless told otherwise."""
    return gradlab.config_from_dict({"data": data, "model": model, "check": {"batch": 8, **(check or {})}, **top})


def net(activation: str = "tanh", depth: int = 3, width: int = 8, **model) -> dict:
    return {"depth": depth, "width": width, "activation": activation, **model}


def whole_failed(report) -> set[str]:
    return {t.name for t in report.tensors if not t.passed}


def alone_failed(report) -> set[str]:
    return {t.name for t in report.layers if not t.passed}


def by_name(results, name: str):
    (found,) = [t for t in results if t.name == name]
    return found


def entry_rows(blocks) -> list:
    """The Entry rows from run_check's second value (Entry objects, or blocks with .rows())."""
    return [row for b in blocks for row in (b.rows() if hasattr(b, "rows") else [b])]


def assert_all_good(report) -> None:
    assert report.passed, [(t.name, t.tier, t.rel_error) for t in report.failed]
    assert report.failed == []
    assert report.tier == "good" and report.rel_error < 1e-7
    # per tensor, round-off of eps 1e-7 can leave a small gradient (sigmoid's dense1.W) just acceptable
    assert all(t.tier in ("good", "acceptable") and t.rel_error < 1e-5 for t in report.tensors), \
        [(t.name, t.rel_error) for t in report.tensors if t.tier != "good"]
    assert all(t.tier == "good" for t in report.layers), [(t.name, t.rel_error) for t in report.layers]


@pytest.fixture(params=["default", "generic"])
def params(request, monkeypatch):
    """The check's model as built (b = 0, gamma = 1, beta = 0, default slopes) or at generic values."""
    if request.param == "generic":
        jitter_builds(monkeypatch)
    return request.param


def test_generic_checks_really_check_at_generic_values(monkeypatch):
    """The check builds its model through gradlab.train.setup; jittered there, it checks that model."""
    cfg = make(net("elu", batchnorm=True))
    plain = prepare(cfg).model
    jitter_builds(monkeypatch)
    cs = prepare(cfg)
    moved = cs.model
    for name, p in plain.params.items():
        same = np.array_equal(moved.params[name], p)
        assert same == is_weight(name.split(".")[1]), name
    assert [m.alpha for m in moved.modules() if m.name.startswith("elu")] != [1.0] * 3
    # and the objective's reference pass ran at those values
    J = cs.objective.value()
    assert J == moved.loss_and_grads(cs.objective.x, cs.objective.y, cs.objective.loss)


# --------------------------------------------------------------------------- 1. correct nets pass

@pytest.mark.parametrize("activation", ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu",
                                        "softplus", "softsign"])
def test_every_activation_passes(activation, params):
    report = check(make(net(activation)))
    assert report.mode == "full" and report.dtype == "float64" and report.eps == DEFAULT_EPS["float64"] == 1e-5
    # whole net: dense1..dense4 W and b (+ prelu slopes) and the input; every entry of each
    names = [t.name for t in report.tensors]
    expected = [f"dense{l}.{k}" for l in (1, 2, 3) for k in ("W", "b")]
    if activation == "prelu":
        expected = [n for l in (1, 2, 3) for n in (f"dense{l}.W", f"dense{l}.b", f"prelu{l}.alpha")]
    assert names == [*expected, "dense4.W", "dense4.b", "input"]
    assert all(t.checked == math.prod(t.shape) for t in report.tensors + report.layers)
    assert report.n_params == 2 * 8 + 8 + 2 * (8 * 8 + 8) + 8 * 2 + 2 + (24 if activation == "prelu" else 0)
    assert len(report.entries) == report.n_params + 8 * 2
    # each module alone, the activation by its own name
    assert f"{activation}2.input" in [t.name for t in report.layers]
    if activation in RELU_FAMILY:
        assert report.has_kinks
        assert any("kinks" in n for n in report.notes)
        assert report.passed and report.failed == []
        assert report.tier in ("good", "acceptable")
        assert all(t.kink_failures == 0 for t in report.tensors + report.layers)
        assert sum(t.kinks for t in report.tensors) == sum(e.kink for e in report.entries)
    else:
        assert not report.has_kinks
        assert_all_good(report)


@pytest.mark.parametrize("loss, data, n_out", [
    ("bce", SPIRALS, 1),
    ("cross_entropy", BLOBS, 3),
    ("mse", TEACHER, 2),  # regression
    ("mse", BLOBS, 3),  # against one-hot class targets
])
def test_every_loss_passes(loss, data, n_out, params):
    report = check(make(net("tanh"), data=data, loss=loss))
    assert by_name(report.tensors, "dense4.W").shape == (8, n_out)
    assert_all_good(report)


def test_residual_batchnorm_dropout_l2_pass(params):
    cfg = make(net("tanh", depth=4, residual=True, batchnorm=True, dropout=0.25), train={"l2": 0.05})
    report = check(cfg)
    assert_all_good(report)
    names = {t.name for t in report.tensors}
    assert {"bn1.gamma", "bn1.beta", "bn4.gamma"} <= names
    assert "dense1.b" not in names  # a dense layer followed by batch norm has no bias
    assert {"bn2.input", "dropout3.input", "tanh4.input"} <= {t.name for t in report.layers}
    assert any("dropout" in n and "fixed mask" in n for n in report.notes)
    assert any("training mode" in n for n in report.notes)


def test_residual_blocks_are_really_there_and_pass(params):
    cs = prepare(make(net("tanh", depth=5, residual=2)))
    assert cs.model.block_start == {2: 3, 4: 5}
    assert_all_good(check(make(net("tanh", depth=5, residual=2))))


def test_dropout_mask_is_frozen_and_really_drops():
    cs = prepare(make(net("tanh", dropout=0.5)))
    drops = [m for m in cs.model.modules() if isinstance(m, Dropout)]
    assert len(drops) == 3 and all(m.frozen for m in drops)
    scale = drops[0].scale
    assert scale.shape == (8, 8) and set(np.unique(scale)) == {0.0, 2.0}
    # J is deterministic with the mask fixed, and not the loss without dropout
    J = cs.objective.value()
    assert J == cs.objective.value()
    plain = prepare(make(net("tanh"))).objective.value()
    assert J != pytest.approx(plain, rel=1e-6)


def test_l2_term_is_in_both_gradients(params):
    plain = check(make(net("tanh")))
    l2 = check(make(net("tanh"), train={"l2": 0.5}))
    assert_all_good(l2)
    # the penalty moved the W gradients (both sides agree on it), not the biases
    assert by_name(l2.tensors, "dense2.W").max_analytic != pytest.approx(by_name(plain.tensors, "dense2.W").max_analytic)
    assert by_name(l2.tensors, "dense2.b").max_analytic == pytest.approx(by_name(plain.tensors, "dense2.b").max_analytic)


# --------------------------------------------------------------------------- 2. broken passes are caught and named

def tanh_missing_factor(mp):
    mp.setattr(Tanh, "backward", lambda self, dout: dout * (1.0 - self.out))  # should be 1 - out^2


def ce_missing_mean(mp):
    original = CrossEntropy.backward
    mp.setattr(CrossEntropy, "backward", lambda self: original(self) * len(self.y))  # no 1/N


def dense_dx_untransposed(mp):
    def backward(self, dout):
        W = self.params["W"]
        np.matmul(self.x.T, dout, out=self.grads["W"])
        if "b" in self.grads:
            dout.sum(axis=0, out=self.grads["b"])
        return dout @ (W if W.shape[0] == W.shape[1] else W.T)  # W for W.T where the shapes let it pass
    mp.setattr(Dense, "backward", backward)


def dense_dW_transposed(mp):
    original = Dense.backward

    def backward(self, dout):
        dx = original(self, dout)
        if self.grads["W"].shape[0] == self.grads["W"].shape[1]:
            self.grads["W"][...] = dout.T @ self.x  # (x^T dout)^T: fits a square W, wrong
        return dx
    mp.setattr(Dense, "backward", backward)


def mse_wrong_sign(mp):
    mp.setattr(MSE, "backward", lambda self: -2.0 * self.diff / self.diff.shape[0])


def bce_wrong_sign(mp):
    original = BCE.backward
    mp.setattr(BCE, "backward", lambda self: -original(self))


def dense_db_negated(mp):
    original = Dense.backward

    def backward(self, dout):
        dx = original(self, dout)
        self.grads["b"] *= -1.0
        return dx
    mp.setattr(Dense, "backward", backward)


def dense_db_mean(mp):
    original = Dense.backward

    def backward(self, dout):
        dx = original(self, dout)
        self.grads["b"][...] = dout.mean(axis=0)  # mean, not sum, over the batch
        return dx
    mp.setattr(Dense, "backward", backward)


def dense_db_first_sample(mp):
    original = Dense.backward

    def backward(self, dout):
        dx = original(self, dout)
        self.grads["b"][...] = dout[0]  # one sample, not the batch
        return dx
    mp.setattr(Dense, "backward", backward)


def sigmoid_without_one_minus(mp):
    mp.setattr(Sigmoid, "backward", lambda self, dout: dout * self.out)  # s, not s (1 - s)


def l2_missing_from_grads(mp):
    original = MLP.loss_and_grads

    def loss_and_grads(self, x, y, loss, l2=0.0, train=True):
        J = original(self, x, y, loss, 0.0, train)  # grads without the penalty...
        return J + sum(0.5 * l2 * float(np.vdot(W, W)) for k, W in self.params.items() if k.endswith(".W"))
    mp.setattr(MLP, "loss_and_grads", loss_and_grads)  # ...the value with it


def batchnorm_no_mean_var(mp):
    original = BatchNorm.backward

    def backward(self, dout):
        original(self, dout)  # gamma and beta right
        return dout * self.params["gamma"] * self.inv_std  # as if mu and var were constants
    mp.setattr(BatchNorm, "backward", backward)


# (patch, model, extra top-level config, whole-net tensors that must fail, ... that must pass,
#  layer-alone tensors that must fail, ... that must pass); a None layer-fail set means "every layer passes"
BROKEN = {
    "tanh_missing_factor": (tanh_missing_factor, net("tanh"), {},
                            {"dense1.W", "dense1.b", "dense3.W", "input"}, {"dense4.W", "dense4.b"},
                            {"tanh1.input", "tanh2.input", "tanh3.input"}, {"dense2.W", "dense2.input"}),
    "cross_entropy_missing_1/N": (ce_missing_mean, net("tanh"), {"data": BLOBS},
                                  {"dense1.W", "dense4.W", "dense4.b", "input"}, set(),
                                  {"loss(cross_entropy).input"}, {"dense4.W", "tanh3.input"}),
    "dense_dx_W_not_WT": (dense_dx_untransposed, net("tanh"), {},
                          {"dense1.W", "dense2.W", "input"}, {"dense3.W", "dense4.W", "dense4.b"},
                          {"dense2.input", "dense3.input"}, {"dense1.input", "dense4.input", "dense2.W"}),
    "dense_dW_transposed": (dense_dW_transposed, net("tanh"), {},
                            {"dense2.W", "dense3.W"}, {"dense1.W", "dense4.W", "dense2.b", "input"},
                            {"dense2.W", "dense3.W"}, {"dense1.W", "dense4.W", "dense2.input"}),
    "mse_wrong_sign": (mse_wrong_sign, net("tanh"), {"data": TEACHER, "loss": "mse"},
                       {"dense1.W", "dense4.W", "dense4.b", "input"}, set(), {"loss(mse).input"}, {"dense4.W"}),
    "bce_wrong_sign": (bce_wrong_sign, net("tanh"), {"loss": "bce"},
                       {"dense1.W", "dense4.W", "dense4.b", "input"}, set(), {"loss(bce).input"}, {"dense4.W"}),
    "dense_db_negated": (dense_db_negated, net("tanh"), {},
                         {"dense1.b", "dense2.b", "dense4.b"}, {"dense1.W", "dense4.W", "input"},
                         {"dense1.b", "dense4.b"}, {"dense1.W", "dense1.input"}),
    "dense_db_mean": (dense_db_mean, net("tanh"), {},
                      {"dense1.b", "dense4.b"}, {"dense1.W", "dense4.W", "input"},
                      {"dense1.b", "dense4.b"}, {"dense1.W", "dense4.input"}),
    "dense_db_first_sample": (dense_db_first_sample, net("tanh"), {},
                              {"dense1.b", "dense4.b"}, {"dense1.W", "dense4.W", "input"},
                              {"dense1.b", "dense4.b"}, {"dense1.W", "dense4.input"}),
    "sigmoid_s_not_s(1-s)": (sigmoid_without_one_minus, net("sigmoid"), {},
                             {"dense1.W", "dense3.W", "input"}, {"dense4.W", "dense4.b"},
                             {"sigmoid1.input", "sigmoid2.input", "sigmoid3.input"}, {"dense2.input"}),
    "l2_missing_from_grads": (l2_missing_from_grads, net("tanh"), {"train": {"l2": 0.5}},
                              {"dense1.W", "dense2.W", "dense4.W"}, {"dense1.b", "dense4.b", "input"}, None, set()),
    "batchnorm_ignores_mean_var": (batchnorm_no_mean_var, net("tanh", batchnorm=True), {},
                                   {"dense1.W", "bn1.gamma", "input"}, {"bn3.gamma", "bn3.beta", "dense4.W"},
                                   {"bn1.input", "bn2.input", "bn3.input"}, {"bn1.gamma", "tanh1.input"}),
}


@pytest.mark.parametrize("mode", ["full", "directional", "sample"])
@pytest.mark.parametrize("bug", list(BROKEN))
def test_broken_backward_fails_and_is_named(monkeypatch, bug, mode, params):
    patch, model, top, whole_bad, whole_ok, alone_bad, alone_ok = BROKEN[bug]
    cfg = make(model, {"mode": mode, "samples": 5, "directions": 4}, **top)
    assert check(cfg).passed  # the unbroken net passes in this mode
    patch(monkeypatch)
    report = check(cfg)
    assert report.passed is False
    assert report.mode == mode
    failed = [t.name for t in report.failed]
    assert whole_bad <= whole_failed(report), (whole_failed(report), report.tensors)
    assert not (whole_ok & whole_failed(report)), whole_failed(report)
    for name in whole_bad:
        t = by_name(report.tensors, name)
        assert name in failed and t.tier == "wrong" and t.rel_error > 1e-2
    if alone_bad is None:  # the L2 term is no module: each layer alone, and the loss, still pass
        assert alone_failed(report) == set()
        assert culprit(report).startswith("end to end")
    else:
        assert alone_bad <= alone_failed(report), alone_failed(report)
        assert alone_bad <= {t.name for t in report.failed if t in report.layers}
        assert not (alone_ok & alone_failed(report)), alone_failed(report)
        assert all(by_name(report.layers, n).tier == "wrong" for n in alone_bad)
        loss_bug = any(n.startswith("loss(") for n in alone_bad)  # the culprit is named: the loss first
        assert culprit(report).startswith("the loss's backward is wrong") is loss_bug, culprit(report)
    if mode == "sample":
        assert all(t.checked == min(5, math.prod(t.shape)) for t in report.tensors + report.layers)
    if mode == "directional":
        assert all(t.checked == 4 for t in report.tensors + report.layers)


def batchnorm_dx_without_gamma(mp):
    original = BatchNorm.backward

    def backward(self, dout):
        original(self, dout)  # gamma and beta right
        xhat, n = self.xhat, dout.shape[0]  # dx as if dxhat were dout: the gamma factor dropped
        return (self.inv_std / n) * (n * dout - dout.sum(axis=0) - xhat * np.sum(dout * xhat, axis=0))
    mp.setattr(BatchNorm, "backward", backward)


def batchnorm_dgamma_from_output(mp):
    original = BatchNorm.backward

    def backward(self, dout):
        dx = original(self, dout)
        np.sum(dout * (self.params["gamma"] * self.xhat + self.params["beta"]), axis=0, out=self.grads["gamma"])
        return dx  # sum(dout * out): xhat read off the output, forgetting beta and gamma
    mp.setattr(BatchNorm, "backward", backward)


def prelu_initial_slope(mp):
    original = PReLU.backward

    def backward(self, dout):
        original(self, dout)  # d alpha right
        return np.where(self.mask, dout, self.alpha * dout)  # the configured initial slope, not the learned one
    mp.setattr(PReLU, "backward", backward)


def elu_alpha_one(mp):
    mp.setattr(ELU, "backward", lambda self, dout: dout * np.where(self.mask, 1.0, self.out + 1.0))


# (patch, model, whole-net tensors that must fail at generic values, layers alone that must fail)
HIDDEN = {
    "batchnorm_dx_without_gamma": (batchnorm_dx_without_gamma, net("tanh", batchnorm=True),
                                   {"dense1.W", "bn1.gamma", "input"}, {"bn1.input", "bn2.input", "bn3.input"}),
    "batchnorm_dgamma_from_output": (batchnorm_dgamma_from_output, net("tanh", batchnorm=True),
                                     {"bn1.gamma", "bn2.gamma", "bn3.gamma"}, {"bn1.gamma", "bn2.gamma", "bn3.gamma"}),
    "prelu_initial_slope": (prelu_initial_slope, net("prelu"),
                            {"dense1.W", "prelu1.alpha", "input"}, {"prelu1.input", "prelu2.input", "prelu3.input"}),
    "elu_alpha_one": (elu_alpha_one, net("elu"), {"dense1.W", "input"}, {"elu1.input", "elu2.input", "elu3.input"}),
}


@pytest.mark.parametrize("bug", list(HIDDEN))
def test_a_backward_right_only_at_the_defaults_is_caught_at_generic_values(monkeypatch, bug):
    """At gamma = 1, beta = 0 and the initial slopes these bugs give the right numbers, so the check passes
    them; at generic values it fails them and names the layer."""
    patch, model, whole_bad, alone_bad = HIDDEN[bug]
    patch(monkeypatch)
    assert check(make(model)).passed  # where the bug hides
    jitter_builds(monkeypatch)
    report = check(make(model))
    assert not report.passed
    assert whole_bad <= whole_failed(report), whole_failed(report)
    assert alone_bad <= alone_failed(report), alone_failed(report)
    assert all(by_name(report.layers, n).tier == "wrong" for n in alone_bad)
    assert {"dense4.W", "dense4.b"}.isdisjoint(whole_failed(report))  # above every hidden layer: still right


def test_broken_parameterless_activation_is_localised(monkeypatch):
    """Sigmoid has no parameters, yet the check names it: 'sigmoid2.input' alone is wrong."""
    sigmoid_without_one_minus(monkeypatch)
    report = check(make(net("sigmoid")))
    bad_alone = [t.name for t in report.layers if not t.passed]
    assert "sigmoid2.input" in bad_alone
    assert sorted(bad_alone) == ["sigmoid1.input", "sigmoid2.input", "sigmoid3.input"]
    t = by_name(report.layers, "sigmoid2.input")
    assert t.layer == 2 and t.shape == (8, 8) and t.tier == "wrong"
    # the worst entry: analytic s * r against numeric s (1 - s) * r
    assert abs(t.worst_analytic - t.worst_numeric) > 0.1 * abs(t.worst_numeric)


# --------------------------------------------------------------------------- 3. kinks

def test_relu_kinks_crossed_are_stepped_around_not_failed():
    """At eps 1e-2 pre-activations cross zero; such an entry is differenced again at 1e-2 and 1e-4 of its
    step, where it no longer crosses, and graded as a smooth entry: the net passes."""
    report = check(make(net("relu"), {"eps": 1e-2}))
    restepped = [t for t in report.tensors + report.layers if t.restepped > 0]
    assert restepped, "eps 1e-2 should move some pre-activations across zero"
    assert all(t.kink_failures == 0 for t in report.tensors + report.layers)
    assert report.passed and report.failed == [] and report.exit_code == 0
    assert report.tier in ("good", "acceptable")
    rows = [e for e in report.entries if e.step < 1e-3]  # the re-stepped entries carry their smaller step
    assert len(rows) >= sum(t.restepped for t in report.tensors) > 0
    # the same net at the default eps crosses none
    assert sum(t.restepped + t.kinks for t in check(make(net("relu"))).tensors) == 0


def test_inverted_relu_mask_fails(monkeypatch):
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: dout * ~self.mask)
    for eps in (1e-5, 1e-2):
        report = check(make(net("relu"), {"eps": eps}))
        assert report.passed is False
        assert {"relu1.input", "relu2.input", "relu3.input"} <= alone_failed(report)
        assert {"dense1.W", "input"} <= whole_failed(report)
        assert {"dense4.W", "dense4.b"}.isdisjoint(whole_failed(report))


def test_relu_subgradient_zero_slope_at_kink_is_accepted():
    """ReLU'(0) = 0 (mask x > 0): at an input exactly on the kink the analytic value 0 is between
    the one-sided slopes 0 and r, so the entry is a kink, not a failure."""
    from gradlab.check import ModuleObjective, run_check

    relu = ReLU("relu1")
    x = np.array([[0.0, 1.0, -1.0], [2.0, 0.0, -0.5]])
    obj = ModuleObjective(relu, x, np.random.default_rng(0), 1)
    (result,), blocks = run_check(obj, ["relu1.input"], "full", 1e-6, np.random.default_rng(0))
    rows = entry_rows(blocks)
    assert result.kinks == 2 and result.kink_failures == 0 and result.passed
    on_kink = [e for e in rows if e.kink]
    assert sorted(e.index for e in on_kink) == ["0,0", "1,1"]
    for e in on_kink:
        assert e.analytic == 0.0 and e.left == 0.0  # relu(0 - eps) = relu(0): flat on the left
        assert abs(e.right) > 0.1  # slope r on the right
        assert e.numeric == pytest.approx((e.left + e.right) / 2)


def test_kink_with_analytic_outside_one_sided_slopes_fails(monkeypatch):
    """Say ReLU'(0) = 2: at a crossed kink that is outside [0, r], a kink failure."""
    from gradlab.check import ModuleObjective, run_check

    # no negative inputs below, so "not x > 0" means x == 0 exactly
    monkeypatch.setattr(ReLU, "backward", lambda self, dout: dout * np.where(self.mask, 1.0, 2.0))
    relu = ReLU("relu1")
    x = np.array([[0.0, 1.0, 3.0], [2.0, 5.0, 4.0]])
    obj = ModuleObjective(relu, x, np.random.default_rng(0), 1)
    (result,), _ = run_check(obj, ["relu1.input"], "full", 1e-6, np.random.default_rng(0))
    assert result.kinks == 1 and result.kink_failures == 1
    assert result.tier == "good"  # the smooth entries are right...
    assert not result.passed  # ...but the kink entry is not a subgradient


# --------------------------------------------------------------------------- 4. warnings

def test_float32_warns_and_grades_against_float32s_bound():
    report = check(make(net("tanh"), {"dtype": "float32"}))
    assert report.dtype == "float32" and report.eps == DEFAULT_EPS["float32"] == 5e-3
    assert len(report.warnings) == 1
    assert "float32" in report.warnings[0] and "CS231n" in report.warnings[0]
    assert report.rel_error > 1e-7  # single precision does not reach the good tier...
    assert report.passed and report.exit_code == 0  # ...but correct code passes, explained by float32's bound
    assert any(t.explained for t in report.tensors) and all(t.bound < RESOLVE for t in report.tensors)
    float64 = check(make(net("tanh")))
    assert float64.warnings == []  # ...and float64 says nothing
    assert not any("float32" in w for w in float64.warnings)


def test_the_check_runs_in_float64_whatever_train_dtype_is():
    report = check(make(net("tanh"), train={"dtype": "float32"}))
    assert report.dtype == "float64" and report.passed
    assert any("float64 although train.dtype is float32" in n for n in report.notes)


@pytest.mark.parametrize("factor", [1.1, 0.5])
def test_float32_still_fails_a_wrong_factor(monkeypatch, factor):
    """A tanh backward off by a factor fails in float32 too: float32's bound (about 1e-4 here) explains
    round-off, not 5e-2."""
    original = Tanh.backward
    monkeypatch.setattr(Tanh, "backward", lambda self, dout: factor * original(self, dout))
    report = check(make(net("tanh"), {"dtype": "float32"}))
    assert report.exit_code == 1
    assert {"tanh1.input", "tanh2.input", "tanh3.input"} <= alone_failed(report)
    assert {"dense1.W", "input"} <= whole_failed(report)


def test_float32_too_small_a_step_is_unresolved_and_its_cure_resolves_it():
    """eps 1e-6 in float32: the step is below float32's round-off of J, the bound is far above 1e-2 and
    the verdict is unresolved (exit 3), not a failure; the cure printed, float64, resolves it."""
    report = check(make(net("tanh"), {"dtype": "float32", "eps": 1e-6}))
    assert report.failed == [] and report.unresolved and report.exit_code == 3 and not report.passed
    t = report.unresolved[0]
    assert t.bound > RESOLVE and "--dtype float64" in t.cure
    assert any("--dtype float64" in w for w in report.warnings)
    cured = check(make(net("tanh"), {"dtype": "float64", "eps": 1e-6}))
    assert cured.exit_code == 0 and not cured.unresolved


def test_too_small_a_step_in_float64_is_unresolved_and_the_larger_eps_printed_resolves_it():
    """eps 1e-13: round-off of J over the step (about 1e-3 of J's gradient per entry... far more for small
    ones) makes the bound useless; the cure names a larger eps, which resolves every tensor."""
    model = net("tanh", depth=2)
    report = check(make(model, {"eps": 1e-13}))
    assert report.failed == [] and report.unresolved and report.exit_code == 3
    cures = {t.cure for t in report.unresolved}
    [eps] = {float(c.split("--eps ")[1].split(")")[0]) for c in cures if "--eps" in c}
    assert 1e-13 < eps <= 1e-2
    cured = check(make(model, {"eps": eps}))
    assert cured.exit_code == 0 and not cured.unresolved


def test_gradients_below_the_loss_resolution_are_covered_by_the_checks_alone():
    """A vanishing sigmoid net's first-layer gradients (1e-18) change J by less than its round-off: no
    step or loss scale can measure them end to end. They are unresolved end to end, and covered: every
    module their gradient passes through, and the loss, pass alone. The check exits 0."""
    model = net("sigmoid", depth=8, init={"scheme": "normal", "std": 0.01})
    report = check(make(model))
    d1 = by_name(report.tensors, "dense1.W")
    assert 0 < d1.max_analytic < 1e-10 and d1.verdict == "unresolved" and d1.covered and d1.bound > RESOLVE
    assert d1.max_analytic < resolution(2.3, 1e-5)
    assert report.exit_code == 0 and report.passed and report.unresolved == []
    assert any("dense1.W" in n and "pass alone" in n for n in report.notes)
    d9 = by_name(report.tensors, "dense9.W")
    assert d9.verdict == "pass" and not d9.covered and d9.tier == "good"
    scaled = check(make(model, {"loss_scale": 1e10}))  # scales J's round-off too: nothing changes
    d1s = by_name(scaled.tensors, "dense1.W")
    assert d1s.max_analytic == pytest.approx(1e10 * d1.max_analytic, rel=1e-9)
    assert d1s.verdict == "unresolved" and d1s.bound == pytest.approx(d1.bound, rel=0.5)


def test_a_loss_scale_changes_no_verdict():
    """A loss scale multiplies J and its round-off alike: relative errors and bounds stay where they were,
    so the check never suggests one."""
    model = net("tanh", depth=2)
    plain, scaled = check(make(model)), check(make(model, {"loss_scale": 1e-12}))
    assert plain.passed and scaled.passed
    for a, b in zip(plain.tensors, scaled.tensors):
        assert b.max_analytic == pytest.approx(1e-12 * a.max_analytic, rel=1e-9)
        assert b.verdict == a.verdict and b.bound == pytest.approx(a.bound, rel=1.0)
    assert not any("loss-scale" in w for w in plain.warnings + scaled.warnings)


def test_vanishing_net_layers_alone_all_pass():
    """The whole-net check of the first layers of a vanishing sigmoid net cannot resolve 1e-18
    gradients (J changes below its last bit); each module alone is still checked exactly."""
    report = check(make(net("sigmoid", depth=8, init={"scheme": "normal", "std": 0.01})))
    assert alone_failed(report) == set()
    assert by_name(report.tensors, "dense9.W").tier == "good"


# --------------------------------------------------------------------------- 5. pre-flight, after steps

def test_non_finite_pass_is_a_config_error_naming_the_layer():
    cfg = make(net("relu", init={"scheme": "normal", "std": 1e200}))
    with pytest.raises(ConfigError, match=r"not finite .* first non-finite value in layer 2 \(forward\)") as exc:
        check(cfg, source="boom.yaml")
    assert str(exc.value).startswith("boom.yaml: ")
    with pytest.raises(ConfigError, match=r"layer 4 \(forward\)"):
        check(make(net("linear", init={"scheme": "normal", "std": 1e100})))


def test_after_steps_trains_first_and_notes_it():
    cfg = make(net("tanh"), train={"optimizer": "sgd", "lr": 0.1, "batch_size": 16})
    before = prepare(cfg).model.params["dense1.W"].copy()
    after = prepare(cfg, after_steps=20).model.params["dense1.W"]
    assert not np.allclose(before, after)  # the parameters moved
    report = check(cfg, after_steps=20)
    assert "checked after 20 training steps" in report.notes
    assert_all_good(report)
    assert not any("training steps" in n for n in check(cfg).notes)


# --------------------------------------------------------------------------- 6. step sizes

def test_seed_003_theta_cubed():
    theta = np.array([1.0])
    f = lambda: float(theta[0] ** 3)  # noqa: E731
    assert one_sided_difference(f, theta, 0.01)[0] == pytest.approx(3.0301, abs=1e-10)
    assert centred_difference(f, theta, 0.01)[0] == pytest.approx(3.0001, abs=1e-10)
    assert theta[0] == 1.0  # restored exactly
    # error O(eps) against O(eps^2): 0.0301 vs 0.0001 at eps 0.01, and shrinking by 10x vs 100x
    assert one_sided_difference(f, theta, 0.001)[0] - 3 == pytest.approx(0.003001, abs=1e-9)
    assert centred_difference(f, theta, 0.001)[0] - 3 == pytest.approx(1e-6, abs=1e-9)


def test_centred_difference_perturbs_every_entry_and_restores():
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    copy = x.copy()
    f = lambda: float(np.sum(x ** 2) + x[0, 1] * x[1, 0])  # noqa: E731
    g = centred_difference(f, x, 1e-5)
    assert np.array_equal(x, copy)
    np.testing.assert_allclose(g, [[2.0, -4.0 + 0.5], [1.0 + -2.0, 6.0]], atol=1e-8)


def test_eps_sweep_is_v_shaped():
    rows = sweep_eps(make(net("tanh")))
    by_eps = {row["eps"]: row for row in rows}
    assert sorted(by_eps) == pytest.approx([10.0 ** -k for k in range(10, 0, -1)])
    eps = lambda k: next(e for e in by_eps if e == pytest.approx(10.0 ** -k))  # noqa: E731
    centred = {k: by_eps[eps(k)]["centred"] for k in range(1, 11)}
    one_sided = {k: by_eps[eps(k)]["one_sided"] for k in range(1, 11)}
    best = min(centred.values())
    assert min(centred[4], centred[5]) < 1e-7  # the bottom of the V
    assert one_sided[1] > 1e-3  # truncation: O(eps) at eps 0.1
    assert centred[10] > 10 * best  # round-off: O(1/eps) on the right
    assert centred[1] > 10 * best  # truncation O(eps^2) on the left
    assert one_sided[1] > centred[1]  # centred beats one-sided where truncation dominates
    assert one_sided[3] > 10 * centred[3]


def test_eps_sweep_on_an_objective_directly():
    cs = prepare(make(net("tanh", depth=2)))
    rows = eps_sweep(cs.objective, ["dense1.W"], np.random.default_rng(0), epsilons=(1e-1, 1e-5), directions=3)
    assert [r["eps"] for r in rows] == [1e-1, 1e-5]
    assert rows[1]["centred"] < 1e-7 < rows[0]["one_sided"]


def test_taylor_rates_two_for_correct_net(params):
    rows = taylor(make(net("tanh")))
    assert [r["param"] for r in rows][-1] == "input"
    assert len(rows) == 9
    for r in rows:
        assert 1.8 <= r["rate"] <= 2.2, r
        assert len(r["residuals"]) == 8 and r["h"][0] == pytest.approx(0.1)


def test_taylor_rates_one_for_broken_backward(monkeypatch):
    tanh_missing_factor(monkeypatch)
    rates = {r["param"]: r["rate"] for r in taylor(make(net("tanh")))}
    for name in ("dense1.W", "dense1.b", "dense2.W", "dense3.W", "input"):
        assert 0.8 <= rates[name] <= 1.3, rates
    for name in ("dense4.W", "dense4.b"):  # after the last tanh: still right
        assert 1.8 <= rates[name] <= 2.2, rates


def test_taylor_test_on_an_objective_directly(monkeypatch):
    cs = prepare(make(net("sigmoid", depth=2)))
    (row,) = taylor_test(cs.objective, ["dense1.W"], np.random.default_rng(1))
    assert 1.8 <= row["rate"] <= 2.2
    sigmoid_without_one_minus(monkeypatch)
    (row,) = taylor_test(cs.objective, ["dense1.W"], np.random.default_rng(1))
    assert 0.8 <= row["rate"] <= 1.3


def test_one_sided_check_is_coarser_than_centred():
    cfg = make(net("tanh"), {"eps": 1e-4})
    centred, one = check(cfg), check(cfg, one_sided=True)
    assert centred.rel_error < 1e-7
    assert one.rel_error > 100 * centred.rel_error  # O(eps) vs O(eps^2)


# --------------------------------------------------------------------------- 7. tiers and rel_error

@pytest.mark.parametrize("err, expected", [
    (0.0, "good"), (1e-9, "good"), (1e-7, "good"), (1.0001e-7, "acceptable"),
    (1e-5, "acceptable"), (1e-4, "acceptable"), (1.0001e-4, "uncomfortable"),
    (1e-3, "uncomfortable"), (1e-2, "uncomfortable"), (1.0001e-2, "wrong"), (0.5, "wrong"), (1.0, "wrong"),
    (float("nan"), "wrong"), (float("inf"), "wrong"),
])
def test_tier_boundaries(err, expected):
    assert tier(err) == expected


def test_rel_error():
    z = np.zeros(5)
    assert rel_error(z, z) == 0.0
    assert rel_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([-1.0])) == 1.0  # a sign error is as wrong as it gets
    assert rel_error(np.array([3.0, 0.0]), np.array([0.0, 4.0])) == pytest.approx(5.0 / 7.0)
    assert rel_error(np.array([1.0]), np.zeros(1)) == 1.0
    assert rel_error(np.array([2.0]), np.array([1.0])) == pytest.approx(1.0 / 3.0)


def test_rel_error_is_scale_free():
    """Neither underflow (a wrong 1e-200 gradient once graded 0.0, 'good') nor overflow (1e200: nan)."""
    a, n = np.array([1.0, 1.0]), np.array([1.0, 2.0])
    expected = rel_error(a, n)
    assert expected == pytest.approx(1.0 / (math.sqrt(2) + math.sqrt(5)))
    assert rel_error(1e-200 * a, 1e-200 * n) == pytest.approx(expected)
    assert rel_error(1e200 * a, 1e200 * n) == pytest.approx(expected)
    assert rel_error(np.array([1e-170]), np.array([-1e-170])) == 1.0


def test_vanishing_loss_scale_does_not_hide_a_broken_backward(monkeypatch):
    """End to end at gradients ~1e-171 (loss_scale 1e-170): a wrong tanh backward still fails."""
    tanh_missing_factor(monkeypatch)
    report = check(make(net("tanh"), {"loss_scale": 1e-170}))
    d1 = by_name(report.tensors, "dense1.W")
    assert d1.max_analytic < 1e-160 and d1.tiny
    assert d1.tier == "wrong" and "dense1.W" in whole_failed(report)


def test_tiny_threshold_is_seed_000s():
    assert TINY == 1e-10


# --------------------------------------------------------------------------- the report as data

def test_report_dict_and_csv(tmp_path):
    from gradlab.check import report_dict, write_entries

    report = check(make(net("relu"), {"eps": 1e-2}))
    data = report_dict(report)
    assert data["passed"] is True and data["failed"] == []
    assert data["tier"] == report.tier and data["has_kinks"] is True
    assert [t["name"] for t in data["tensors"]] == [t.name for t in report.tensors]
    assert {"kinks", "kink_failures", "rel_error", "tier", "worst_index", "tiny", "passed"} <= set(data["tensors"][0])
    path = tmp_path / "entries.csv"
    write_entries(report, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "param,index,analytic,numeric,abs_diff,rel_error,kink,cs231n_rel_error,bound,step"
    assert len(lines) - 1 == len(report.entries) == sum(t.checked for t in report.tensors)
    import csv

    rows = list(csv.reader(lines[1:]))
    assert sum(r[6] == "1" for r in rows) == sum(t.kinks for t in report.tensors)
    # CS231n's rel_error per entry, from the CSV's own columns; its maximum is the table's "max rel"
    for r in rows:
        a, n = float(r[2]), float(r[3])
        assert float(r[7]) == pytest.approx(abs(a - n) / max(1e-8, abs(a) + abs(n)), rel=1e-9, abs=1e-300)
    for t in data["tensors"]:
        mine = [float(r[7]) for r in rows if r[0] == t["name"] and r[6] == "0"]
        assert t["max_rel_error"] == pytest.approx(max(mine, default=0.0), rel=1e-9)
    assert data["exit_code"] == 0 and data["unresolved"] == [] and data["culprit"] == ""


# --------------------------------------------------------------------------- the fast paths are exact enough

def test_column_differences_equal_entry_by_entry_differences():
    """A dense W or b from two evaluations per output column gives the same numbers as perturbing
    each entry (b exactly, W up to the centred difference's own O(eps^2) truncation)."""
    from gradlab.check import prepare

    cfg = make(net("tanh", depth=3, width=8, residual=1, dropout=0.25), train={"l2": 0.05})
    obj = prepare(cfg).objective
    eps = 1e-6
    for name in ("dense1.W", "dense1.b", "dense2.W", "dense3.b", "dense4.W", "dense4.b"):
        by_column, bound, unsure = obj.column_numeric(name, eps)
        assert not unsure.any(), name  # a smooth tail: every entry is vouched for
        assert bound.shape == by_column.shape and np.all(bound > 0) and np.all(bound < 1e-6), name
        idx = np.arange(by_column.size)
        J, _ = obj.values_at(name, np.concatenate([idx, idx]), np.repeat([eps, -eps], idx.size))
        by_entry = (J[: idx.size] - J[idx.size:]) / (2 * eps)
        assert rel_error(by_column.reshape(-1), by_entry) < 1e-8, name


def test_column_differences_are_not_used_where_they_do_not_hold():
    from gradlab.check import prepare

    # batch norm couples the samples, and the chain of layers (tests/test_check_fast.py) skips residual blocks
    obj = prepare(make(net("tanh", batchnorm=True, residual=1))).objective
    assert obj.column_numeric("dense1.W", 1e-7) is None and obj.column_numeric("dense2.W", 1e-7) is None


def test_dense_rank_one_updates_equal_its_forward():
    """The rank-1 shortcuts the check takes for a dense layer (gradlab.check.fast, keyed by layer type)
    agree with running its forward; the layer itself carries no check-only method."""
    from gradlab.check.fast import column, fast_path, perturb

    assert not any(hasattr(Dense, k) for k in ("perturb", "shift", "column"))
    assert fast_path(Dense(np.zeros((3, 4)), np.zeros(4))) is not None
    np.testing.assert_array_equal(column(Dense(np.zeros((3, 4)), np.zeros(4)), "W", np.array([0, 5, 11])), [0, 1, 3])
    rng = np.random.default_rng(0)
    dense = Dense(rng.standard_normal((5, 4)), rng.standard_normal(4))
    x = rng.standard_normal((3, 5))
    for key, arr in (("W", dense.params["W"]), ("b", dense.params["b"]), ("input", x)):
        flat = np.arange(arr.size)
        delta = rng.standard_normal(arr.size)
        fast = perturb(dense, key, flat, delta, x)
        for k in range(arr.size):
            moved = arr.copy()
            moved.reshape(-1)[flat[k]] += delta[k]
            if key == "input":
                slow = dense.forward(moved)
            else:
                saved = dense.params[key]
                dense.params[key] = moved
                slow = dense.forward(x)
                dense.params[key] = saved
            np.testing.assert_allclose(fast[k], slow, rtol=1e-13, atol=1e-13)


def test_flatten_orders_every_tensor_into_theta_and_back():
    from gradlab.check import flatten

    tensors = {"dense1.W": np.arange(6.0).reshape(2, 3), "dense1.b": np.array([7.0, 8.0]), "prelu1.alpha": np.array([9.0])}
    theta, unflatten = flatten(tensors)
    np.testing.assert_array_equal(theta, [0, 1, 2, 3, 4, 5, 7, 8, 9])
    back = unflatten(theta * 2)
    assert list(back) == list(tensors) and back["dense1.W"].shape == (2, 3)
    np.testing.assert_array_equal(back["dense1.W"], 2 * tensors["dense1.W"])
