"""Evaluation runs in batches: the same loss and accuracy as one pass over the whole set, while the net
never sees more than a batch at once (so a run's memory grows with its data, not with data x T x hidden)."""
import importlib
import math

import numpy as np
import pytest

import gradlab

loop = importlib.import_module("gradlab.train")  # the module (gradlab.train is the function)


def config(tmp_path, **over):
    raw = {
        "name": "t", "seed": 3,
        "data": {"kind": "blobs", "n_samples": 400, "n_features": 5, "n_classes": 3, "noise": 1.0, "val_fraction": 0.3},
        "model": {"depth": 3, "width": 12, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 16, "steps": 6},
        "log": {"every": 1, "val_every": 2, "out": str(tmp_path)},
    }
    return gradlab.config_from_dict(raw, [f"{k.replace('__', '.')}={v}" for k, v in over.items()])


CASES = {  # each a net that has trained a few steps, so batch norm's running statistics are not the initial ones
    "mse": dict(data="{kind: teacher, n_samples: 300, n_features: 4, val_fraction: 0.3}", loss="mse"),
    "cross_entropy": {},
    "mse on classes": dict(loss="mse"),
    "bce": dict(data__n_classes=2, loss="bce", model__activation="relu"),
    "batch norm": dict(model__batchnorm="true", model__activation="relu", model__init="he_normal"),
    "lstm": dict(data="{kind: adding, T: 9, n_samples: 150, val_fraction: 0.3}", loss="mse",
                 model="{kind: rnn, cell: lstm, hidden: 6}"),
    "rnn per step": dict(data="{kind: copy, T: 12, length: 5, n_samples: 150, val_fraction: 0.3}",
                         model="{kind: rnn, cell: vanilla, hidden: 6}"),
}


def trained(tmp_path, case):
    s = gradlab.setup(config(tmp_path, **CASES[case]))
    loop.fit(s)
    return s


@pytest.mark.parametrize("case", CASES)
def test_batched_evaluation_is_the_one_pass_evaluation(tmp_path, case):
    s = trained(tmp_path, case)
    X, y = s.data.X_train, s.data.y_train
    z = s.model.forward(X, train=False)  # the whole set in one pass, as evaluation ran before
    t = s.model.targets(y)
    one_pass = s.loss.forward(z, t)
    for batch in (7, 64, len(X) - 1):
        J, acc = loop.evaluate(s.model, s.loss, X, y, batch)
        assert J == pytest.approx(one_pass, rel=1e-12, abs=0)
        if case in ("mse", "lstm"):
            assert acc is None
        else:
            pred = (z[:, 0] > 0) if z.shape[1] == 1 else z.argmax(axis=1)
            assert acc == np.mean(pred == t)  # counts: exact
    assert loop.evaluate(s.model, s.loss, X, y, len(X)) == loop.evaluate(s.model, s.loss, X, y, 10**9)


def test_batch_norm_evaluates_with_its_running_statistics_whatever_the_batch(tmp_path):
    s = trained(tmp_path, "batch norm")
    bn = [m for m in s.model.modules() if m.name.startswith("bn")][0]
    assert not np.allclose(bn.running_mean, 0.0)  # it has moved: a batch's own statistics would differ
    X, y = s.data.X_val, s.data.y_val
    singles = [loop.evaluate(s.model, s.loss, X[i:i + 1], y[i:i + 1])[0] for i in range(len(X))]
    assert np.mean(singles) == pytest.approx(loop.evaluate(s.model, s.loss, X, y, len(X))[0], rel=1e-12)


class Spy:
    """Wraps a model's forward and records the number of samples of every call."""

    def __init__(self, model):
        self.sizes, self.forward = [], model.forward
        model.forward = self

    def __call__(self, x, *args, **kw):
        self.sizes.append(len(x))
        return self.forward(x, *args, **kw)


@pytest.mark.parametrize("case", ["cross_entropy", "lstm"])
def test_a_run_never_passes_more_than_a_batch_through_the_net(tmp_path, case, monkeypatch):
    monkeypatch.setattr(loop, "EVAL_BATCH", 20)
    cfg = config(tmp_path, **CASES[case], train__batch_size=8)
    s = gradlab.setup(cfg)
    n_train, n_val = len(s.data.X_train), len(s.data.X_val)
    assert n_train > 5 * 20 and n_val > 20  # sets several evaluation batches long
    spy = Spy(s.model)
    result = loop.fit(s)
    assert result.status == "completed" and result.last.val_loss is not None
    assert max(spy.sizes) == 20 and set(spy.sizes) <= {8, 20, n_train % 20, n_val % 20}
    # the final metrics pass every sample once: the last calls cover both sets exactly
    tail = spy.sizes[-(math.ceil(n_train / 20) + math.ceil(n_val / 20)):]
    assert tail[0] == 20 and sum(tail) == n_train + n_val


def test_the_default_batch_bounds_the_final_metrics(tmp_path):
    s = trained(tmp_path, "cross_entropy")
    spy = Spy(s.model)
    loop.final_metrics(s)
    assert max(spy.sizes) == loop.EVAL_BATCH < len(s.data.X_train)
    assert sum(spy.sizes) == len(s.data.X_train) + len(s.data.X_val)


def test_a_nonfinite_loss_leaves_the_pass_that_overflowed_for_the_divergence_report(tmp_path):
    """A sample that is not finite from layer 1 up, in batch 2 of 5: the loss is inf as in one pass, and the model's caches are
    that batch's, so first_nonfinite names the layer one pass names (not the finite last batch's answer)."""
    s = gradlab.setup(config(tmp_path, **CASES["mse"], model__activation="linear"))
    X, y = s.data.X_val.copy(), s.data.y_val
    X[25] = np.inf
    with np.errstate(all="ignore"):  # as fit runs it
        J, _ = loop.evaluate(s.model, s.loss, X, y, 20)
        batched = s.model.first_nonfinite(True)
        loop.evaluate(s.model, s.loss, X[80:], y[80:])
        finite_tail = s.model.first_nonfinite(True)
        loop.evaluate(s.model, s.loss, X, y, len(X))
    assert not np.isfinite(J)
    assert batched == s.model.first_nonfinite(True) == (1, "forward") != finite_tail
