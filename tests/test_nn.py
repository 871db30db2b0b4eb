"""Every backward pass against centred differences in float64, and the layers' own facts."""
import numpy as np
import pytest

from gradlab.check import centred_difference, rel_error
from gradlab.config import ActivationConfig, InitConfig, MLPConfig
from gradlab.nn import ACTIVATIONS, LOSSES, BatchNorm, Dense, Dropout, build_mlp, make_activation, make_loss

from jitter import jitter

TOL = 1e-7  # CS231n's "good" tier for a gradient check


def away_from_kinks(rng, shape, margin=1e-2):
    """Inputs with |x| > margin, so x +- eps never crosses a ReLU kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * margin * 2, x)


def check_module(module, x, train=True):
    """Compare backward with centred differences for dx and every parameter; return the errors."""
    rng = np.random.default_rng(1)
    R = rng.standard_normal(module.forward(x, train).shape)  # J = sum(out * R): dJ/dout = R
    J = lambda: float(np.sum(module.forward(x, train) * R))  # noqa: E731
    module.forward(x, train)
    dx = module.backward(R.copy())
    errors = {"x": rel_error(dx, centred_difference(J, x))}
    for key, p in module.params.items():
        module.forward(x, train)
        module.backward(R.copy())
        analytic = module.grads[key].copy()
        errors[key] = rel_error(analytic, centred_difference(J, p))
    return errors


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_backward_matches_centred_differences(name):
    rng = np.random.default_rng(0)
    alpha = {"leaky_relu": 0.1, "prelu": 0.25, "elu": 1.3}.get(name)
    act = make_activation(name, alpha, width=5)
    if "alpha" in act.params:
        act.params["alpha"][:] = rng.uniform(0.05, 0.5, 5)
    errors = check_module(act, away_from_kinks(rng, (4, 5)) * 2)
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("bias", [True, False])
def test_dense_backward(bias):
    rng = np.random.default_rng(0)
    layer = Dense(rng.standard_normal((6, 3)), rng.standard_normal(3) if bias else None)
    errors = check_module(layer, rng.standard_normal((5, 6)))
    assert set(errors) == ({"x", "W", "b"} if bias else {"x", "W"})
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_backward_train_and_eval(train):
    rng = np.random.default_rng(0)
    bn = BatchNorm(4)
    bn.params["gamma"][:] = rng.uniform(0.5, 2, 4)
    bn.params["beta"][:] = rng.standard_normal(4)
    bn.running_mean[:] = rng.standard_normal(4)
    bn.running_var[:] = rng.uniform(0.5, 2, 4)
    errors = check_module(bn, 3 * rng.standard_normal((7, 4)) + 1, train)
    assert max(errors.values()) < TOL, errors


def test_batchnorm_normalises_and_its_gradient_sums_to_zero():
    rng = np.random.default_rng(0)
    bn = BatchNorm(6, eps=0.0)  # the identities are exact without the eps of the denominator
    x = 5 * rng.standard_normal((50, 6)) - 3
    out = bn.forward(x)
    np.testing.assert_allclose(out.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=0), 1, atol=1e-12)
    dx = bn.backward(rng.standard_normal((50, 6)))
    np.testing.assert_allclose(dx.sum(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose((dx * bn.xhat).sum(axis=0), 0, atol=1e-12)


def test_batchnorm_running_statistics_are_buffers_not_params():
    bn = BatchNorm(3)
    assert set(bn.params) == {"gamma", "beta"}
    x = np.random.default_rng(0).normal(2.0, 3.0, (1000, 3))
    for _ in range(300):  # the initial (0, 1) decays as 0.9^300
        bn.forward(x)
    np.testing.assert_allclose(bn.running_mean, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var, x.var(axis=0, ddof=1), rtol=1e-6)
    np.testing.assert_allclose(bn.forward(x, train=False).mean(axis=0), 0, atol=1e-6)


def test_dropout_backward_with_a_fixed_mask():
    rng = np.random.default_rng(0)
    drop = Dropout(0.5, np.random.default_rng(3))
    x = rng.standard_normal((6, 8))
    drop.forward(x)
    drop.frozen = True
    errors = check_module(drop, x)
    assert errors["x"] < TOL
    kept = drop.scale != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_array_equal(drop.scale[kept], 2.0)  # inverted: 1 / (1 - p)


def test_dropout_is_inverted_seeded_and_does_not_touch_its_input():
    x = np.ones((2000, 50))
    a = Dropout(0.3, np.random.default_rng(7)).forward(x)
    b = Dropout(0.3, np.random.default_rng(7)).forward(x)
    np.testing.assert_array_equal(a, b)
    assert abs(a.mean() - 1.0) < 0.01  # E[out] = x
    assert abs((a == 0).mean() - 0.3) < 0.01
    np.testing.assert_array_equal(x, 1.0)
    drop = Dropout(0.3, np.random.default_rng(7))
    np.testing.assert_array_equal(drop.forward(x, train=False), x)
    dout = np.full_like(x, 2.0)
    drop.forward(x)
    drop.backward(dout)
    np.testing.assert_array_equal(dout, 2.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_backward(name):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((6, 1 if name == "bce" else 3))
    y = {"bce": rng.integers(0, 2, 6), "cross_entropy": rng.integers(0, 3, 6),
         "mse": rng.standard_normal((6, 3))}[name]
    loss = make_loss(name)
    loss.forward(z, y)
    analytic = loss.backward()
    assert rel_error(analytic, centred_difference(lambda: loss.forward(z, y), z)) < TOL


def test_bce_is_seed_000s_formula_and_stable_for_huge_logits():
    z = np.array([[-2.0], [0.3], [1.5]])
    y = np.array([0, 1, 1])
    yhat = 1 / (1 + np.exp(-z[:, 0]))
    expected = -np.mean(y * np.log(yhat) + (1 - y) * np.log(1 - yhat))
    assert make_loss("bce").forward(z, y) == pytest.approx(expected, rel=1e-14)
    huge = make_loss("bce").forward(np.array([[1000.0], [-1000.0]]), np.array([0, 1]))
    assert huge == pytest.approx(1000.0)


def test_cross_entropy_of_equal_logits_is_log_of_classes():
    assert make_loss("cross_entropy").forward(np.zeros((4, 10)), np.arange(4)) == pytest.approx(np.log(10))


def mlp(rng, **kw):
    cfg = MLPConfig(**{"depth": 3, "width": 5, "activation": "tanh", **kw})
    return build_mlp(cfg, 4, 3, rng, np.random.default_rng(9))


@pytest.mark.parametrize("options", [
    {},
    {"activation": "prelu", "residual": 2},
    {"activation": "sigmoid", "batchnorm": True, "residual": 1},
    {"activation": "elu", "dropout": 0.3, "residual": True},
    {"activation": "softsign", "depth": 4, "residual": 3, "batchnorm": True, "dropout": 0.2},
    {"activation": "leaky_relu", "batchnorm": True},
])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse"])
@pytest.mark.parametrize("params", ["default", "generic"])
def test_whole_network_gradient_with_l2(options, loss_name, params):
    """At the built defaults (b = 0, gamma = 1, beta = 0, the default slopes) and at generic values,
    where a backward that ignores beta or b, or mixes up gamma and 1/gamma, can no longer pass."""
    rng = np.random.default_rng(0)
    model = mlp(rng, **options)
    if params == "generic":
        jitter(model, seed=1)
    for m in model.modules():
        if isinstance(m, Dropout):
            m.forward(np.zeros((8, 5)))
            m.frozen = True
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    loss = make_loss(loss_name)
    J = lambda: model.loss_and_grads(x, y, loss, l2=0.1)  # noqa: E731
    J()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    for key, p in model.params.items():
        assert rel_error(analytic[key], centred_difference(J, p)) < TOL, key
    model.loss_and_grads(x, y, loss)
    dx = model.backward(loss.backward())
    assert rel_error(dx, centred_difference(lambda: loss.forward(model.forward(x), y), x)) < TOL


def test_generic_values_move_every_parameter_but_the_weights():
    options = {"activation": "leaky_relu", "batchnorm": True, "depth": 2}
    plain = mlp(np.random.default_rng(0), **options)
    moved = jitter(mlp(np.random.default_rng(0), **options), seed=1)
    assert list(moved.params) == ["dense1.W", "bn1.gamma", "bn1.beta", "dense2.W", "bn2.gamma", "bn2.beta",
                                  "dense3.W", "dense3.b"]
    shifts = []
    for name, p in plain.params.items():
        if name.endswith(".W"):
            np.testing.assert_array_equal(moved.params[name], p)
        else:
            assert np.all(moved.params[name] != p), name
            shifts.append(moved.params[name] - p)
    assert 0.2 < np.sqrt(np.mean(np.concatenate(shifts) ** 2)) < 0.4  # N(0, 0.3^2), 22 draws
    bn1 = moved.layers[0].modules[1]
    assert bn1.params["gamma"] is moved.params["bn1.gamma"]  # in place: the net and the layer see one array
    slopes = [m.alpha for m in moved.modules() if m.name.startswith("leaky_relu")]
    assert len(slopes) == 2 and all(0.01 < a < 2 for a in slopes)


def test_l2_penalty_is_in_the_loss():
    rng = np.random.default_rng(0)
    model = mlp(rng)
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    loss = make_loss("cross_entropy")
    plain = model.loss_and_grads(x, y, loss)
    sq = sum(float(np.sum(p * p)) for k, p in model.params.items() if k.endswith(".W"))
    assert model.loss_and_grads(x, y, loss, l2=0.3) == pytest.approx(plain + 0.15 * sq, rel=1e-12)


def test_param_names_and_layers():
    model = mlp(np.random.default_rng(0), activation="prelu", batchnorm=True)
    assert list(model.params) == [
        "dense1.W", "bn1.gamma", "bn1.beta", "prelu1.alpha",
        "dense2.W", "bn2.gamma", "bn2.beta", "prelu2.alpha",
        "dense3.W", "bn3.gamma", "bn3.beta", "prelu3.alpha",
        "dense4.W", "dense4.b",
    ]
    assert model.param_layer["prelu2.alpha"] == 2 and model.param_layer["dense4.b"] == 4
    assert list(model.grads) == list(model.params)


def test_residual_blocks_add_their_input():
    rng = np.random.default_rng(0)
    model = mlp(rng, depth=5, residual=2, activation="relu")
    assert model.block_start == {2: 3, 4: 5}
    x = rng.standard_normal((3, 4))
    model.forward(x)
    h1 = model.outputs[1]
    inner = model.layers[2].forward(model.layers[1].forward(h1))
    np.testing.assert_allclose(model.outputs[3], inner + h1, rtol=1e-14)


# ------------------------------------------------------------------ initialisation

N = 512


def empirical_std(spec, shape=(N, N), seed=0):
    from gradlab.nn import init_weight

    return float(init_weight(InitConfig.model_validate(spec), shape, np.random.default_rng(seed)).std())


@pytest.mark.parametrize("spec, std", [
    ({"scheme": "normal", "std": 0.05}, 0.05),
    ({"scheme": "normal", "std": 0.05, "gain": 2.0}, 0.1),
    ({"scheme": "uniform", "limit": 0.3}, 0.3 / np.sqrt(3)),
    ({"scheme": "truncated_normal", "std": 0.2}, 0.2 * 0.87962566103423978),
    ({"scheme": "lecun_normal"}, np.sqrt(1 / N)),
    ({"scheme": "lecun_uniform"}, np.sqrt(1 / N)),
    ({"scheme": "xavier_normal"}, np.sqrt(2 / (N + N))),
    ({"scheme": "glorot_uniform"}, np.sqrt(6 / (N + N)) / np.sqrt(3)),
    ({"scheme": "he_normal"}, np.sqrt(2 / N)),
    ({"scheme": "kaiming_uniform", "gain": 1.5}, 1.5 * np.sqrt(6 / N) / np.sqrt(3)),
    ({"scheme": "variance_scaling", "scale": 3.0, "mode": "fan_avg", "distribution": "truncated_normal"}, np.sqrt(3 / N)),
    ({"scheme": "variance_scaling", "scale": 0.5, "distribution": "uniform"}, np.sqrt(0.5 / N)),
])
def test_init_std_matches_its_formula(spec, std):
    assert empirical_std(spec) == pytest.approx(std, rel=0.03)


@pytest.mark.parametrize("scheme, mode, n", [
    ("he_normal", "fan_in", 512), ("he_normal", "fan_out", 128), ("xavier_normal", None, 320),
])
def test_init_fan_modes_on_a_rectangular_matrix(scheme, mode, n):
    spec = {"scheme": scheme, **({"mode": mode} if mode else {})}
    scale = 2.0 if scheme.startswith("he") else 1.0
    assert empirical_std(spec, (512, 128)) == pytest.approx(np.sqrt(scale / n), rel=0.03)


def test_truncated_normal_never_exceeds_two_std():
    from gradlab.nn import init_weight

    W = init_weight(InitConfig(scheme="truncated_normal", std=0.1), (N, N), np.random.default_rng(0))
    assert np.abs(W).max() <= 0.2


@pytest.mark.parametrize("shape", [(N, N), (300, 100), (100, 300)])
def test_orthogonal_is_orthogonal(shape):
    from gradlab.nn import init_weight

    W = init_weight(InitConfig(scheme="orthogonal", gain=1.0), shape, np.random.default_rng(0))
    small = W.T @ W if shape[0] >= shape[1] else W @ W.T
    np.testing.assert_allclose(small, np.eye(min(shape)), atol=1e-12)
    W3 = init_weight(InitConfig(scheme="orthogonal", gain=3.0), shape, np.random.default_rng(0))
    np.testing.assert_allclose(W3, 3 * W, rtol=1e-14)


def test_bias_init_and_identity():
    cfg = MLPConfig(depth=1, width=3, activation="linear", init={"scheme": "identity", "scale": 0.5}, bias_init=0.1)
    model = build_mlp(cfg, 3, 3, np.random.default_rng(0), np.random.default_rng(0))
    np.testing.assert_array_equal(model.params["dense1.W"], 0.5 * np.eye(3))
    np.testing.assert_array_equal(model.params["dense2.b"], 0.1)


@pytest.mark.parametrize("c", [1.2, 0.5])
def test_seed_001_linear_identity_net_scales_by_c_per_layer(c):
    """A linear net with W = c I and g(z) = z, layer l's activation is c^l x, and so is the gradient."""
    L = 30
    cfg = MLPConfig(depth=L, width=2, activation="linear", init={"scheme": "identity", "scale": c})
    model = build_mlp(cfg, 2, 2, np.random.default_rng(0), np.random.default_rng(0))
    x = np.array([[1.0, -2.0], [0.5, 3.0]])
    model.forward(x)
    for l in (1, 10, L):
        np.testing.assert_allclose(model.outputs[l], c**l * x, rtol=1e-12)
    dx = model.backward(np.ones((2, 2)))
    np.testing.assert_allclose(dx, c ** (L + 1) * np.ones((2, 2)), rtol=1e-12)
    assert model.deltas[1][0, 0] == pytest.approx(c**L, rel=1e-12)


def test_activation_stats_saturation_and_dead_units():
    sig = make_activation("sigmoid")
    sig.forward(np.array([[0.0, 10.0], [-10.0, 1.0]]))
    assert sig.saturated() == 0.5  # sigma'(10) = 4.5e-5 < 0.05 * 0.25; sigma'(1) = 0.197
    tanh = make_activation("tanh")
    tanh.forward(np.array([[0.0, 3.0], [-3.0, 1.0]]))
    assert tanh.saturated() == 0.5  # tanh'(3) = 0.0099 < 0.05; tanh'(1) = 0.42
    relu = make_activation("relu")
    relu.forward(np.array([[1.0, -1.0, -2.0], [2.0, -3.0, 0.5]]))
    assert relu.dead() == pytest.approx(1 / 3) and relu.saturated() is None
    assert make_activation("tanh").dead() is None


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_backward_leaves_its_input_alone(name):
    act = make_activation(name, ActivationConfig(name=name).alpha, width=3)
    x = np.random.default_rng(0).standard_normal((4, 3))
    act.forward(x)
    dout = np.ones((4, 3))
    act.backward(dout)
    np.testing.assert_array_equal(dout, 1.0)
