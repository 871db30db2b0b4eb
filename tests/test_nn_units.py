"""Layer behaviour at the edges the whole-network tests do not reach: where a divergence is located, the
subgradient at exactly 0, softsign's saturation, truncated-normal redraws, a float32 BCE, and what a
layer of your own is given (the train flag by position) and reports (dead units).
"""
import sys

import numpy as np
import pytest

from gradlab.nn import MLP, Sequential, make_activation
from gradlab.nn.activations import Linear
from gradlab.nn.custom import CustomActivation, CustomError, CustomModule, find_class
from gradlab.nn.dense import Dense
from gradlab.nn.dropout import Dropout
from gradlab.nn.init import truncated_normal
from gradlab.nn.losses import BCE, MSE
from gradlab.nn.norm import BatchNorm


# --------------------------------------------------------------------------- where a pass went non-finite

def scalar_net(w1: float, w2: float) -> MLP:
    """x -> w1 x (linear) -> w2 h: two logged layers of one unit each, biases 0."""
    return MLP([Sequential([Dense(np.array([[w1]]), np.zeros(1), "dense1"), Linear("linear1")]),
                Sequential([Dense(np.array([[w2]]), np.zeros(1), "dense2")])])


def pass_of(net: MLP, y: float) -> float:
    with np.errstate(all="ignore"):
        return net.loss_and_grads(np.array([[1.0]]), np.array([[y]]), MSE())


def test_a_parameter_that_is_not_finite_is_named_first():
    net = scalar_net(1.0, 1.0)
    pass_of(net, 0.0)
    net.params["dense2.W"][0, 0] = np.nan
    assert net.first_nonfinite() == (2, "params")


def test_a_forward_pass_that_overflows_is_named_at_its_first_layer():
    net = scalar_net(1e300, 1.0)
    with np.errstate(all="ignore"):
        net.forward(np.array([[1e10]]))  # layer 1 gives inf, and layer 2 inherits it
    assert net.first_nonfinite() == (1, "forward")


def test_a_loss_that_overflows_on_finite_outputs_is_named_as_the_loss():
    net = scalar_net(1.0, 1.0)
    J = pass_of(net, 1e200)  # (1 - 1e200)^2 overflows
    assert J == np.inf
    assert net.first_nonfinite(loss_finite=False) == (2, "loss")


def test_a_backward_pass_that_overflows_below_the_output_names_that_layer():
    # forward: h = 1e-300, z = 1 (finite); loss (1 - 1e10)^2 finite; dL/dz = -2e10 finite, so layer 2's
    # grads are finite, but dL/dh = -2e10 * 1e300 overflows: layer 1 is the first non-finite one
    net = scalar_net(1e-300, 1e300)
    assert np.isfinite(pass_of(net, 1e10))
    assert np.isfinite(net.deltas[2]).all() and all(np.isfinite(g).all() for g in net.layers[1].grads.values())
    assert net.first_nonfinite() == (1, "backward")


def test_a_weight_gradient_that_overflows_with_a_finite_delta_names_its_layer():
    # h = 1e300, z = 1: dL/dz = -2e10 is finite, dL/dW2 = h dL/dz overflows, dL/dh = 2e-290 is finite
    net = scalar_net(1e300, 1e-300)
    assert np.isfinite(pass_of(net, 1e10))
    assert np.isfinite(net.deltas[2]).all() and np.isfinite(net.deltas[1]).all()
    assert net.first_nonfinite() == (2, "backward")


def test_a_finite_pass_is_reported_at_the_loss():
    net = scalar_net(1.0, 2.0)
    pass_of(net, 3.0)
    assert net.first_nonfinite() == (2, "loss")


# --------------------------------------------------------------------------- activations at the edges

@pytest.mark.parametrize("name", ["elu", "prelu", "leaky_relu"])
def test_the_derivative_at_exactly_zero_is_the_left_one(name):
    """As torch takes it: x > 0 is the linear side, so at 0 the slope is alpha (ELU: alpha e^0)."""
    act = make_activation(name, alpha=0.3, width=3)
    x = np.array([[0.0, 2.0, -1.0]])
    out = act.forward(x)
    dx = act.backward(np.ones_like(x))
    left = 0.3 * np.exp(-1.0) if name == "elu" else 0.3
    np.testing.assert_allclose(out, [[0.0, 2.0, 0.3 * np.expm1(-1.0) if name == "elu" else -0.3]], rtol=1e-15)
    np.testing.assert_allclose(dx, [[0.3, 1.0, left]], rtol=1e-15)


def test_softsign_saturates_where_its_derivative_is_below_five_percent():
    """softsign' = 1 / (1 + |x|)^2 < 0.05 where |x| > sqrt(20) - 1 = 3.472..."""
    act = make_activation("softsign")
    act.forward(np.array([[0.0, 1.0, 3.4, 3.5, -10.0, 100.0]]))
    assert act.saturated() == 0.5
    # float32: 1 + |x| = 4.472136 squares to exactly 20, a derivative of exactly 5%: not below it
    act.forward(np.array([[np.float32(4.472136) - np.float32(1.0)]], dtype=np.float32))
    assert act.denom[0, 0] ** 2 == np.float32(20.0)
    assert act.saturated() == 0.0


def test_tanh_saturates_strictly_beyond_the_five_percent_derivative():
    """|tanh| > sqrt(0.95) is saturated; an output of exactly sqrt(0.95) (derivative 5%) is not."""
    edge = np.sqrt(0.95)
    x = np.arctanh(edge)
    near = [x]
    for direction in (np.inf, -np.inf):
        y = x
        for _ in range(50):
            y = np.nextafter(y, direction)
            near.append(y)
    exact = [v for v in near if np.tanh(v) == edge]
    if not exact:
        pytest.skip("this platform's tanh never returns sqrt(0.95) exactly")
    act = make_activation("tanh")
    act.forward(np.array([[exact[0], 0.0, 3.0, -3.0]]))
    assert act.saturated() == 0.5


# --------------------------------------------------------------------------- dropout

def test_dropout_draws_a_new_mask_every_training_pass_unless_frozen():
    drop = Dropout(0.5, np.random.default_rng(0), "dropout1")
    x = np.ones((4, 50))
    first, second = drop.forward(x), drop.forward(x)
    assert set(np.unique(first)) == {0.0, 2.0} and not np.array_equal(first, second)
    drop.frozen = True
    np.testing.assert_array_equal(drop.forward(x), second)
    x32 = np.ones((4, 50), dtype=np.float32)
    assert Dropout(0.5, np.random.default_rng(0), "d").forward(x32).dtype == np.float32  # float32 stays float32


def test_a_dropout_of_zero_draws_nothing_so_the_next_dropouts_masks_stay_the_same():
    """The dropout layers of a net share one generator: p = 0 must leave it to the others untouched."""
    x = np.ones((4, 50))
    alone = Dropout(0.5, np.random.default_rng(3), "dropout2").forward(x)
    rng = np.random.default_rng(3)
    Dropout(0.0, rng, "dropout1").forward(x)
    np.testing.assert_array_equal(Dropout(0.5, rng, "dropout2").forward(x), alone)


@pytest.mark.parametrize("p, train", [(0.0, True), (0.5, False)], ids=["p0", "eval"])
def test_dropout_that_keeps_everything_passes_the_gradient_through(p, train):
    drop = Dropout(p, np.random.default_rng(0), "dropout1")
    x, dout = np.arange(6.0).reshape(2, 3), np.array([[1.0, -2.0, 3.0], [0.5, 0.0, -1.0]])
    np.testing.assert_array_equal(drop.forward(x, train), x)
    np.testing.assert_array_equal(drop.backward(dout), dout)


# --------------------------------------------------------------------------- init

class Draws:
    """A generator whose standard normal draws are given in advance, each call of the size asked for."""

    def __init__(self, *draws):
        self.draws = [np.array(d, dtype=float) for d in draws]

    def standard_normal(self, size):
        out = self.draws.pop(0)
        assert out.size == int(np.prod(size)), (out.size, size)
        return out.reshape(size)


def test_truncated_normal_redraws_only_what_lies_beyond_two():
    rng = Draws([2.0, -2.0, 3.0, 0.5], [-2.5], [1.5])  # 3.0 is redrawn, then -2.5 again; +-2.0 are kept
    np.testing.assert_array_equal(truncated_normal(rng, 0.1, (4,)), 0.1 * np.array([2.0, -2.0, 1.5, 0.5]))
    assert rng.draws == []


# --------------------------------------------------------------------------- losses

def test_bce_keeps_float32():
    loss = BCE()
    z = np.array([[0.5], [-1.0], [2.0]], dtype=np.float32)
    loss.forward(z, np.array([1, 0, 1]))
    g = loss.backward()
    assert g.dtype == np.float32
    p = 1.0 / (1.0 + np.exp(-z[:, 0].astype(np.float64)))
    np.testing.assert_allclose(g[:, 0], (p - [1, 0, 1]) / 3, rtol=1e-6)


# --------------------------------------------------------------------------- layers of your own

class Flagged:
    """forward's second parameter is not called train: it is passed by position."""

    def __init__(self):
        self.params, self.grads, self.seen = {}, {}, []

    def forward(self, x, training=True):
        self.seen.append(training)
        return x

    def backward(self, grad_out):
        return grad_out


class NoFlag(Flagged):
    def forward(self, x):
        self.seen.append(None)
        return x


def test_a_custom_layer_gets_the_train_flag_by_position_when_it_takes_one():
    flagged, plain = CustomModule(Flagged(), "flagged1"), CustomModule(NoFlag(), "noflag1")
    x = np.ones((2, 3))
    for layer in (flagged, plain):
        layer.forward(x, train=False)
        layer.forward(x, train=True)
    assert flagged.layer.seen == [False, True]
    assert plain.layer.seen == [None, None]


class HalfDead:
    def __init__(self):
        self.params, self.grads = {}, {}

    def forward(self, x, train=True):
        return np.maximum(x, 0.0)

    def backward(self, grad_out):
        return grad_out

    def dead(self):
        return 0.25


def test_a_custom_activation_reports_its_own_dead_fraction_and_none_without_one():
    assert CustomActivation(HalfDead(), "halfdead1").dead() == 0.25
    assert CustomActivation(NoFlag(), "noflag1").dead() is None


# --------------------------------------------------------------------------- dense

def test_dense_names_the_output_column_an_entry_moves():
    """W[i, j] and b[j] move output column j; an input entry moves a whole row (None)."""
    from gradlab.check.fast import column  # the check's fast path, kept beside the check

    dense = Dense(np.zeros((3, 4)), np.zeros(4), "dense1")
    np.testing.assert_array_equal(column(dense, "W", np.array([0, 5, 11])), [0, 1, 3])  # W[0,0], W[1,1], W[2,3]
    np.testing.assert_array_equal(column(dense, "b", np.array([2, 0])), [2, 0])
    assert column(dense, "input", np.array([1])) is None


class OwnArrays:
    """Keeps its gradient arrays as attributes and writes into them in place (w), or assigns a new array (v)."""

    def __init__(self):
        self.params = {"w": np.ones(3), "v": np.ones(3)}
        self.dw = np.zeros(3)
        self.grads = {"w": self.dw}  # v's gradient is only assigned in backward

    def forward(self, x, train=True):
        self.x = x
        return x * self.params["w"] * self.params["v"]

    def backward(self, grad_out):
        self.dw[...] = (grad_out * self.x * self.params["v"]).sum(axis=0)
        self.grads["v"] = (grad_out * self.x * self.params["w"]).sum(axis=0)
        return grad_out * self.params["w"] * self.params["v"]


def test_a_custom_layer_may_write_its_own_gradient_arrays_in_place_or_assign_new_ones():
    layer = OwnArrays()
    module = CustomModule(layer, "ownarrays1")
    held = dict(module.grads)  # what the net's flat grads dict holds for the module's lifetime
    assert held["w"] is layer.dw
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    for scale in (1.0, 2.0):  # twice: the second backward must land in the same arrays
        module.forward(x)
        module.backward(scale * np.ones_like(x))
        np.testing.assert_array_equal(held["w"], scale * np.array([5.0, 7.0, 9.0]))
        np.testing.assert_array_equal(held["v"], scale * np.array([5.0, 7.0, 9.0]))
        assert module.grads["v"] is held["v"]


@pytest.mark.parametrize("params, grads, message", [
    ({"w": np.ones(2)}, [], "'grads' is list, not a dict"),
    ({"w": [1.0, 2.0]}, {}, "params['w'] is list ;"),
    ({"w": np.ones(2)}, {"u": np.ones(2)}, "grads['u'] has shape (2,), params: no such param"),
    ({"w": np.ones(2)}, {"w": np.ones(3)}, "grads['w'] has shape (3,), params: (2,)"),
])
def test_a_custom_layer_that_breaks_the_protocol_is_refused_with_what_was_found(params, grads, message):
    class Broken:
        def forward(self, x, train=True):
            return x

        def backward(self, grad_out):
            return grad_out

    layer = Broken()
    layer.params, layer.grads = params, grads
    with pytest.raises(CustomError) as err:
        CustomModule(layer, "broken1")
    assert message in str(err.value) and str(err.value).startswith("Broken: ")


def test_a_custom_layer_with_float32_parameters_is_accepted():
    layer = OwnArrays()
    layer.params = {k: v.astype(np.float32) for k, v in layer.params.items()}
    layer.dw = np.zeros(3, dtype=np.float32)
    layer.grads = {"w": layer.dw}
    assert CustomModule(layer, "ownarrays1").params["w"].dtype == np.float32


# --------------------------------------------------------------------------- batch norm

def test_batch_norm_running_variance_is_unbiased_even_for_a_batch_of_two():
    """running_var <- 0.9 running_var + 0.1 * var * n / (n - 1): x = 0, 2 has var 1, unbiased 2."""
    bn = BatchNorm(1, name="bn1")
    bn.forward(np.array([[0.0], [2.0]]))
    np.testing.assert_allclose(bn.running_var, [0.9 * 1.0 + 0.1 * 2.0], rtol=1e-15)
    np.testing.assert_allclose(bn.running_mean, [0.1 * 1.0], rtol=1e-15)


def test_batch_norm_in_float32_stays_float32_in_training_and_in_eval():
    bn = BatchNorm(2, dtype=np.float32, name="bn1")
    x = np.array([[0.0, 1.0], [2.0, 5.0], [1.0, 3.0]], dtype=np.float32)
    assert bn.forward(x, train=True).dtype == np.float32
    assert bn.running_mean.dtype == np.float32 and bn.running_var.dtype == np.float32
    assert bn.forward(x, train=False).dtype == np.float32


# --------------------------------------------------------------------------- finding a layer of your own

LAYER_SRC = """
class Outer:
    class Inner:
        params, grads = {}, {}

        def forward(self, x, train=True):
            return x

        def backward(self, grad_out):
            return grad_out


class Half:
    def forward(self, x):
        return x


class Nothing:
    pass
"""


@pytest.fixture
def package(tmp_path, monkeypatch):
    """mutunitpkg/layers.py under tmp_path, imported fresh and forgotten afterwards."""
    (tmp_path / "mutunitpkg").mkdir()
    (tmp_path / "mutunitpkg" / "__init__.py").write_text("")
    (tmp_path / "mutunitpkg" / "layers.py").write_text(LAYER_SRC)
    (tmp_path / "mutunitflat.py").write_text("VALUE = 1\n")
    yield tmp_path
    for name in ("mutunitpkg", "mutunitpkg.layers", "mutunitflat"):
        sys.modules.pop(name, None)


def test_a_class_is_found_by_dotted_module_and_qualified_name_and_sys_path_is_restored(package):
    before = list(sys.path)
    cls = find_class("mutunitpkg.layers:Outer.Inner", package)
    assert cls.__qualname__ == "Outer.Inner" and cls.__module__ == "mutunitpkg.layers"
    assert sys.path == before


def test_without_a_folder_the_working_directory_is_searched(package, monkeypatch):
    monkeypatch.chdir(package)
    assert find_class("mutunitpkg.layers:Outer.Inner").__name__ == "Inner"


@pytest.mark.parametrize("spec, message", [
    ("mutunitpkg.nope:X", "no module 'mutunitpkg.nope' in "),
    ("mutunitnopkg.layers:X", "no module 'mutunitnopkg.layers' in "),  # the package itself is missing
    ("sys:path", "sys:path is a list, not a class"),  # a built-in module has no file
    ("mutunitpkg.nope:X", "allowed: a file mutunitpkg/nope.py next to the config"),
    ("mutunitflat:X", "has no 'X'; classes defined there: none"),
    ("mutunitpkg.layers:X", "has no 'X'; classes defined there: Half, Nothing, Outer"),
    ("mutunitpkg.layers:Half", "mutunitpkg.layers:Half has no backward(); "),
    ("mutunitpkg.layers:Nothing", "mutunitpkg.layers:Nothing has no forward() or backward(); "),
])
def test_a_class_that_cannot_be_used_is_refused_saying_what_was_looked_up(package, spec, message):
    with pytest.raises(CustomError) as err:
        find_class(spec, package)
    assert message in str(err.value)


def test_the_config_folder_comes_first_on_the_import_path(package, tmp_path, monkeypatch):
    """A module of the same name earlier on sys.path must not win over the one next to the config."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mutunitshadow.py").write_text("class Other:\n    pass\n")
    (package / "mutunitshadow.py").write_text(LAYER_SRC)
    monkeypatch.syspath_prepend(str(elsewhere))
    try:
        assert find_class("mutunitshadow:Outer.Inner", package).__name__ == "Inner"
    finally:
        sys.modules.pop("mutunitshadow", None)


@pytest.mark.parametrize("spec", ["mutunitdup:Outer.Inner", "mutunitdup.layers:Outer.Inner"])
def test_a_module_already_imported_from_another_folder_is_refused(tmp_path, spec):
    """Two configs' folders with the same package: the second would silently get the first's layer."""
    for folder in ("first", "second"):
        (tmp_path / folder / "mutunitdup").mkdir(parents=True)
        (tmp_path / folder / "mutunitdup" / "__init__.py").write_text(LAYER_SRC)
        (tmp_path / folder / "mutunitdup" / "layers.py").write_text(LAYER_SRC)
    try:
        find_class(spec, tmp_path / "first")
        with pytest.raises(CustomError) as err:
            find_class(spec, tmp_path / "second")
        assert "is already imported from" in str(err.value) and str(tmp_path / "second") in str(err.value)
    finally:
        for name in ("mutunitdup", "mutunitdup.layers"):
            sys.modules.pop(name, None)


# --------------------------------------------------------------------------- backward passes that allocate once

TEXTBOOK = {  # phi'(x) * dout as written before the passes computed into one array of their own
    "tanh": lambda a, dout: dout * (1.0 - a.out * a.out),
    "sigmoid": lambda a, dout: dout * (a.out * (1.0 - a.out)),
    "softsign": lambda a, dout: dout / (a.denom * a.denom),
    "elu": lambda a, dout: dout * np.where(a.mask, 1.0, a.out + a.alpha),
    "softplus": lambda a, dout: dout * (0.5 * (1.0 + np.tanh(0.5 * a.x))),
}


@pytest.mark.parametrize("name", TEXTBOOK)
@pytest.mark.parametrize("dtypes", [(np.float64, np.float64), (np.float32, np.float32), (np.float32, np.float64)],
                         ids=["f64", "f32", "f32-out-f64-dout"])
def test_a_backward_pass_equals_the_textbook_expression_bit_for_bit_and_leaves_dout_alone(name, dtypes):
    """Same bits, same dtype (a float64 dout still gives float64), same shape when dout broadcasts."""
    rng = np.random.default_rng(4)
    act = make_activation(name, 1.0 if name == "elu" else None, 6)
    x = (rng.normal(size=(5, 6)) * 3).astype(dtypes[0])
    out = act.forward(x)
    if name == "sigmoid":
        np.testing.assert_array_equal(out, 0.5 * (1.0 + np.tanh(0.5 * x)))
        assert out.dtype == dtypes[0]
    for dout in (rng.normal(size=(5, 6)).astype(dtypes[1]), rng.normal(size=(3, 5, 6)).astype(dtypes[1])):
        kept = dout.copy()
        got, want = act.backward(dout), TEXTBOOK[name](act, dout)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(dout, kept)


def test_tanh_counts_saturated_units_as_abs_beyond_the_threshold():
    act = make_activation("tanh")
    c = np.sqrt(0.95)
    a = np.array([[-1.0, -np.nextafter(c, 2), -c, 0.0, c, np.nextafter(c, 2), np.nan, 0.999]])
    act.out = a
    assert act.saturated() == np.count_nonzero(np.abs(a) > c) / a.size == 4 / 8
