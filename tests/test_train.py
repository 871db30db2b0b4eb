"""The training loop through the Python API: gradient flow, clipping, run folders, divergence."""
import json

import numpy as np
import pandas as pd
import pytest

import gradlab
from gradlab.optim import SGD, Adam, Momentum, clip_grads, norm
from gradlab.records import StepRecord


def config(tmp_path, **over):
    raw = {
        "name": "t", "seed": 0,
        "data": {"kind": "spirals", "n_samples": 128, "val_fraction": 0.25},
        "model": {"depth": 3, "width": 16, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "steps": 20},
        "log": {"every": 1, "out": str(tmp_path)},
    }
    return gradlab.config_from_dict(raw, [f"{k.replace('__', '.')}={v}" for k, v in over.items()])


class Collect:
    def __init__(self):
        self.records: list[StepRecord] = []

    def on_step(self, rec):
        self.records.append(rec)


def step0_ratio(cfg):
    """delta_norm of the first hidden layer over the last hidden layer, at initialisation."""
    seen = Collect()
    gradlab.train(cfg, [seen], write=False)
    layers = seen.records[0].layers
    return layers[0].delta_norm / layers[cfg.model.depth - 1].delta_norm


def test_deep_sigmoid_with_small_init_vanishes(tmp_path):
    cfg = config(tmp_path, model__depth=20, model__width=64, model__activation="sigmoid",
                 model__init="{scheme: normal, std: 0.01}", train__steps=1)
    assert step0_ratio(cfg) < 1e-6


def test_deep_relu_with_he_init_keeps_gradients(tmp_path):
    cfg = config(tmp_path, model__depth=30, model__width=128, model__activation="relu",
                 model__init="he_normal", train__steps=1)
    assert 0.1 <= step0_ratio(cfg) <= 10


def test_xavier_relu_loses_a_factor_of_two_per_layer_where_he_does_not(tmp_path):
    """He et al. 2015: with Xavier, ReLU halves the second moment at every layer."""
    ratios = {}
    for init in ("xavier_normal", "he_normal"):
        cfg = config(tmp_path, model__depth=10, model__width=256, model__activation="relu",
                     model__init=init, train__steps=1, data__kind="blobs", data__n_features=256,
                     data__n_samples=500, data__noise=1.0)
        s = gradlab.setup(cfg)
        s.model.forward(s.data.X_train, train=True)
        acts = [s.model.outputs[l] for l in (1, 10)]
        ratios[init] = float(np.mean(acts[1] ** 2) / np.mean(acts[0] ** 2))
    assert 0.5 * 2.0**-9 < ratios["xavier_normal"] < 2 * 2.0**-9
    assert 0.5 < ratios["he_normal"] < 2


def test_residual_blocks_rescue_a_deep_sigmoid_net(tmp_path):
    plain = config(tmp_path, model__depth=20, model__width=64, model__activation="sigmoid",
                   model__init="xavier_normal", train__steps=1)
    residual = config(tmp_path, model__depth=20, model__width=64, model__activation="sigmoid",
                      model__init="xavier_normal", model__residual=2, train__steps=1)
    assert step0_ratio(plain) < 1e-4
    assert step0_ratio(residual) > 0.1


def test_run_folder_holds_every_file_and_row(tmp_path):
    cfg = config(tmp_path, log__every=3, train__steps=10, log__val_every=5)
    result = gradlab.train(cfg)
    run = tmp_path / result.run_dir.split("/")[-1]
    assert run.name.startswith("t-") and result.status == "completed"
    for f in ("config.yaml", "metrics.csv", "grad_norms.csv", "layer_stats.csv",
              "params_init.npz", "params_final.npz", "summary.json"):
        assert (run / f).exists(), f
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics.columns) == ["step", "epoch", "time", "loss", "train_accuracy", "grad_norm", "grad_norm_clipped",
                                     "clipped", "lr", "update_norm", "val_loss", "val_accuracy"]
    assert metrics.step.tolist() == [0, 3, 6, 9]  # every 3rd, and the last
    assert metrics.val_loss.notna().tolist() == [True, False, False, True]
    assert metrics.epoch.tolist() == [0, 1, 2, 3]  # 96 training samples / 32 = 3 steps per epoch
    grads = pd.read_csv(run / "grad_norms.csv")
    assert list(grads.columns) == ["step", "epoch", "layer", "param", "grad_norm", "weight_norm", "update_norm"]
    assert len(grads) == 4 * 8 and set(grads.layer) == {1, 2, 3, 4}
    stats = pd.read_csv(run / "layer_stats.csv")
    assert list(stats.columns) == ["step", "layer", "act_mean", "act_std", "frac_saturated", "frac_dead",
                                   "delta_norm"]
    assert len(stats) == 4 * 4 and stats.frac_dead.isna().all()  # tanh units cannot die
    # the global grad norm is the norm of the per-parameter norms
    g0 = grads[grads.step == 0].grad_norm
    assert metrics.grad_norm[0] == pytest.approx(np.sqrt((g0**2).sum()), rel=1e-9)  # each written to 10 digits
    init, final = np.load(run / "params_init.npz"), np.load(run / "params_final.npz")
    assert set(init.files) == set(grads.param) and not np.allclose(init["dense1.W"], final["dense1.W"])
    w0 = grads[(grads.step == 0) & (grads.param == "dense1.W")].weight_norm.item()
    assert w0 == pytest.approx(np.linalg.norm(init["dense1.W"]), rel=1e-9)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 10
    assert set(summary["versions"]) == {"python", "numpy", "gradlab"}
    again = gradlab.load_config(run / "config.yaml")
    assert again == cfg


def test_same_config_gives_bit_identical_logs(tmp_path):
    cfg = config(tmp_path, model__dropout=0.2, train__optimizer="adam", train__lr=0.01)
    a, b = gradlab.train(cfg), gradlab.train(cfg)
    assert a.run_dir != b.run_dir  # never overwrite
    dirs = [tmp_path / r.run_dir.split("/")[-1] for r in (a, b)]
    assert untimed(dirs[0] / "metrics.csv") == untimed(dirs[1] / "metrics.csv")
    for f in ("grad_norms.csv", "layer_stats.csv"):
        assert (dirs[0] / f).read_bytes() == (dirs[1] / f).read_bytes()


def untimed(path) -> bytes:
    """metrics.csv without its ``time`` column (the one thing a run cannot repeat)."""
    rows = [line.split(b",") for line in path.read_bytes().splitlines()]
    at = rows[0].index(b"time")
    return b"\n".join(b",".join(r[:at] + r[at + 1:]) for r in rows)


def test_training_learns(tmp_path):
    cfg = config(tmp_path, model__depth=2, model__width=32, train__steps=300, train__optimizer="adam",
                 train__lr=0.01, data__n_samples=256)
    result = gradlab.train(cfg, write=False)
    assert result.final["final_train_accuracy"] > 0.9


def test_epochs_replace_steps(tmp_path):
    cfg = config(tmp_path, train__steps="null", train__epochs=2, train__batch_size="full")
    assert gradlab.train(cfg, write=False).steps == 2


def test_divergence_stops_at_once_and_names_the_layer(tmp_path):
    cfg = config(tmp_path, data__kind="teacher", loss="mse", model__activation="relu",
                 model__init="{scheme: normal, std: 3.0}", train__lr=1e3, train__steps=200)
    seen = Collect()
    result = gradlab.train(cfg, [seen])
    assert result.status == "diverged" and result.exit_code == 3
    assert result.diverged_at == seen.records[-1].step < 199
    assert 1 <= result.diverged_layer <= 4
    run = tmp_path / result.run_dir.split("/")[-1]
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics.step.tolist() == list(range(result.diverged_at + 1))
    assert not np.isfinite(metrics.loss.iloc[-1]) or not np.isfinite(metrics.grad_norm.iloc[-1])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged_at"] == result.diverged_at


def test_interrupt_keeps_the_files(tmp_path):
    class Stop:
        def on_step(self, rec):
            if rec.step == 4:
                raise KeyboardInterrupt

    result = gradlab.train(config(tmp_path), [Stop()])
    # the record of step 4 is written once its update is done (it logs that update's norm)
    assert result.status == "interrupted" and result.steps == 5 and result.exit_code == 130
    run = tmp_path / result.run_dir.split("/")[-1]
    assert pd.read_csv(run / "metrics.csv").step.tolist() == [0, 1, 2, 3, 4]
    assert json.loads((run / "summary.json").read_text())["status"] == "interrupted"


def test_float32_stays_float32(tmp_path):
    cfg = config(tmp_path, train__dtype="float32", model__batchnorm=True, model__activation="prelu")
    s = gradlab.setup(cfg)
    assert all(p.dtype == np.float32 for p in s.model.params.values())
    s.model.loss_and_grads(s.data.X_train[:8], s.data.y_train[:8], s.loss)
    assert all(g.dtype == np.float32 for g in s.model.grads.values())


# ------------------------------------------------------------------ clipping and optimizers

def grads_with_norm():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((5, 4)) * 10, "b": rng.standard_normal(4)}
    return grads, {k: norm(g) for k, g in grads.items()}


def test_clip_by_global_norm_keeps_direction_and_hits_threshold():
    grads, norms = grads_with_norm()
    before = {k: g.copy() for k, g in grads.items()}
    total = np.sqrt(sum(n**2 for n in norms.values()))
    from gradlab.config import ClipConfig

    res = clip_grads(grads, norms, ClipConfig(threshold=1.0))
    assert res.clipped and res.norm_before == pytest.approx(total) and res.norm_after == 1.0
    assert np.sqrt(sum(norm(g) ** 2 for g in grads.values())) == pytest.approx(1.0, rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], before[k] / total, rtol=1e-12)
    grads, norms = grads_with_norm()
    assert not clip_grads(grads, norms, ClipConfig(threshold=1e6)).clipped


def test_clip_per_layer_and_by_value():
    from gradlab.config import ClipConfig

    grads, norms = grads_with_norm()
    res = clip_grads(grads, norms, ClipConfig(threshold=1.0, scope="layer"))
    assert res.clipped and norm(grads["a"]) == pytest.approx(1.0, rel=1e-12) and norm(grads["b"]) == pytest.approx(1.0)
    grads, norms = grads_with_norm()
    res = clip_grads(grads, norms, ClipConfig(threshold=0.5, mode="value"))
    assert res.clipped and max(np.abs(g).max() for g in grads.values()) == 0.5
    assert res.norm_after == pytest.approx(np.sqrt(sum(norm(g) ** 2 for g in grads.values())))


def test_clipping_is_logged(tmp_path):
    seen = Collect()
    gradlab.train(config(tmp_path, train__clip=0.05), [seen], write=False)
    clipped = [r for r in seen.records if r.clipped]
    assert clipped and all(r.grad_norm > 0.05 and r.grad_norm_clipped == pytest.approx(0.05) for r in clipped)


def test_sgd_momentum_adam_updates():
    p, g = {"w": np.array([1.0, -2.0])}, {"w": np.array([0.5, 0.5])}
    SGD(0.1).step(p, g)
    np.testing.assert_allclose(p["w"], [0.95, -2.05])  # W_new = W_old - lr dL/dW
    m = Momentum(0.1, 0.9)
    p = {"w": np.zeros(2)}
    m.step(p, g)
    m.step(p, g)
    np.testing.assert_allclose(p["w"], [-0.05 - 0.095] * 2)
    p = {"w": np.zeros(2)}
    Adam(0.01).step(p, {"w": np.array([3.0, -1e-3])})
    np.testing.assert_allclose(p["w"], [-0.01, 0.01], rtol=1e-4)  # first Adam step ~ lr * sign(g)


def test_a_loss_that_overflows_is_named_as_the_loss(tmp_path):
    """Finite outputs near 1e200 whose squared error overflows: the loss went non-finite, not backward."""
    cfg = config(tmp_path, data__kind="teacher", loss="mse", model__activation="linear", model__depth=1,
                 model__init="{scheme: identity, scale: 1.0e+101}", train__steps=1)
    result = gradlab.train(cfg, write=False)
    assert result.status == "diverged" and result.diverged_where == "loss"


# --------------------------------------------------------------------------- huge finite values

def test_layer_norm_of_huge_tensor_norms_is_finite_and_exact():
    """Norms of 8.2e242 (a logged dense2.b of the exploding ReLU RNN) square to more than 1.8e308; the
    layer's norm is still the exact sqrt of the sum of squares, computed here in exact decimals."""
    from decimal import Decimal, getcontext

    from gradlab.records import ParamStat

    getcontext().prec = 50
    norms = {1: [8.2e242, 3.0e300, 1.0], 2: [1.5e308, 1.5e308], 3: [3.0, 4.0]}
    rec = StepRecord(0, 0, 1.0, 1.0, 1.0, False, 0.1,
                     params=[ParamStat(l, f"p{l}{i}", g, 1.0) for l, gs in norms.items() for i, g in enumerate(gs)])
    got = rec.layer_grad_norms()
    for layer in (1, 3):
        exact = float(sum(Decimal(g) ** 2 for g in norms[layer]).sqrt())
        assert got[layer] == pytest.approx(exact, rel=1e-15)
    assert got[2] == float("inf")  # 1.5e308 * sqrt(2) is beyond the largest float: inf is the right answer
    nan = StepRecord(0, 0, 1.0, 1.0, 1.0, False, 0.1, params=[ParamStat(1, "a", float("nan"), 1.0)])
    assert np.isnan(nan.layer_grad_norms()[1])


@pytest.mark.parametrize("scale", [1.0, 1e200, 1e291, 1e307])
def test_activation_moments_do_not_overflow(scale):
    """act_mean and act_std of activations near 1e291 are those of the unscaled ones times the scale."""
    from gradlab.train import moments

    a = np.random.default_rng(0).normal(0.5, 0.2, 1000)
    mean, std = moments(a * scale)
    assert mean == pytest.approx(a.mean() * scale, rel=1e-12)
    assert std == pytest.approx(a.std() * scale, rel=1e-12)
    assert moments(np.array([1.0, np.inf]))[0] == np.inf
    assert np.isnan(moments(np.array([1.0, np.nan]))[1])


def test_a_run_with_huge_finite_activations_completes_with_finite_statistics(tmp_path):
    """The deep 1.2 I linear net clipped at 1.02e5 keeps finite but huge activations (1e150 and more):
    every logged statistic stays finite, the status is completed and the final loss is the huge one."""
    cfg = config(tmp_path, data__kind="blobs", data__n_features=32, data__n_classes=10, data__n_samples=256,
                 model__depth=50, model__width=32, model__activation="linear",
                 model__init="{scheme: identity, scale: 1.2}", train__batch_size=64, train__steps=30,
                 train__clip="1.02e+05")
    result = gradlab.train(cfg)
    run = tmp_path / result.run_dir.split("/")[-1]
    stats = pd.read_csv(run / "layer_stats.csv")
    assert stats.act_std.max() > 1e150  # the case: squares of these overflow
    assert np.isfinite(stats[["act_mean", "act_std", "delta_norm"]].to_numpy()).all()
    assert result.status == "completed" and result.exit_code == 0
    assert result.final["final_train_loss"] > 1e100


def test_a_final_update_that_overflows_the_loss_is_diverged(tmp_path):
    """Every logged step finite, but the last update leaves the training loss at inf: not completed."""
    cfg = config(tmp_path, data__kind="blobs", data__n_features=32, data__n_classes=10, data__n_samples=256,
                 model__depth=50, model__width=32, model__activation="linear",
                 model__init="{scheme: identity, scale: 1.2}", train__batch_size=64, train__steps=2)
    seen = Collect()
    result = gradlab.train(cfg, [seen])
    assert [r.step for r in seen.records] == [0, 1] and all(np.isfinite(r.loss) for r in seen.records)
    assert result.status == "diverged" and result.exit_code == 3
    assert (result.diverged_at, result.diverged_where, result.steps) == (2, "final loss", 2)
    summary = json.loads((tmp_path / result.run_dir.split("/")[-1] / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["final_train_loss"] is None


def test_a_non_finite_logged_figure_is_found_where_it_is():
    """What makes a step's record non-finite, by field: the run stops there as diverged."""
    import dataclasses

    from gradlab.records import GateStat, LayerStat, ParamStat, TimeStat
    from gradlab.train import nonfinite_in

    rec = StepRecord(3, 0, 1.0, 2.0, 2.0, False, 0.1, val_loss=1.5,
                     params=[ParamStat(1, "rnn1.W", 1.0, 1.0), ParamStat(2, "dense2.W", 1.0, 1.0)],
                     layers=[LayerStat(1, 0.0, 1.0, None, 0.1, 1.0), LayerStat(2, 0.0, 1.0, None, None, 1.0)],
                     times=[TimeStat(1, 1, 1, 1.0), TimeStat(1, 2, 0, 1.0)], gates=[GateStat(1, "f", 0.5)])
    assert nonfinite_in(rec) is None
    inf, nan = float("inf"), float("nan")
    cases = [
        (dataclasses.replace(rec, val_loss=inf), (None, "loss")),
        (dataclasses.replace(rec, grad_norm=inf), (None, "backward")),
        (dataclasses.replace(rec, layers=[rec.layers[0], LayerStat(2, 0.0, inf, None, None, 1.0)]), (2, "statistics")),
        (dataclasses.replace(rec, params=[rec.params[0], ParamStat(2, "dense2.W", 1.0, nan)]), (2, "statistics")),
        (dataclasses.replace(rec, times=[TimeStat(1, 1, 1, inf)]), (1, "statistics")),
        (dataclasses.replace(rec, gates=[GateStat(1, "f", nan)]), (1, "statistics")),
    ]
    for bad, where in cases:
        assert nonfinite_in(bad) == where


def test_a_logged_figure_that_is_not_finite_stops_the_run_as_diverged(tmp_path, monkeypatch):
    """Loss and gradients finite, but a figure the step logs is NaN (here a gate mean, from step 3 on): the
    run stops there, diverged, and says it was a logged statistic."""
    import importlib

    from gradlab.records import GateStat

    T = importlib.import_module("gradlab.train")  # the module; gradlab.train is the function

    real, calls = T.gate_stats, []

    def gates(model):
        calls.append(1)
        return real(model) + ([GateStat(1, "f", float("nan"))] if len(calls) > 3 else [])

    monkeypatch.setattr(T, "gate_stats", gates)
    result = gradlab.train(config(tmp_path))
    assert (result.status, result.diverged_at, result.diverged_where, result.steps) == ("diverged", 3, "statistics", 3)
    assert result.diverged_layer == 1 and result.exit_code == 3
    run = tmp_path / result.run_dir.split("/")[-1]
    assert pd.read_csv(run / "metrics.csv").step.tolist() == [0, 1, 2, 3]
    assert json.loads((run / "summary.json").read_text())["status"] == "diverged"


# --------------------------------------------------------------------------- a step that allocates little, same bits

def textbook_steps(name: str, p: np.ndarray, grads: list[np.ndarray]) -> np.ndarray:
    """The updates as written before the optimizers computed into work arrays."""
    p, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        if name == "sgd":
            p -= 0.1 * g
        elif name == "momentum":
            v *= 0.9
            v -= 0.1 * g
            p += v
        else:
            m *= 0.9
            m += (1 - 0.9) * g
            v *= 0.999
            v += (1 - 0.999) * (g * g)
            p -= 0.1 / (1 - 0.9**t) * m / (np.sqrt(v) / np.sqrt(1 - 0.999**t) + 1e-8)
    return p


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam"])
def test_an_update_in_work_arrays_is_the_textbook_update_bit_for_bit_and_in_place(name, dtype):
    rng = np.random.default_rng(7)
    params = {"a.W": rng.normal(size=(4, 3)).astype(dtype), "a.b": rng.normal(size=3).astype(dtype)}
    fused = rng.normal(size=(3, 8)).astype(dtype)
    params["c.U_f"] = fused[:, 2:4]  # a gate's view of a fused array
    grads = [{k: rng.normal(size=p.shape).astype(dtype) for k, p in params.items()} for _ in range(3)]
    want = {k: textbook_steps(name, p, [g[k] for g in grads]) for k, p in params.items()}
    objects = {k: id(p) for k, p in params.items()}
    opt = {"sgd": SGD(0.1), "momentum": Momentum(0.1, 0.9), "adam": Adam(0.1)}[name]
    for g in grads:
        opt.step(params, g)
    for k, p in params.items():
        assert id(p) == objects[k] and p.dtype == dtype
        np.testing.assert_array_equal(p, want[k])
    np.testing.assert_array_equal(fused[:, 2:4], want["c.U_f"])  # the fused array moved with its view


def test_csv_rows_are_written_as_the_per_value_conversion_writes_them():
    import csv
    import io

    from gradlab.logging import _cell, _rows

    rows = [[3, 0, 1.0, 0.1 + 0.2, True, 0.01, None, np.float64(2.5)], (4, 2, "dense1.W", 1e-300, 7.0, None),
            [5, False, np.inf, np.nan, "a,b", -0.0, 2 / 3, 123456789012.0, np.float32(0.5)]]
    text = io.StringIO()
    csv.writer(text).writerows([[_cell(v) for v in row] for row in rows])
    assert _rows(rows) == text.getvalue().encode("utf-8")
    # floats to 10 significant digits (what a spreadsheet keeps), still floats to the eye: 1.0, not 1
    assert _rows(rows).splitlines() == [b"3,0,1.0,0.3,1,0.01,,2.5", b"4,2,dense1.W,1e-300,7.0,",
                                        b'5,0,inf,nan,"a,b",-0.0,0.6666666667,1.23456789e+11,0.5']
