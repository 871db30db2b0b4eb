"""Recurrent layers (vanilla RNN, LSTM, GRU) with backpropagation through time, truncated BPTT,
and the gradient norm reaching every time step, ||dL/dh_t||.

Row convention as everywhere: a = x_t W + h_{t-1} U + b. Each gate has its own W_g, U_g, b_g
(``lstm1.W_f``), so every gate is logged and checked; the forward pass stacks them into one
matrix per pass, not per step.
"""
from __future__ import annotations

import numpy as np

from ..optim import norm
from .activations import SATURATION
from .init import init_weight
from .module import Module


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


PHI = {  # vanilla activations: phi(a) and phi'(a) written from the output h = phi(a) (and a for relu)
    "tanh": (np.tanh, lambda h, a: 1.0 - h * h),
    "sigmoid": (sigmoid, lambda h, a: h * (1.0 - h)),
    "relu": (lambda a: np.maximum(a, 0.0), lambda h, a: (a > 0).astype(h.dtype)),
    "linear": (lambda a: a, lambda h, a: np.ones_like(h)),
}


class Recurrent(Module):
    """x: (N, T, D) -> h: (N, T, H), from h_0 = 0 (and c_0 = 0).

    ``truncate = k`` cuts the gradient at the start of every chunk of k steps (t = k, 2k, ...):
    the state is carried forward, the gradient flows only within a chunk. ``frozen = True`` makes
    the forward pass reuse the chunk-start states of the last unfrozen pass, so J itself treats
    them as constants: then its numerical gradient is the truncated gradient (what a check needs).
    """

    gates: tuple[str, ...] = ("",)
    batched = False
    has_cell = False

    def __init__(self, name: str, D: int, H: int, init, recurrent_init, rng: np.random.Generator,
                 dtype=np.float64, bias_init: float = 0.0, truncate: int | None = None) -> None:
        super().__init__()
        self.name, self.H, self.truncate = name, H, truncate
        for g in self.gates:
            self.add_param(self.key("W", g), init_weight(init, (D, H), rng, dtype))
        for g in self.gates:
            self.add_param(self.key("U", g), init_weight(recurrent_init, (H, H), rng, dtype))
        for g in self.gates:
            self.add_param(self.key("b", g), np.full(H, bias_init, dtype=dtype))
        self.frozen = False
        self.boundary: dict[int, tuple] = {}

    @staticmethod
    def key(kind: str, gate: str) -> str:
        return f"{kind}_{gate}" if gate else kind

    def stacked(self, kind: str) -> np.ndarray:
        """The gates' matrices side by side: W (D, G*H), U (H, G*H), b (G*H,)."""
        return np.concatenate([self.params[self.key(kind, g)] for g in self.gates], axis=-1)

    def split_into_grads(self, kind: str, stacked: np.ndarray) -> None:
        for i, g in enumerate(self.gates):
            self.grads[self.key(kind, g)][...] = stacked[..., i * self.H:(i + 1) * self.H]

    def chunk_start(self, t: int) -> bool:
        return bool(self.truncate) and t > 0 and t % self.truncate == 0

    def held(self, t: int, state: tuple) -> tuple:
        """The state entering step t: at a truncated-BPTT chunk start it is recorded, or, when ``frozen`` (a
        gradient check), the one recorded at theta is used instead."""
        if self.chunk_start(t):
            if self.frozen and t in self.boundary:
                return self.boundary[t]
            self.boundary[t] = state
        return state

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.x = x
        N, T, D = x.shape
        # every step's input term at once, as one tall product, time-major so each step reads a block
        xt = np.ascontiguousarray(x.transpose(1, 0, 2)).reshape(T * N, D)
        self.xW = (xt @ self.stacked("W") + self.stacked("b")).reshape(T, N, -1)
        self.U = self.stacked("U")
        state = self.zero_state(N, x.dtype)
        self.cache, hs = [], []
        for t in range(T):
            state = self.held(t, state)
            state, cache = self.step(self.xW[t], state)
            self.cache.append(cache)
            hs.append(state[0])
        self.out = np.stack(hs, axis=1)
        return self.out

    def zero_state(self, N: int, dtype) -> tuple:
        h = np.zeros((N, self.H), dtype=dtype)
        return (h, np.zeros_like(h)) if self.has_cell else (h,)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """BPTT: dout (N, T, H) = dL/dh_t from above; returns dL/dx (N, T, D)."""
        N, T, H = dout.shape
        dz = np.empty_like(self.xW)  # (T, N, G): dL/d(pre-activations) of every step
        dstate = tuple(np.zeros((N, H), dtype=dout.dtype) for _ in range(2 if self.has_cell else 1))
        self.time_norms = np.empty(T)
        back = self.back_cache()
        for t in range(T - 1, -1, -1):
            dh = dout[:, t] + dstate[0]  # from the loss above and from step t+1
            self.time_norms[t] = norm(dh)  # finite for finite dh beyond 1e154, whose squares overflow
            dstate, dz[t] = self.step_back((dh, *dstate[1:]), back[t])
            if self.chunk_start(t):  # truncated BPTT: nothing flows into the previous chunk
                dstate = tuple(np.zeros_like(d) for d in dstate)
        flat = dz.reshape(T * N, -1)
        xt = np.ascontiguousarray(self.x.transpose(1, 0, 2)).reshape(T * N, -1)
        self.split_into_grads("W", xt.T @ flat)
        self.split_into_grads("b", flat.sum(axis=0))
        self.split_into_grads("U", self.dU(dz))
        return (flat @ self.stacked("W").T).reshape(T, N, -1).transpose(1, 0, 2)

    def back_cache(self) -> list:
        """What each step's backward reads (a cell may precompute it for all steps at once)."""
        return self.cache

    def dU(self, dz: np.ndarray) -> np.ndarray:
        """dL/dU = sum over steps of h_{t-1}^T dz_t, dz: (T, N, G). Small products, one per step: a
        single tall one is faster alone but stalls badly when BLAS threads compete for the cores."""
        out = np.zeros_like(self.U)
        for c, dz_t in zip(self.cache, dz):
            out += c[0].T @ dz_t
        return out


class VanillaRNN(Recurrent):
    """h_t = phi(x_t W + h_{t-1} U + b)."""

    def __init__(self, *args, activation: str = "tanh", **kw) -> None:
        super().__init__(*args, **kw)
        self.activation = activation
        self.phi, self.dphi = PHI[activation]
        self.kinks = activation == "relu"

    def step(self, xw, state):
        h_prev = state[0]
        a = xw + h_prev @ self.U
        h = self.phi(a)
        return (h,), (h_prev, a, h)

    def step_back(self, dstate, cache):
        h_prev, a, h = cache
        da = dstate[0] * self.dphi(h, a)
        return (da @ self.U.T,), da

    @property
    def mask(self) -> np.ndarray:
        """The winners of max(0, a) at every step, (N, T, H): what a gradient check watches."""
        return np.stack([c[1] > 0 for c in self.cache], axis=1)

    def saturated(self):
        if self.activation not in ("tanh", "sigmoid"):
            return None
        d = self.dphi(self.out, None)
        top = 1.0 if self.activation == "tanh" else 0.25
        return float(np.count_nonzero(d < SATURATION * top) / d.size)

    def dead(self):
        if self.activation != "relu":
            return None
        return float(np.count_nonzero(~(self.out > 0).any(axis=(0, 1))) / self.H)


class LSTM(Recurrent):
    """Hochreiter & Schmidhuber 1997 with a forget gate: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""

    gates = ("i", "f", "o", "g")  # the three sigmoid gates side by side: one call for all of them
    has_cell = True

    def __init__(self, *args, forget_bias: float = 1.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.params["b_f"][...] = forget_bias  # remember by default (Gers et al. 2000)

    def step(self, xw, state):
        h_prev, c_prev = state
        H = self.H
        z = xw + h_prev @ self.U
        ifo = sigmoid(z[:, :3 * H])
        i, f, o = ifo[:, :H], ifo[:, H:2 * H], ifo[:, 2 * H:]
        g = np.tanh(z[:, 3 * H:])
        c = f * c_prev + i * g
        tc = np.tanh(c)
        h = o * tc
        return (h, c), (h_prev, c_prev, i, f, g, o, tc)

    def back_cache(self) -> np.ndarray:
        """The local derivatives of every step at once, (T, 6, N, H): the recursion then needs only
        a few products per step. Rows: dh->dc, dc->dz_i, dc->dz_f, dh->dz_o, dc->dz_g, dc->dc_prev."""
        _, c_prev, i, f, g, o, tc = (np.stack(a) for a in zip(*self.cache))
        return np.stack([
            o * (1.0 - tc * tc),  # h = o tanh(c)
            g * i * (1.0 - i),  # c = f c_prev + i g, i = sigma(z_i)
            c_prev * f * (1.0 - f),
            tc * o * (1.0 - o),
            i * (1.0 - g * g),
            f,
        ], axis=1)

    def step_back(self, dstate, local):
        dh, dc_next = dstate
        H = self.H
        dc = dc_next + dh * local[0]  # through h = o tanh(c), plus from c_{t+1}
        dz = np.empty((dh.shape[0], 4 * H), dtype=dh.dtype)
        np.multiply(dc, local[1], out=dz[:, :H])  # d/dz_i
        np.multiply(dc, local[2], out=dz[:, H:2 * H])  # d/dz_f
        np.multiply(dh, local[3], out=dz[:, 2 * H:3 * H])  # d/dz_o
        np.multiply(dc, local[4], out=dz[:, 3 * H:])  # d/dz_g
        return (dz @ self.U.T, dc * local[5]), dz

    def gate_means(self) -> dict[str, float]:
        return {name: float(np.mean([c[k].mean() for c in self.cache])) for k, name in ((2, "i"), (3, "f"), (5, "o"))}

    def saturated(self):
        return None

    def dead(self):
        return None


class GRU(Recurrent):
    """Cho et al. 2014: r, z gates; n = tanh(x W_n + (r h_{t-1}) U_n + b_n); h_t = (1 - z) n + z h_{t-1}."""

    gates = ("r", "z", "n")

    def step(self, xw, state):
        h_prev = state[0]
        H = self.H
        U = self.U
        rz = sigmoid(xw[:, :2 * H] + h_prev @ U[:, :2 * H])
        r, z = rz[:, :H], rz[:, H:]
        rh = r * h_prev
        n = np.tanh(xw[:, 2 * H:] + rh @ U[:, 2 * H:])
        h = (1.0 - z) * n + z * h_prev
        return (h,), (h_prev, r, z, n, rh)

    def step_back(self, dstate, cache):
        dh = dstate[0]
        h_prev, r, z, n, rh = cache
        H = self.H
        U = self.U
        dzn = dh * (1.0 - z) * (1.0 - n * n)  # through n
        drh = dzn @ U[:, 2 * H:].T
        dzr = drh * h_prev * r * (1.0 - r)
        dzz = dh * (h_prev - n) * z * (1.0 - z)
        dz = np.concatenate([dzr, dzz, dzn], axis=1)
        dh_prev = dh * z + drh * r + dz[:, :2 * H] @ U[:, :2 * H].T
        return (dh_prev,), dz

    def dU(self, dz: np.ndarray) -> np.ndarray:
        """U_r and U_z multiply h_{t-1}; U_n multiplies r * h_{t-1}."""
        H = self.H
        out = np.zeros_like(self.U)
        for c, dz_t in zip(self.cache, dz):
            out[:, :2 * H] += c[0].T @ dz_t[:, :2 * H]
            out[:, 2 * H:] += c[4].T @ dz_t[:, 2 * H:]
        return out

    def gate_means(self) -> dict[str, float]:
        return {name: float(np.mean([c[k].mean() for c in self.cache])) for k, name in ((1, "r"), (2, "z"))}

    def saturated(self):
        return None

    def dead(self):
        return None


class LastStep(Module):
    """Many-to-one: x (N, T, H) -> x[:, -1] (N, H)."""

    def forward(self, x, train=True):
        self.shape = x.shape
        return x[..., -1, :]

    def backward(self, dout):
        dx = np.zeros(self.shape, dtype=dout.dtype)
        dx[:, -1] = dout
        return dx


class EveryStep(Module):
    """Many-to-many: x (N, T, H) -> (N * T, H), one row per step, to meet targets of shape (N * T,)."""

    def forward(self, x, train=True):
        self.shape = x.shape
        return x.reshape(x.shape[:-3] + (-1, x.shape[-1]))

    def backward(self, dout):
        return dout.reshape(self.shape)


class CustomCell(Recurrent):
    """A cell of your own (``model.cell: module:Class``, see ``custom.CELL_PROTOCOL``) run over time:
    x (N, T, D) -> h (N, T, H), with full or truncated BPTT like the built-in cells.

    The cell's gradients live in fixed arrays (the net's flat ``grads`` dict holds them): they are
    zeroed before BPTT, and a gradient the cell assigned as a new array is copied back after each step.
    """

    def __init__(self, cell: object, name: str, H: int, truncate: int | None = None) -> None:  # noqa: D107
        Module.__init__(self)  # no Recurrent.__init__: the params are the cell's own
        self.cell, self.name, self.H, self.truncate = cell, name, H, truncate
        self.kinks = bool(getattr(cell, "kinks", False))
        self.frozen, self.boundary = False, {}
        self._fixed = {k: np.zeros_like(p) for k, p in cell.params.items()}
        cell.grads.update(self._fixed)

    params = property(lambda self: self.cell.params, lambda self, v: None)
    grads = property(lambda self: self.cell.grads, lambda self, v: None)

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        from .custom import initial_state

        N, T, _ = x.shape
        state = initial_state(self.cell, N, self.H, x.dtype)
        self.cache, hs = [], []
        for t in range(T):
            state = self.held(t, state)
            h, state, cache = self.cell.step(x[:, t], tuple(state))
            self.cache.append(cache)
            hs.append(h)
        self.last_state = tuple(state)
        self.out = np.stack(hs, axis=1)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """BPTT: dout (N, T, H) = dL/dh_t from above; returns dL/dx (N, T, D)."""
        for k, g in self._fixed.items():
            g[...] = 0
            self.cell.grads[k] = g
        T = dout.shape[1]
        dstate = tuple(np.zeros_like(s) for s in self.last_state)
        self.time_norms, dxs = np.empty(T), [None] * T
        for t in range(T - 1, -1, -1):
            reach = dout[:, t] + dstate[0] if dstate[0].shape == dout[:, t].shape else dout[:, t]
            self.time_norms[t] = norm(reach)  # ||dL/dh_t||, h_t taken as state[0]; finite beyond 1e154 as the built-in cells'
            dxs[t], dstate = self.cell.step_backward(dout[:, t], dstate, self.cache[t])
            dstate = tuple(dstate) if isinstance(dstate, (tuple, list)) else (dstate,)
            self._settle()
            if self.chunk_start(t):  # truncated BPTT: nothing flows into the previous chunk
                dstate = tuple(np.zeros_like(d) for d in dstate)
        return np.stack(dxs, axis=1)

    def _settle(self) -> None:
        for k, fixed in self._fixed.items():
            g = self.cell.grads.get(k)
            if g is not fixed:
                np.copyto(fixed, g)
                self.cell.grads[k] = fixed

    @property
    def mask(self) -> np.ndarray:
        """The winners of every step, (N, T, ...): a cell with kinks returns them from ``winners(cache)``."""
        return np.stack([np.asarray(self.cell.winners(c)) for c in self.cache], axis=1)

    def saturated(self):
        fn = getattr(self.cell, "saturated", None)
        return fn() if callable(fn) else None

    def dead(self):
        fn = getattr(self.cell, "dead", None)
        return fn() if callable(fn) else None


CELLS = {"vanilla": VanillaRNN, "lstm": LSTM, "gru": GRU}


def build_rnn(cfg, n_in: int, n_out: int, rng: np.random.Generator, per_step: bool, dtype=np.float64,
              truncate: int | None = None):
    """An MLP-shaped net of logged layers: the recurrent layers 1..num_layers, then the read-out."""
    from .dense import Dense
    from .init import init_weight as draw
    from .mlp import MLP, Sequential

    extra = {"vanilla": {"activation": cfg.activation}, "lstm": {"forget_bias": cfg.forget_bias}, "gru": {}}
    layers, D = [], n_in
    for l in range(1, cfg.num_layers + 1):
        if cfg.cell not in CELLS:  # a cell of your own, module:Class
            cell = custom_cell(cfg, l, D, rng, dtype, truncate)
        else:
            cell = CELLS[cfg.cell](f"{cfg.cell if cfg.cell != 'vanilla' else 'rnn'}{l}", D, cfg.hidden, cfg.init,
                                   cfg.recurrent_init, rng, dtype, cfg.bias_init, truncate, **extra[cfg.cell])
        layers.append(Sequential([cell]))
        D = cfg.hidden
    L = cfg.num_layers + 1
    head = Dense(draw(cfg.init, (D, n_out), rng, dtype), np.full(n_out, cfg.bias_init, dtype=dtype), f"dense{L}")
    layers.append(Sequential([EveryStep() if per_step else LastStep(), head]))
    model = MLP(layers)
    model.per_step = per_step
    return model


def custom_cell(cfg, l: int, D: int, rng: np.random.Generator, dtype, truncate: int | None) -> CustomCell:
    """Layer l's cell of your own, named ``<class lowercased><l>`` (``lstmcell1.Wx``)."""
    from ..config import ConfigError, allowed_imports
    from .custom import CustomError, make_cell

    try:
        cell = make_cell(cfg.cell, cfg.import_dir, cfg.cell_args, D, cfg.hidden, rng, dtype, allowed_imports(cfg))
    except CustomError as exc:
        raise ConfigError(f"'model.cell': {exc}.") from None
    return CustomCell(cell, f"{type(cell).__name__.lower()}{l}", cfg.hidden, truncate)
