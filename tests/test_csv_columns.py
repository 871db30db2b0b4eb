"""The run's own CSV columns read back from real runs of a few steps, each against a value computed apart from
the logging: update_norm against the parameters before and after (two runs of the same seed, one step
apart), train_accuracy against the batch's logits recomputed by hand, time against the run's wall time, and
the text of every float (10 significant digits)."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradlab
from gradlab.train import batches


def config(tmp_path, **over):
    raw = {
        "name": "c", "seed": 3,
        "data": {"kind": "spirals", "n_samples": 120, "val_fraction": 0.25},
        "model": {"depth": 2, "width": 8, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.5, "batch_size": 16, "steps": 4},
        "log": {"every": 1, "out": str(tmp_path)},
    }
    return gradlab.config_from_dict(raw, [f"{k.replace('__', '.')}={v}" for k, v in over.items()])


def run(cfg) -> Path:
    result = gradlab.train(cfg)
    assert result.status == "completed"
    return Path(result.run_dir)


def params(folder: Path, name: str) -> dict[str, np.ndarray]:
    return dict(np.load(folder / name))


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_update_norm_is_the_norm_of_the_change_in_the_parameters(tmp_path, optimizer):
    """Runs of 2 and 3 steps from one seed: the third run's last update is what lies between their final
    parameters (momentum and Adam carry state: a step other than the first is the test)."""
    short = run(config(tmp_path, train__optimizer=optimizer, train__lr=0.05, train__steps=2))
    long = run(config(tmp_path, train__optimizer=optimizer, train__lr=0.05, train__steps=3))
    before, after = params(short, "params_final.npz"), params(long, "params_final.npz")
    change = {k: np.linalg.norm(after[k] - before[k]) for k in after}
    assert min(change.values()) > 0  # every tensor moved: a swapped or missing tensor shows

    grads = pd.read_csv(long / "grad_norms.csv")
    at2 = grads[grads.step == 2].set_index("param").update_norm
    assert sorted(at2.index) == sorted(change)
    for k, n in change.items():
        assert at2[k] == pytest.approx(n, rel=1e-8), k
    metrics = pd.read_csv(long / "metrics.csv")
    total = np.sqrt(sum(n**2 for n in change.values()))
    assert metrics.update_norm.iloc[-1] == pytest.approx(total, rel=1e-8)
    # the first update, against the initial parameters
    init, one = params(long, "params_init.npz"), params(run(config(tmp_path, train__optimizer=optimizer,
                                                                  train__lr=0.05, train__steps=1)), "params_final.npz")
    first = np.sqrt(sum(np.linalg.norm(one[k] - init[k]) ** 2 for k in init))
    assert metrics.update_norm.iloc[0] == pytest.approx(first, rel=1e-8)


def test_sgd_update_norm_is_lr_times_the_clipped_gradient(tmp_path):
    """Plain SGD moves by lr * g: the ratio of the two logged columns is the rate, clipping or not."""
    folder = run(config(tmp_path, train__clip=0.45, train__steps=6))
    m = pd.read_csv(folder / "metrics.csv")
    assert m.clipped.any() and not m.clipped.all()
    np.testing.assert_allclose(m.update_norm, 0.5 * m.grad_norm_clipped, rtol=1e-9)


def test_float32_update_norm_is_the_change_up_to_float32_rounding(tmp_path):
    short = run(config(tmp_path, train__dtype="float32", train__steps=1))
    before, after = params(short, "params_init.npz"), params(short, "params_final.npz")
    total = np.sqrt(sum(np.linalg.norm(after[k].astype(np.float64) - before[k]) ** 2 for k in after))
    assert pd.read_csv(short / "metrics.csv").update_norm[0] == pytest.approx(total, rel=1e-5)


def forward_by_hand(P: dict, X: np.ndarray) -> np.ndarray:
    """Logits of the tanh MLP: tanh(x W1 + b1), tanh(. W2 + b2), . W3 + b3."""
    h = X
    for l in (1, 2):
        h = np.tanh(h @ P[f"dense{l}.W"] + P[f"dense{l}.b"])
    return h @ P["dense3.W"] + P["dense3.b"]


def test_train_accuracy_is_the_accuracy_of_the_steps_batch(tmp_path):
    cfg = config(tmp_path, train__steps=5, train__lr=1.0)
    folder = run(cfg)
    s = gradlab.setup(cfg)  # the data and a fresh batch generator, as the run had them
    order = batches(len(s.data.X_train), cfg.train.batch_size, cfg.train.shuffle, s.batch_rng)
    logged = pd.read_csv(folder / "metrics.csv").train_accuracy
    seen = []
    for step in range(5):
        _, idx = next(order)
        P = (params(folder, "params_init.npz") if step == 0 else
             params(run(config(tmp_path, train__steps=step, train__lr=1.0)), "params_final.npz"))
        z = forward_by_hand(P, s.data.X_train[idx])
        want = np.mean(z.argmax(axis=1) == s.data.y_train[idx])
        assert logged[step] == pytest.approx(want, abs=1e-12), step
        seen.append(want)
    assert len(set(seen)) > 1  # the batches differ: a column stuck at one value shows


def test_regression_leaves_train_accuracy_blank(tmp_path):
    folder = run(config(tmp_path, data__kind="teacher", loss="mse", data__n_features=3))
    m = pd.read_csv(folder / "metrics.csv")
    assert m.train_accuracy.isna().all() and m.update_norm.notna().all()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["final_train_accuracy"] is None and summary["final_train_loss"] > 0


def test_binary_cross_entropy_scores_one_output(tmp_path):
    cfg = config(tmp_path, loss="bce", data__kind="moons", train__steps=1)
    folder = run(cfg)
    s = gradlab.setup(cfg)
    _, idx = next(batches(len(s.data.X_train), 16, True, s.batch_rng))
    z = forward_by_hand(params(folder, "params_init.npz"), s.data.X_train[idx])
    want = np.mean((z[:, 0] > 0) == s.data.y_train[idx])
    assert pd.read_csv(folder / "metrics.csv").train_accuracy[0] == pytest.approx(want, abs=1e-12)
    assert json.loads((folder / "summary.json").read_text())["final_train_accuracy"] is not None


def test_time_counts_seconds_from_the_start_of_training(tmp_path):
    result = gradlab.train(config(tmp_path, train__steps=30, log__every=4))
    m = pd.read_csv(Path(result.run_dir) / "metrics.csv")
    assert m.step.tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 29]
    assert (m.time > 0).all() and m.time.is_monotonic_increasing and m.time.iloc[-1] <= result.wall_time


FLOAT = re.compile(r"-?(\d+)\.?(\d*)(e[-+]\d+)?$")


def significant(text: str) -> int:
    whole, frac, _ = FLOAT.match(text).groups()
    return len((whole + frac).lstrip("0")) or 1


def test_every_float_is_written_with_at_most_10_significant_digits(tmp_path):
    folder = run(config(tmp_path, train__optimizer="adam", train__lr=0.01))
    floats = 0
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv"):
        for line in (folder / name).read_text().splitlines()[1:]:
            for cell in line.split(","):
                if ("." in cell or "e" in cell) and not cell.startswith("dense"):
                    floats += 1
                    assert significant(cell) <= 10, (name, cell)
    assert floats > 100
    # and those digits are the value's: a 17-digit repr rounded, not truncated or cut short
    adam = pd.read_csv(folder / "grad_norms.csv").weight_norm
    init = params(folder, "params_init.npz")
    assert adam[0] == float(f"{np.linalg.norm(init['dense1.W']):.10g}")


def test_a_diverged_step_logs_no_update(tmp_path):
    cfg = config(tmp_path, data__kind="teacher", loss="mse", model__activation="relu",
                 model__init="{scheme: normal, std: 3.0}", train__lr=1e3, train__steps=50)
    result = gradlab.train(cfg)
    assert result.status == "diverged"
    m = pd.read_csv(Path(result.run_dir) / "metrics.csv")
    assert m.update_norm.iloc[:-1].notna().all() and np.isnan(m.update_norm.iloc[-1])
    assert m.step.iloc[-1] == result.diverged_at == result.steps
