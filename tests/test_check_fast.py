"""The check's fast paths give the numbers entry-by-entry differences give, and are really taken: columns
of a net with kinks (entries a sample's winner change moves are differenced one by one), input entries of
different samples packed into one copy, K copies of a recurrent cell's tensor through one pass (full and
truncated BPTT), and the progress the check reports."""
from __future__ import annotations

import io

import numpy as np
import pytest

import gradlab
from gradlab.check import prepare, rel_error
from gradlab.check.differences import _entry_by_entry, check_entries
from gradlab.check.objectives import NetObjective
from gradlab.nn.recurrent import GRU, LSTM, VanillaRNN

SPIRALS = {"kind": "spirals", "n_samples": 64}
ADDING = {"kind": "adding", "T": 6, "n_samples": 64}
SAME = 1e-8  # a fast path against entry by entry: their truncation errors differ at O(h^2) at most


def make(model: dict, data: dict = SPIRALS, **top) -> gradlab.Config:
    return gradlab.config_from_dict({"data": data, "model": model, "check": {"batch": 8}, **top})


def mlp(activation: str, **model) -> dict:
    return {"depth": 3, "width": 8, "activation": activation, **model}


def rnn(cell: str, truncate: int | None = None, activation: str | None = None) -> dict:
    model = {"kind": "rnn", "cell": cell, "hidden": 4, **({"activation": activation} if activation else {})}
    return {"model": model, "data": ADDING, "loss": "mse",
            "train": {"bptt": {"truncate": truncate}} if truncate else {}}


def by_entry(obj, name: str, eps: float):
    """Every entry of ``name``, differenced one by one (no column path, no packing)."""
    g = obj.analytic()[name]
    idx = np.arange(obj.targets[name].size)
    packs = getattr(obj, "packs", None)
    if packs is not None:
        obj.packs = lambda name: False
    try:
        return _entry_by_entry(obj, name, g, idx, eps)
    finally:
        if packs is not None:
            del obj.packs


def fast(obj, name: str, eps: float):
    g = obj.analytic()[name]
    return check_entries(obj, name, g, np.arange(obj.targets[name].size), eps)


def same(a, b) -> None:
    """The same numerical gradient, and the same entries across a kink (graded apart)."""
    np.testing.assert_array_equal(a.kink, b.kink)
    smooth = ~a.kink
    assert rel_error(a.numeric[smooth], b.numeric[smooth]) < SAME
    np.testing.assert_allclose(a.numeric[a.kink], b.numeric[a.kink], rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- columns of a net with kinks

def kinked_relu_objective(activation: str = "relu") -> NetObjective:
    """A ReLU-like net with sample 2's pre-activation of unit 3 in layer 1 1e-9 from its kink: the column step
    of dense1 crosses it for that sample only."""
    obj = prepare(make(mlp(activation))).objective
    W, b = obj.model.params["dense1.W"], obj.model.params["dense1.b"]
    b[3] -= (obj.x @ W + b)[2, 3] - 1e-9
    return NetObjective(obj.model, obj.loss, obj.x, obj.y)


@pytest.mark.parametrize("name", ["dense1.W", "dense1.b", "dense2.W", "dense3.b", "dense4.W"])
def test_relu_columns_equal_entry_by_entry_with_a_kink_crossed(name):
    obj = kinked_relu_objective()
    eps = 1e-6
    numeric, bound, unsure = obj.column_numeric(name, eps)
    slow, quick = by_entry(obj, name, eps), fast(obj, name, eps)
    same(quick, slow)
    if name.startswith("dense1."):  # unit 3 of layer 1: every entry moving column 3 for sample 2 is left apart
        col = unsure.reshape(-1, 8)[:, 3] if name.endswith("W") else unsure[3:4]
        assert col.all() and unsure.sum() == col.size, unsure
        assert slow.kink.reshape(-1, 8)[:, 3].any() if name.endswith("W") else slow.kink[3]
    assert unsure.sum() < unsure.size / 4  # the columns carry the rest


def test_leaky_relu_columns_equal_entry_by_entry():
    obj = prepare(make(mlp("leaky_relu"))).objective
    for name in ("dense1.W", "dense2.b", "dense3.W"):
        same(fast(obj, name, 1e-6), by_entry(obj, name, 1e-6))


def test_a_relu_net_takes_the_columns(monkeypatch):
    """Two evaluations per column (and the round-off probe), not two per entry."""
    obj = prepare(make(mlp("relu", width=16))).objective
    calls = []
    tail = obj._tail_after
    monkeypatch.setattr(obj, "_tail_after", lambda l, out, j: calls.append(len(out)) or tail(l, out, j))
    fast(obj, "dense2.W", 1e-6)
    assert sum(calls) == 2 * 16 + 9  # 256 entries, 16 columns


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_batchnorm_chain_equals_entry_by_entry(activation, monkeypatch):
    """Batch norm couples the samples: no per-sample columns, but the chain of each layer's own differences
    gives every tensor (W, gamma, beta, the output b, the input) as entry-by-entry differences of J do; and
    takes a few passes of one layer each, not two passes of the net per entry."""
    obj = prepare(make(mlp(activation, batchnorm=True))).objective
    assert not obj.packs("input")
    names = ["dense1.W", "bn1.gamma", "bn2.beta", "dense3.W", "dense4.W", "dense4.b", "input"]
    for name in names:
        numeric, bound, unsure = obj.column_numeric(name, 1e-6)
        assert (bound is None) == (name != "dense4.b" and name != "dense4.W") and not unsure.any(), name
        same(fast(obj, name, 1e-6), by_entry(obj, name, 1e-6))
    calls = []
    tail = obj.model.forward
    monkeypatch.setattr(obj.model, "forward", lambda *a, **k: calls.append(1) or tail(*a, **k))
    obj.chains.clear()
    obj.column_numeric("dense1.W", 1e-6)
    assert calls == []  # layer by layer: never the whole net


def test_batchnorm_chain_steps_aside_when_a_winner_changes():
    """A ReLU unit 1e-9 from its kink after batch norm: the chain cannot vouch for it, the entries are
    differenced one by one."""
    obj = prepare(make(mlp("relu", batchnorm=True))).objective
    bn = obj.model.layers[1].modules[1]
    z = obj._dense_out(2)
    xhat = (z[2, 3] - z[:, 3].mean()) / np.sqrt(z[:, 3].var() + bn.eps)
    bn.params["beta"][3] = 1e-9 - bn.params["gamma"][3] * xhat
    obj = NetObjective(obj.model, obj.loss, obj.x, obj.y)
    assert obj.column_numeric("dense2.W", 1e-6) is None


# --------------------------------------------------------------------------- input entries packed per sample

@pytest.mark.parametrize("model", [mlp("relu"), mlp("tanh", dropout=0.25)], ids=["relu", "dropout"])
def test_packed_input_entries_equal_entry_by_entry(model):
    obj = prepare(make(model)).objective
    assert obj.packs("input")
    same(fast(obj, "input", 1e-6), by_entry(obj, "input", 1e-6))


def test_packed_input_takes_one_copy_per_entry_of_a_sample(monkeypatch):
    obj = prepare(make(mlp("tanh"))).objective  # 8 samples of 2 features: 16 entries, 2 per sample
    sizes = []
    forward = obj.model.forward
    monkeypatch.setattr(obj.model, "forward", lambda x, *a, **k: sizes.append(x.shape) or forward(x, *a, **k))
    fast(obj, "input", 1e-6)
    copies = [s[0] for s in sizes if len(s) == 3]
    assert copies[:2] == [1, 4]  # J at theta; then 2 entries per sample, +h and -h: 4 copies carry all 32


# --------------------------------------------------------------------------- recurrent cells: K copies, one pass

CELLS = [("vanilla", None, "tanh"), ("vanilla", None, "relu"), ("lstm", None, None), ("gru", None, None),
         ("lstm", 3, None), ("gru", 2, None)]


@pytest.mark.parametrize("cell,truncate,activation", CELLS,
                         ids=["rnn_tanh", "rnn_relu", "lstm", "gru", "lstm_truncated", "gru_truncated"])
def test_recurrent_copies_equal_one_pass_each(cell, truncate, activation, monkeypatch):
    """J at K fused copies through one forward equals J from one forward per copy; and the whole check of
    each gate's tensors equals entry-by-entry differences done one copy at a time."""
    cfg = gradlab.config_from_dict({**rnn(cell, truncate, activation), "check": {"batch": 4}})
    obj = prepare(cfg).objective
    cls, label = {"vanilla": (VanillaRNN, "rnn"), "lstm": (LSTM, "lstm"), "gru": (GRU, "gru")}[cell]
    calls = []
    forward = cls.forward
    monkeypatch.setattr(cls, "forward", lambda self, x, train=True: calls.append(1) or forward(self, x, train))
    names = [k for k in obj.targets if k.startswith(f"{label}1.")] + ["input"]
    for name in names:
        arr = obj.targets[name]
        rng = np.random.default_rng(0)
        K = min(6, arr.size)
        flat = rng.choice(arr.size, K, replace=False)
        delta = rng.choice([-1e-3, 1e-3], K)
        obj.values_at(name, flat[:1], delta[:1])  # what is computed once (the input's per-sample losses at theta)
        calls.clear()
        J, kinked = obj.values_at(name, flat, delta)
        assert len(calls) == 1, name  # one pass for all the copies
        for k in range(K):
            moved = arr.copy()
            moved.reshape(-1)[flat[k]] += delta[k]
            J1, kinked1 = in_place(obj, name, moved)
            assert J[k] == pytest.approx(J1, rel=1e-12, abs=1e-15), (name, k)
            assert kinked[k] == kinked1
    for name in (f"{label}1.U" + ("_f" if cell == "lstm" else "_z" if cell == "gru" else ""), "input"):
        monkeypatch.setattr(type(obj), "values", one_copy_at_a_time(type(obj).values, obj))
        slow = by_entry(obj, name, 1e-6)
        monkeypatch.undo()
        same(fast(obj, name, 1e-6), slow)


def in_place(obj, name: str, value: np.ndarray) -> tuple[float, bool]:
    """J and whether a winner changed, with the tensor itself set to ``value`` (a gate's tensor is a view of
    the fused array: the cell's own forward sees it) and one plain forward pass."""
    arr = obj.targets[name]
    saved = arr.copy()
    arr[...] = value
    try:
        J = obj.scale * float(obj.loss.value(obj.model.forward(obj.x, True), obj.y))
        crossed = any(bool(np.any(m.mask != obj.masks[id(m)])) for _, m in obj.kink_modules)
    finally:
        arr[...] = saved
    return J, crossed


def one_copy_at_a_time(values, obj):
    """``values`` with each copy set in place and run through one plain forward pass."""
    def each(self, name, stack):
        pairs = [in_place(self, name, s) for s in stack]
        J = np.array([p[0] for p in pairs])
        if self.l2:
            J = J + 0.5 * self.l2 * self._sum_sq(name, stack)
        return J, np.array([p[1] for p in pairs])
    return each


def test_a_cell_alone_takes_copies_too(monkeypatch):
    cfg = gradlab.config_from_dict({**rnn("lstm"), "check": {"batch": 4}})
    calls = []
    forward = LSTM.forward
    monkeypatch.setattr(LSTM, "forward", lambda self, x, train=True: calls.append(x.ndim) or forward(self, x, train))
    report = gradlab.check(cfg)
    assert report.passed
    # every entry of the LSTM's 12 tensors and its input, whole and alone: a few hundred entries, each two
    # copies, in a few dozen passes, not one pass per copy
    assert len(calls) < 150, len(calls)


# --------------------------------------------------------------------------- progress

def test_progress_counts_every_planned_entry_once_and_ends_at_the_total():
    seen = []
    report = gradlab.check(make(mlp("relu")), progress=lambda done, total: seen.append((done, total)))
    assert report.passed and len(seen) > 10
    done = [d for d, _ in seen]
    assert done == sorted(done) and len({t for _, t in seen}) == 1
    total = seen[0][1]
    entries = sum(t.checked for t in report.tensors + report.layers)
    assert done[-1] == total == entries


def test_the_bar_shows_on_a_terminal_only(monkeypatch):
    from rich.console import Console

    from gradlab.check import render

    for terminal in (False, True):
        buf = io.StringIO()
        monkeypatch.setattr(render, "err", Console(file=buf, force_terminal=terminal, width=80))
        with render.CheckProgress(after=0.0) as bar:
            bar.update(5, 10)
            bar.update(10, 10)
        assert ("check" in buf.getvalue()) == terminal, buf.getvalue()
