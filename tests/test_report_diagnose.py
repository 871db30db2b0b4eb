"""The diagnosis, the theory columns and the config lint, through the Python API."""
import importlib
import math
import re
from pathlib import Path

import numpy as np
import pytest

import gradlab
from gradlab.report import diagnose_dir, lint, load_run
from gradlab.report.diagnose import num, suggest_clip
from gradlab.report.theory import compare, moments

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BLOBS = {"kind": "blobs", "n_samples": 256, "n_features": 32, "n_classes": 10, "noise": 1.0, "val_fraction": 0.25}


def run(tmp_path, model: dict, train: dict | None = None, data: dict | None = None, name: str = "r", **top):
    raw = {"name": name, "seed": 0, "data": data or BLOBS, "model": model, "loss": top.pop("loss", "cross_entropy"),
           "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 64, "steps": 20, **(train or {})},
           "log": {"every": 1, "out": str(tmp_path)}, **top}
    cfg = gradlab.config_from_dict(raw)
    folder = tmp_path / name
    gradlab.train(cfg, run_dir=folder)
    return folder


def kinds(findings) -> list[str]:
    return [f.kind for f in findings]


def test_deep_sigmoid_with_tiny_init_is_vanishing_with_its_cause(tmp_path):
    folder = run(tmp_path, {"depth": 20, "width": 64, "activation": "sigmoid", "init": {"scheme": "normal", "std": 0.01}})
    (f,) = diagnose_dir(folder)
    assert f.kind == "vanishing"
    ev = f.evidence
    assert ev["delta_ratio_first_last_hidden"] < 1e-30  # 0.02 per layer, 19 layers
    assert ev["first_hidden_delta_norm"] / ev["last_hidden_delta_norm"] == pytest.approx(
        ev["delta_ratio_first_last_hidden"])
    assert ev["init_std"] == 0.01 and ev["prescribed_std"] == pytest.approx(math.sqrt(2 / 128))
    assert ev["sigmoid_bound_over_net"] == pytest.approx(0.25**19)
    assert ev["fitted_gain_per_layer"] == pytest.approx(0.02, rel=0.05)  # 0.25 * 0.01 * sqrt(64)
    assert "sigmoid" in f.message and "0.25" in f.message and "0.01" in f.message
    assert 1 <= f.layer < 20
    assert any("xavier_normal" in r for r in f.remedies) and any("batchnorm" in r for r in f.remedies)


def test_deep_linear_net_with_identity_1_2_is_exploding_and_clip_suggestion_lies_in_logged_norms(tmp_path):
    model = {"depth": 50, "width": 32, "activation": "linear", "init": {"scheme": "identity", "scale": 1.2}}
    folder = run(tmp_path, model)
    found = diagnose_dir(folder)
    assert "exploding" in kinds(found)
    f = found[kinds(found).index("exploding")]
    assert f.evidence["delta_ratio_at_step_0"] == pytest.approx(1.2**49, rel=1e-9)
    assert f.evidence["diverged_at"] is not None  # this one overflows within a few steps
    loss = load_run(folder).metrics.loss.to_numpy()
    assert not (loss[1:] < loss[:-1]).any()  # no step lowered the loss: no norm of a learning step to clip at
    assert f.evidence["suggested_clip"] == 1.0  # so Pascanu et al.'s threshold
    assert "train.clip=1.0" in f.remedies[0]  # clipping caps every step whatever the cause: first
    assert "model.init=orthogonal" in f.remedies[1]  # the explosion is there before any update: the init next


def test_exploding_without_divergence_still_suggests_a_threshold_within_the_norms(tmp_path):
    model = {"depth": 50, "width": 32, "activation": "linear", "init": {"scheme": "identity", "scale": 1.2}}
    folder = run(tmp_path, model, {"lr": 1e-9, "steps": 30})
    (f,) = diagnose_dir(folder)
    assert f.kind == "exploding" and "diverged_at" not in f.evidence
    norms = load_run(folder).metrics.grad_norm.to_numpy()
    assert norms.min() <= f.evidence["suggested_clip"] <= norms.max()
    assert f.evidence["global_norms"]["min"] == norms.min()


def test_relu_with_a_large_negative_bias_has_dead_units(tmp_path):
    folder = run(tmp_path, {"depth": 5, "width": 32, "activation": "relu", "init": "he_normal", "bias_init": -3.0})
    found = diagnose_dir(folder)
    f = found[kinds(found).index("dead_units")]
    assert f.evidence["frac_dead"][f.layer] > 0.5
    assert all(v > 0.5 for v in f.evidence["frac_dead"].values())
    assert f.evidence["bias_init"] == -3.0
    assert any("leaky_relu" in r for r in f.remedies) and any("bias_init=0" in r for r in f.remedies)


def test_30_layer_he_relu_net_after_10_steps_is_not_learning_yet_and_says_its_ratio_is_fine(tmp_path):
    """He et al. 2015: the gradient reaches layer 1 intact; 10 steps are too few to leave ln 10 behind."""
    cfg = gradlab.load_config(CONFIGS / "he_relu_healthy.yaml", ["train.steps=10"])
    gradlab.train(cfg, run_dir=tmp_path / "he")
    (f,) = diagnose_dir(tmp_path / "he")
    assert f.kind == "not_learning" and not f.evidence["learned"]
    assert f.evidence["chance_loss"] == pytest.approx(math.log(10), abs=0.01)  # 10 balanced classes
    assert 0.1 < f.evidence["delta_ratio_at_step_0"] < 10
    assert f"{f.evidence['delta_ratio_at_step_0']:.3g} at step 0" in f.message and "gradients look fine" in f.message
    assert not any("model.init" in r for r in f.remedies)  # not the init: the learning rate, the data, the loss


def test_the_same_net_with_xavier_is_vanishing_and_names_he(tmp_path):
    folder = run(tmp_path, {"depth": 30, "width": 64, "activation": "relu", "init": "xavier_normal"}, {"steps": 3})
    found = diagnose_dir(folder)
    assert kinds(found)[0] == "vanishing"
    assert found[0].evidence["fitted_gain_per_layer"] == pytest.approx(2**-0.5, rel=0.1)
    assert any("he_normal" in r for r in found[0].remedies)


def test_tanh_with_a_large_init_saturates(tmp_path):
    folder = run(tmp_path, {"depth": 4, "width": 64, "activation": "tanh", "init": {"scheme": "normal", "std": 1.0}},
                 {"steps": 3})
    found = diagnose_dir(folder)
    f = found[kinds(found).index("saturation")]
    assert f.evidence["frac_saturated"][f.layer] > 0.5
    assert any("batchnorm" in r for r in f.remedies)


def test_a_vanilla_rnn_over_a_long_sequence_vanishes_through_time(tmp_path):
    model = {"kind": "rnn", "cell": "vanilla", "hidden": 32, "recurrent_init": {"scheme": "orthogonal", "gain": 0.5}}
    data = {"kind": "adding", "T": 40, "n_samples": 128}
    folder = run(tmp_path, model, {"steps": 3, "batch_size": 32}, data, loss="mse")
    found = diagnose_dir(folder)
    f = found[kinds(found).index("vanishing")]
    assert f.evidence["T"] == 40 and f.evidence["time_ratio_first_last"] < 1e-3
    assert f.evidence["fitted_gain_per_step"] < 0.6  # at most the recurrent gain 0.5 times tanh' <= 1
    assert any("lstm" in r for r in f.remedies)


def test_an_lstm_on_the_same_task_is_not_vanishing(tmp_path):
    model = {"kind": "rnn", "cell": "lstm", "hidden": 16}
    folder = run(tmp_path, model, {"steps": 3, "batch_size": 32}, {"kind": "adding", "T": 20, "n_samples": 128},
                 loss="mse")
    assert "vanishing" not in kinds(diagnose_dir(folder))


def test_theory_predicts_the_measured_gain_per_layer(tmp_path):
    sigmoid = run(tmp_path, {"depth": 12, "width": 64, "activation": "sigmoid", "init": {"scheme": "normal", "std": 0.01}},
                  {"steps": 2}, name="sigmoid")
    he = run(tmp_path, {"depth": 12, "width": 256, "activation": "relu", "init": "he_normal"}, {"steps": 2}, name="he")
    for folder, gain in ((sigmoid, 0.02), (he, 1.0)):
        table, fits = compare(load_run(folder))
        assert list(table.layer) == list(range(2, 13))
        assert table["predicted gain"].to_numpy() == pytest.approx(gain, rel=0.01)
        measured = np.exp(np.log(table["measured gain, step 0"]).mean())
        assert measured == pytest.approx(gain, rel=0.15)
        assert fits["fitted gain of delta_norm per layer, step 0"] == pytest.approx(gain, rel=0.15)


def test_moments_are_exact_where_they_are_known():
    assert moments("relu", None, 0.0, 3.0) == pytest.approx((1.5, 0.5), rel=1e-7)  # E[relu(z)^2] = Var/2
    assert moments("linear", None, 0.0, 2.0) == pytest.approx((2.0, 1.0), rel=1e-6)
    assert moments("sigmoid", None, 0.0, 1e-8)[1] == pytest.approx(1 / 16, rel=1e-6)  # sigmoid'(0)^2


def test_theory_is_not_claimed_for_residual_nets(tmp_path):
    folder = run(tmp_path, {"depth": 4, "width": 16, "activation": "relu", "init": "he_normal", "residual": True},
                 {"steps": 2})
    table, fits = compare(load_run(folder))
    assert table is None and "residual" in fits["theory"]


def cfg(**model):
    base = {"depth": 30, "width": 64, "activation": "relu", "init": "he_normal"}
    raw = {"name": "l", "data": BLOBS, "model": {**base, **model}, "train": {"steps": 1}}
    return gradlab.config_from_dict(raw)


def lint_keys(config) -> list[str]:
    return [item.key for item in lint(config, 32)]


def test_lint_names_known_mismatches():
    assert lint_keys(cfg()) == []
    assert lint_keys(cfg(activation="tanh", init="xavier_normal")) == []
    he_sigmoid = lint(cfg(activation="sigmoid", init="he_normal", depth=3), 32)
    assert [i.key for i in he_sigmoid] == ["model.init"] and "sigmoid" in he_sigmoid[0].message
    xavier_relu = lint(cfg(init="xavier_normal"), 32)
    assert xavier_relu[0].key == "model.init" and "2^-29" in xavier_relu[0].message
    assert "model" in [i.key for i in xavier_relu]  # the theory: 0.707^29
    small = lint(cfg(activation="tanh", init={"scheme": "normal", "std": 0.01}), 32)
    assert "0.01 is 0.08x the 0.125 that xavier_normal prescribes for tanh at width 64" in small[0].message
    clip = gradlab.config_from_dict({"name": "c", "data": BLOBS, "model": {"depth": 2, "width": 8},
                                     "train": {"clip": {"mode": "value", "threshold": 1.0}}})
    assert lint_keys(clip) == ["train.clip.mode"]


def test_lint_of_recurrent_configs():
    raw = {"name": "r", "data": {"kind": "adding", "T": 100}, "model": {"kind": "rnn", "hidden": 8}, "loss": "mse"}
    assert lint_keys(gradlab.config_from_dict(raw)) == ["train.clip"]
    raw["train"] = {"clip": 1.0}
    assert lint_keys(gradlab.config_from_dict(raw)) == []
    raw["model"]["recurrent_init"] = {"scheme": "orthogonal", "gain": 1.1}
    assert lint_keys(gradlab.config_from_dict(raw)) == ["model.recurrent_init"]


def test_suggested_clip_is_the_median_norm_of_the_steps_that_lowered_the_loss(tmp_path):
    folder = run(tmp_path, {"depth": 3, "width": 16, "activation": "tanh"}, {"steps": 21})
    data = load_run(folder)
    loss, g = data.metrics.loss.to_numpy(), data.metrics.grad_norm.to_numpy()
    learning = g[:-1][loss[1:] < loss[:-1]]
    assert 0 < len(learning) < 20
    assert suggest_clip(data)[0] == pytest.approx(float(np.median(learning)))


def test_a_loss_that_swings_without_progress_is_oscillation_and_a_falling_one_is_not():
    from gradlab.report.diagnose import oscillation

    swinging = np.array([2.0, 9.0, 1.5, 8.0, 2.5, 10.0, 1.0, 7.0, 2.0, 9.0, 1.5, 8.0])
    assert oscillation(swinging) == pytest.approx(1.0)
    falling = np.array([2.3, 1.9, 1.5, 1.2, 0.9, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02])
    assert oscillation(falling) is None
    noisy_but_learning = np.array([2.0, 6.0, 1.0, 3.0, 0.5, 1.5, 0.2, 0.6, 0.1, 0.3, 0.05, 0.15])
    assert oscillation(noisy_but_learning) is None


def test_sgd_at_too_high_a_learning_rate_is_diagnosed_as_exploding(tmp_path):
    model = {"depth": 3, "width": 16, "activation": "relu", "init": "he_normal"}
    folder = run(tmp_path, model, {"lr": 1.0e3, "steps": 30}, {"kind": "teacher", "n_samples": 128}, loss="mse")
    (f,) = [f for f in diagnose_dir(folder) if f.kind == "exploding"]
    assert "diverged_at" in f.evidence or "loss_max" in f.evidence
    # the learning rate scaled to the measured norm: ||lr g|| / ||W|| = 1e-3 at step 0 (SGD)
    at = load_run(folder).grads.query("step == 0")
    g, W = np.sqrt((at.grad_norm**2).sum()), np.sqrt((at.weight_norm**2).sum())
    assert any(f"train.lr={num(1e-3 * W / g)}" in r for r in f.remedies), f.remedies


def test_truncated_bptt_is_judged_on_the_full_sequence_and_says_what_the_truncation_hides(tmp_path):
    model = {"kind": "rnn", "cell": "lstm", "hidden": 8}
    folder = run(tmp_path, model, {"steps": 3, "batch_size": 32, "bptt": {"truncate": 5}},
                 {"kind": "adding", "T": 13, "n_samples": 64}, loss="mse")
    times = load_run(folder).times
    t0 = times[times.step == 0].sort_values("t")
    assert (t0.grad_norm.iloc[:10] == 0).all()  # the training gradient is cut at the chunk starts
    (f,) = diagnose_dir(folder)
    assert f.kind == "not_learning"  # 3 steps
    full = t0.full_grad_norm.to_numpy()
    assert f.evidence["time_ratio_at_step_0"] == pytest.approx(full[0] / full[-1], rel=1e-12)  # t = 1 .. 13
    assert f.evidence["steps_the_truncated_gradient_reaches"] == 3  # chunks 1-5, 6-10, 11-13
    last = times[times.step == 2].sort_values("t").full_grad_norm.to_numpy()  # what it hides at the end
    assert f.evidence["full_ratio_before_last_chunk"] == pytest.approx(last[9] / last[-1], rel=1e-12)
    assert "last 3 of T = 13 steps" in f.message and "steps 1..10 is never trained" in f.message
    assert f.remedies[0].endswith("--set train.bptt=null")


def test_a_clipped_run_says_how_often_clipping_acted(tmp_path):
    folder = run(tmp_path, {"depth": 3, "width": 16, "activation": "tanh"}, {"steps": 20, "clip": 0.05})
    (f,) = diagnose_dir(folder)
    clipped = int(load_run(folder).metrics.clipped.sum())
    assert f.kind == "not_learning" and f.evidence["clipped_steps"] == clipped > 0  # steps of at most 0.005
    assert f"clipping at 0.05 acted on {clipped} of 20 logged steps" in f.message


REMEDY_RUNS = {
    "sigmoid": ({"depth": 12, "width": 32, "activation": "sigmoid", "init": {"scheme": "normal", "std": 0.01}}, {}, None),
    "linear": ({"depth": 50, "width": 32, "activation": "linear", "init": {"scheme": "identity", "scale": 1.2}}, {}, None),
    "dead": ({"depth": 5, "width": 32, "activation": "relu", "init": "he_normal", "bias_init": -3.0}, {}, None),
    "list": ({"layers": [{"type": "dense", "units": 16}, {"type": "activation", "name": "relu"}] * 6,
              "init": {"scheme": "normal", "std": 0.01}}, {}, None),
    "rnn": ({"kind": "rnn", "hidden": 16, "recurrent_init": {"scheme": "orthogonal", "gain": 0.5}},
            {"batch_size": 32}, {"kind": "adding", "T": 40, "n_samples": 64}),
    "lstm": ({"kind": "rnn", "cell": "lstm", "hidden": 8}, {"batch_size": 32}, {"kind": "adding", "T": 100, "n_samples": 64}),
    "relu_rnn": ({"kind": "rnn", "hidden": 16, "activation": "relu", "recurrent_init": {"scheme": "identity", "scale": 1.5}},
                 {"batch_size": 32}, {"kind": "adding", "T": 40, "n_samples": 64}),
}


@pytest.mark.parametrize("name", REMEDY_RUNS)
def test_every_suggested_set_is_valid_for_the_run_config(tmp_path, name):
    model, train, data = REMEDY_RUNS[name]
    folder = run(tmp_path, model, {"steps": 5, **train}, data, loss="mse" if data else "cross_entropy")
    findings = [f for f in diagnose_dir(folder) if f.kind != "healthy"]
    assert findings, name
    sets = [re.findall(r"--set (\S+)", r) for f in findings for r in f.remedies]
    assert any(sets)
    for overrides in sets:
        gradlab.load_config(folder / "config.yaml", overrides)  # raises ConfigError if one is not valid


def test_a_loss_at_every_step_is_not_read_as_a_ratio_through_time(tmp_path):
    model = {"kind": "rnn", "cell": "vanilla", "hidden": 16, "recurrent_init": {"scheme": "orthogonal", "gain": 0.1}}
    folder = run(tmp_path, model, {"steps": 3, "batch_size": 32}, {"kind": "copy", "n_samples": 64})
    data = load_run(folder)
    assert data.summary["per_step"] is True
    (f,) = diagnose_dir(folder)
    assert f.kind == "not_learning" and "a loss at every time step" in f.message


# --------------------------------------------------------------------------- the full-sequence log of truncated BPTT

ORDER = {"kind": "temporal_order", "T": 20, "n_samples": 256}


def order_run(tmp_path, name: str, truncate: int | None, steps: int = 5):
    model = {"kind": "rnn", "cell": "lstm", "hidden": 8}
    bptt = {"truncate": truncate} if truncate else None
    return run(tmp_path, model, {"optimizer": "adam", "lr": 3e-3, "batch_size": 32, "steps": steps, "bptt": bptt},
               ORDER, name=name)


def test_truncated_runs_also_log_the_full_sequence_gradient_of_the_same_batch(tmp_path):
    """T = 20, chunks cut at t = 6, 12, 18 (0-based): the training gradient reaches t = 19, 20 only; the
    full_grad_norm column is what an untruncated run of the same seed logs at step 0 (same init, same batch)."""
    cut = load_run(order_run(tmp_path, "cut", 6)).times
    full = load_run(order_run(tmp_path, "full", None)).times
    c0, f0 = cut[cut.step == 0].sort_values("t"), full[full.step == 0].sort_values("t")
    assert (c0.grad_norm.iloc[:18] == 0).all() and (c0.grad_norm.iloc[18:] > 0).all()
    np.testing.assert_allclose(c0.full_grad_norm, f0.grad_norm, rtol=1e-12, atol=0)
    assert (c0.full_grad_norm > 0).all()
    assert (full.full_grad_norm == full.grad_norm).all()  # without truncation: the same numbers


def test_the_full_sequence_log_does_not_change_training(tmp_path, monkeypatch):
    """The untruncated backward runs on a copy: parameters, losses and norms are those of a run without it."""
    with_log = order_run(tmp_path, "with", 6, steps=8)
    monkeypatch.setattr(importlib.import_module("gradlab.train"), "full_sequence_times", lambda times, *args: times)
    without = order_run(tmp_path, "without", 6, steps=8)
    a, b = np.load(with_log / "params_final.npz"), np.load(without / "params_final.npz")
    assert sorted(a.files) == sorted(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    ma, mb = load_run(with_log).metrics, load_run(without).metrics
    np.testing.assert_array_equal(ma.loss, mb.loss)
    np.testing.assert_array_equal(ma.grad_norm, mb.grad_norm)


def test_the_html_table_shows_not_learning_as_a_failure_and_a_spike_as_a_note_with_its_step():
    from gradlab.report.html import findings_table

    page = findings_table([
        {"kind": "not_learning", "layer": None, "message": "the loss stayed at 2.30", "remedies": ["x: --set train.lr=0.5"],
         "evidence": {"when": "over the whole run", "at_end": True}},
        {"kind": "spike", "layer": None, "message": "a loss spike at step 1", "remedies": [],
         "evidence": {"when": "at step 1", "at_end": False, "step": 1}},
        {"kind": "vanishing", "layer": 3, "message": "cured", "remedies": [],
         "evidence": {"when": "at initialisation (step 0), cured by training by step 40", "at_end": False}},
    ])
    assert '<span class="kind bad">not_learning</span><br><span class="when">over the whole run</span>' in page
    assert '<span class="kind note">spike</span><br><span class="when">at step 1</span>' in page
    assert '<span class="kind note">vanishing</span>' in page  # a problem training cured is not a failure


def test_chance_is_the_loss_of_the_best_constant_prediction(tmp_path):
    """Balanced classes: ln K and 1/K; the adding problem: Var(X1 + X2) = 2/12 = 1/6 (Le et al.'s baseline)."""
    from gradlab.report.progress import chance

    blobs = run(tmp_path, {"depth": 1, "width": 4}, {"steps": 1}, {**BLOBS, "n_samples": 4000}, name="blobs")
    loss, acc = chance(load_run(blobs))
    assert loss == pytest.approx(math.log(10), rel=0.01) and acc == pytest.approx(0.1, abs=0.02)
    adding = run(tmp_path, {"kind": "rnn", "hidden": 4}, {"steps": 1}, {"kind": "adding", "T": 10, "n_samples": 4000},
                 name="adding", loss="mse")
    loss, acc = chance(load_run(adding))
    assert loss == pytest.approx(1 / 6, rel=0.08) and acc is None


def test_a_run_learned_well_only_far_from_chance():
    """The 56-layer plain conv net of configs/sweep_resnet_depth.yaml (final loss 1.84 against chance ln 10, accuracy
    0.256 against 0.103) learned, but not well: neither healthy nor cured. Its 20-layer version, the shipped
    quickstarts and a regression run far below the variance of its targets learned well."""
    from gradlab.report.diagnose import learned_well
    from gradlab.report.progress import Progress

    def prog(first, end, chance, acc=None, chance_acc=None):
        return Progress(first, end, chance, chance_acc, acc, 150)

    plain56 = prog(2.66, 1.84, math.log(10), 0.256, 0.103)
    assert plain56.learned and not learned_well(plain56)
    assert learned_well(prog(2.46, 0.023, math.log(10), 0.992, 0.103))  # plain-20
    assert learned_well(prog(1.20, 0.137, 1.10, 0.961, 0.337))  # configs/cnn_quickstart.yaml
    assert learned_well(prog(0.695, 0.0388, 0.693, 1.0, 0.515))  # configs/quickstart.yaml
    # accuracy just under and over chance + half the room left: 0.103 + 0.5 * 0.897 = 0.5515
    assert not learned_well(prog(2.4, 1.2, math.log(10), 0.55, 0.103))
    assert learned_well(prog(2.4, 1.2, math.log(10), 0.56, 0.103))
    # without accuracy (mse): the loss below half of min(first loss, chance)
    assert learned_well(prog(1.17, 0.15, 0.313)) and not learned_well(prog(1.17, 0.16, 0.313))
    assert not learned_well(prog(2.66, math.inf, math.log(10), 0.9, 0.103))  # diverged


def test_a_batch_norm_run_too_short_for_its_running_statistics_is_judged_by_its_batch_losses(tmp_path):
    """3 steps of an 18-layer conv net with batch norm and residual blocks: the batch loss fell 6.4 -> 4.86 -> 4.17,
    but the eval-mode loss over the set at the end, with running statistics 3 steps from their start of 0 and 1,
    is 2.04e4. That is another net, not the end of this trend: no explosion, no clipping."""
    raw = {"name": "bn3", "seed": 0, "data": {"kind": "digits", "n_samples": 300, "val_fraction": 0.2},
           "model": {"kind": "cnn", "channels": [16, 32, 64], "depth": 18, "kernel": 3, "pool": "none",
                     "activation": "relu", "init": "he_normal", "batchnorm": True, "residual": True, "head": "gap"},
           "loss": "cross_entropy",
           "train": {"optimizer": {"name": "momentum", "momentum": 0.9}, "lr": 0.05, "batch_size": 64, "steps": 3},
           "log": {"every": 1, "out": str(tmp_path)}}
    folder = tmp_path / "bn3"
    gradlab.train(gradlab.config_from_dict(raw), run_dir=folder)
    loaded = load_run(folder)
    loss = loaded.metrics.loss.to_numpy()
    assert loss[0] == pytest.approx(6.40, abs=0.01) and loss[-1] == pytest.approx(4.17, abs=0.01)
    assert loaded.summary["final_train_loss"] > 1e4  # eval mode, running statistics not warmed up
    (f,) = diagnose_dir(folder)
    assert f.kind == "not_learning"  # was: exploding, "ended at loss 2.04e+04, 3.19e+03x its first value"
    assert not any("train.clip" in r for r in f.remedies)
    ev = f.evidence
    assert ev["loss_end"] == pytest.approx(loss[-1]) and ev["eval_loss_end"] > 1e4
    assert ev["running_stats_steps"] == 3 and ev["running_stats_warmup"] == 10
    assert "the batch loss went from 6.4 (first logged step) to 4.17" in f.message
    assert "running statistics had 3 of the ~10 steps" in f.message and "does not compare" in f.message
    # 10 steps warm them up: the final loss is the eval-mode one again
    raw["train"]["steps"], raw["name"] = 10, "bn10"
    raw["model"].update(channels=[4, 8], depth=6)
    gradlab.train(gradlab.config_from_dict(raw), run_dir=tmp_path / "bn10")
    (f,) = diagnose_dir(tmp_path / "bn10")[:1]
    assert "eval_loss_end" not in f.evidence
    assert f.evidence["loss_end"] == pytest.approx(load_run(tmp_path / "bn10").summary["final_train_loss"])


def test_a_forward_overflow_at_step_0_gets_the_init_and_batch_norm_not_clipping(tmp_path):
    """A conv net with weights of std 1e10 overflows float32 in its first forward pass, before any gradient:
    clipping (still diverged at step 0 with it) and the rate cannot help. He init can, and trains."""
    cfg = gradlab.load_config(CONFIGS / "cnn_quickstart.yaml", [
        "train.steps=10", "data.n_samples=256", "model.init={scheme: normal, std: 1e10}", "train.dtype=float32",
        f"log.out={tmp_path}"])
    gradlab.train(cfg, run_dir=tmp_path / "overflow")
    summary = load_run(tmp_path / "overflow").summary
    assert (summary["diverged_at"], summary["diverged_where"]) == (0, "forward")
    f = diagnose_dir(tmp_path / "overflow")[0]
    assert f.kind == "exploding" and "before any update" in f.message
    assert not any("train.clip" in r or "train.lr" in r for r in f.remedies)
    assert f.remedies[0].endswith("--set model.init=he_normal")
    assert any("model.batchnorm=true" in r for r in f.remedies)
    for opts in (["model.init=he_normal"], ["model.batchnorm=true", "model.init=he_normal"]):
        fixed = gradlab.load_config(CONFIGS / "cnn_quickstart.yaml", [
            "train.steps=3", "data.n_samples=256", "train.dtype=float32", f"log.out={tmp_path}", *opts])
        name = "-".join(opts).replace("=", "_")
        gradlab.train(fixed, run_dir=tmp_path / name)
        assert load_run(tmp_path / name).summary["status"] == "completed"
