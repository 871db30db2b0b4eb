"""Recurrent layers (vanilla RNN, LSTM, GRU) with backpropagation through time, truncated BPTT,
and the gradient norm reaching every time step, ||dL/dh_t||.

Row convention as everywhere: a = x_t W + h_{t-1} U + b. A layer holds ONE fused array per kind,
``W`` (D, G), ``U`` (H, G) and ``b`` (G,), G = gates x H, the gates side by side in ``gates`` order
(LSTM i, f, o, g; GRU r, z, n); its fused gradients are ``dW``, ``dU``, ``db``. Each gate's
tensors are views into them, ``params["W_f"] = W[:, H:2H]`` (and ``grads["W_f"]`` into ``dW``),
so every gate is logged (``lstm1.W_f``), saved and checked by name, and an in-place update of a
view (an optimizer step, loading weights with ``[...] =``) is an update of the fused array.

Forward reads the fused arrays only, and broadcasts over a leading axis of K copies: rebind
``W``, ``U``, ``b`` to (K, D, G), (K, H, G), (K, G) and/or pass x (K, N, T, D), and it returns
(K, N, T, H) (a gradient check pushes K perturbed copies through one pass). Backward takes the
plain (N, T, H) only. A per-gate tensor rebound in ``params`` to an array of its own (not a view)
is stacked back in for the pass, so code that swaps ``params["U_f"]`` still sees its effect.

Every step's state and gate values are written into arrays over all steps, time-major, so
backward does one tall product per gradient (dW, dU) and no stacking.
"""
from __future__ import annotations

import numpy as np

from ..optim import norm
from .activations import SATURATION
from .init import init_weight
from .module import Module


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """1 / (1 + e^-z), into ``out`` if given (may be z itself). Unlike 0.5 (1 + tanh(z / 2)) it keeps
    tiny values (sigma(-40) = 4.2e-18, not 0) and costs half as much; e^-z beyond the float range is
    inf and gives 0: callers run it under ``np.errstate(over="ignore")``, as the time loops do."""
    out = np.negative(z, out=out)
    np.exp(out, out=out)
    out += 1.0
    return np.reciprocal(out, out=out)


def _tanh(a, out):
    return np.tanh(a, out=out)


def _relu(a, out):
    return np.maximum(a, 0.0, out=out)


def _linear(a, out):
    out[...] = a
    return out


PHI = {  # vanilla activations: phi(a, out) and phi'(a) written from the output h = phi(a) (and a for relu)
    "tanh": (_tanh, lambda h, a: 1.0 - h * h),
    "sigmoid": (sigmoid, lambda h, a: h * (1.0 - h)),
    "relu": (_relu, lambda h, a: (a > 0).astype(h.dtype)),
    "linear": (_linear, lambda h, a: np.ones_like(h)),
}


class Recurrent(Module):
    """x: (N, T, D) -> h: (N, T, H), from h_0 = 0 (and c_0 = 0).

    ``truncate = k`` cuts the gradient at the start of every chunk of k steps (t = k, 2k, ...):
    the state is carried forward, the gradient flows only within a chunk. ``frozen = True`` makes
    the forward pass reuse the chunk-start states of the last unfrozen pass, so J itself treats
    them as constants: then its numerical gradient is the truncated gradient (what a check needs).
    """

    gates: tuple[str, ...] = ("",)
    batched = False  # the leading copy axis is its own contract (module docstring), not Module.batched's
    has_cell = False

    def __init__(self, name: str, D: int, H: int, init, recurrent_init, rng: np.random.Generator,
                 dtype=np.float64, bias_init: float = 0.0, truncate: int | None = None) -> None:
        super().__init__()
        self.name, self.H, self.truncate = name, H, truncate
        # drawn gate by gate, W's then U's, as when each gate had arrays of its own: same seed, same weights
        self.W = np.concatenate([init_weight(init, (D, H), rng, dtype) for _ in self.gates], axis=1)
        self.U = np.concatenate([init_weight(recurrent_init, (H, H), rng, dtype) for _ in self.gates], axis=1)
        self.b = np.full(len(self.gates) * H, bias_init, dtype=dtype)
        self.dW, self.dU, self.db = np.zeros_like(self.W), np.zeros_like(self.U), np.zeros_like(self.b)
        self.params = self.gate_views(self.W, self.U, self.b)
        self.grads = self.gate_views(self.dW, self.dU, self.db)
        self.views = dict(self.params)  # what params held when built: a rebound entry is noticed
        self.frozen = False
        self.boundary: dict[int, tuple] = {}

    def __getstate__(self) -> dict:
        """Pickled or deep-copied, the gate tensors are rebuilt as views of the copy's fused arrays (a
        copy of each view on its own would no longer move with W, U, b)."""
        state = self.__dict__.copy()
        views = state.get("views")
        state["_fused"] = views is not None and all(self.params[k] is v for k, v in views.items())
        return state

    def __setstate__(self, state: dict) -> None:
        fused = state.pop("_fused", False)
        self.__dict__.update(state)
        if fused:
            self.params = self.gate_views(self.W, self.U, self.b)
            self.grads = self.gate_views(self.dW, self.dU, self.db)
            self.views = dict(self.params)

    @staticmethod
    def key(kind: str, gate: str) -> str:
        return f"{kind}_{gate}" if gate else kind

    def gate_views(self, W: np.ndarray, U: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        """``{"W_i": W[:, :H], "W_f": W[:, H:2H], ..., "b_g": b[3H:]}``: views, no copies."""
        H = self.H
        return {self.key(kind, g): A[..., i * H:(i + 1) * H]
                for kind, A in (("W", W), ("U", U), ("b", b)) for i, g in enumerate(self.gates)}

    def weights(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(W, U, b) of this pass: the fused arrays, unless a per-gate entry of ``params`` was rebound to
        an array of its own: then the gates' tensors side by side (broadcast over any leading axes)."""
        if all(self.params[k] is v for k, v in self.views.items()):
            return self.W, self.U, self.b
        return tuple(self.stacked(kind) for kind in "WUb")

    def stacked(self, kind: str) -> np.ndarray:
        parts = np.broadcast_arrays(*(self.params[self.key(kind, g)] for g in self.gates))
        return np.concatenate(parts, axis=-1)

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

    def hold(self, t: int, computed: dict) -> None:
        """``held`` on the state buffers: the chunk-start state is recorded, or, when frozen, the recorded one
        written over it; then ``computed[t]`` keeps the output h_{t-1} that step t - 1 computed."""
        state = tuple(s[t] for s in self.states)
        kept = self.held(t, state)
        if kept is not state:
            computed[t] = state[0].copy()
            for buf, s in zip(self.states, kept):
                buf[t] = s

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        """x (N, T, D) or (K, N, T, D) -> h (N, T, H) or (K, N, T, H); W, U, b may carry a leading K axis."""
        W, U, b = self.weights()
        self.Wp, self.Up = W, U  # this pass's weights, for backward
        sign = self.sign()
        self.Ur = U if sign is None else U * sign  # the U of the time loop
        self.z = self.input_terms(x, W, U, b, sign)  # (T, [K,] N, G); cells overwrite it with their gate values
        T, lead = self.z.shape[0], self.z.shape[1:-1]
        self.hs = np.empty((T + 1, *lead, self.H), dtype=self.z.dtype)  # hs[t] = h_{t-1}: h_0 = 0, then each output
        self.hs[0] = 0.0
        self.begin(T, lead)
        self.computed: dict[int, np.ndarray] = {}
        with np.errstate(over="ignore"):  # e^-z of sigma(z) for z < -709 is inf: sigma = 0 is right, no warning
            self.run(T, matmul if len(lead) == 1 or self.Ur.ndim == 3 else tall)
        self.out = np.moveaxis(self.hs[1:], 0, -2)  # (..., N, T, H), a view
        if self.computed:  # frozen: the outputs are what the steps computed, not the held states
            self.out = self.out.copy()
            for t, h in self.computed.items():
                self.out[..., t - 1, :] = h
        return self.out

    def sign(self) -> np.ndarray | None:
        """-1 on the columns of the sigmoid gates, whose pre-activations the time loop then holds negated, so
        that sigma(a) = 1 / (1 + e^-a) is one e^ away (negating is exact); None: nothing negated."""
        return None

    def run(self, T: int, mm) -> None:
        """The time loop: step t reads hs[t] and writes hs[t + 1]; ``mm(h, U)`` is h U."""
        for t in range(T):
            if self.chunk_start(t):
                self.hold(t, self.computed)
            self.step(t, mm)

    def input_terms(self, x: np.ndarray, W: np.ndarray, U: np.ndarray, b: np.ndarray, sign) -> np.ndarray:
        """x_t W + b (times ``sign``) for every t, time-major, a fresh C-contiguous (T, [K,] N, G), with the copy
        axis K wherever any of x, W, U, b has it. Without copies it is one tall product [x_t, 1] [W; b], whose
        left factor ``self.x1`` (T N, D + 1) backward reuses for dW and db at once."""
        sizes = [x.shape[0] for _ in range(x.ndim == 4)] + [a.shape[0] for a, nd in ((W, 3), (U, 3), (b, 2))
                                                             if a.ndim == nd]
        if sign is not None:
            W, b = W * sign, b * sign
        if not sizes:
            N, T, D = x.shape
            self.x1 = np.empty((T * N, D + 1), dtype=np.result_type(x, W))
            self.x1.reshape(T, N, D + 1)[..., :D] = x.transpose(1, 0, 2)
            self.x1[:, D] = 1.0
            return (self.x1 @ np.concatenate([W, b[None]])).reshape(T, N, -1)
        K = sizes[0]
        xt = np.moveaxis(x, -2, 0)  # (T, [K,] N, D)
        if xt.ndim == 3:
            xt = xt[:, None]  # (T, 1, N, D): broadcast against the copies
        z = xt @ W + (b[:, None, :] if b.ndim == 2 else b)  # (T, K or 1, N, G)
        T, _, N, G = z.shape
        return z if z.shape[1] == K else np.ascontiguousarray(np.broadcast_to(z, (T, K, N, G)))

    def begin(self, T: int, lead: tuple) -> None:
        """Allocate the cell's buffers over all steps; ``self.states``: the buffers holding its state."""
        self.states = (self.hs,)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """BPTT: dout (N, T, H) = dL/dh_t from above; returns dL/dx (N, T, D)."""
        N, T, H = dout.shape
        dz = np.empty_like(self.z)  # (T, N, G): dL/d(pre-activations) of every step
        dh_all = np.empty((T, N, H), dtype=dout.dtype)  # dL/dh_t, for the time norms
        dstate = tuple(np.zeros((N, H), dtype=dout.dtype) for _ in self.states)
        cut = {t for t in range(T) if self.chunk_start(t)}
        step_back, local = self.step_back, self.local
        with np.errstate(over="ignore"):
            for t in range(T - 1, -1, -1):
                dh = np.add(dout[:, t], dstate[0], out=dh_all[t])  # from the loss above and from step t+1
                self.into = into = dz[t]  # a built-in step_back writes its dz there
                dstate, dz_t = step_back((dh, *dstate[1:]), local(t))
                if dz_t is not into:
                    dz[t] = dz_t
                if t in cut:  # truncated BPTT: nothing flows into the previous chunk
                    dstate = tuple(np.zeros_like(d) for d in dstate)
        self.time_norms = row_norms(dh_all)
        flat = dz.reshape(T * N, -1)
        D = self.dW.shape[0]
        dWb = self.x1.T @ flat  # [dW; db] in one product
        self.dW[...], self.db[...] = dWb[:D], dWb[D]
        self.recurrent_grad(dz)
        return np.moveaxis((flat @ self.Wp.T).reshape(T, N, -1), 0, 1)

    def local(self, t: int):
        """What step t's backward reads."""
        raise NotImplementedError

    def recurrent_grad(self, dz: np.ndarray) -> None:
        """dU = sum over steps of h_{t-1}^T dz_t, as one tall product, dz: (T, N, G)."""
        T, N, _ = dz.shape
        np.matmul(self.hs[:-1].reshape(T * N, -1).T, dz.reshape(T * N, -1), out=self.dU)


def matmul(h: np.ndarray, U: np.ndarray) -> np.ndarray:
    return h @ U


def tall(h: np.ndarray, U: np.ndarray) -> np.ndarray:
    """h U for h (K, N, H) and one U (H, G): one tall product, not K small ones."""
    return (h.reshape(-1, h.shape[-1]) @ U).reshape(*h.shape[:-1], U.shape[-1])


def gate_means(z: np.ndarray, names: str, H: int) -> dict[str, float]:
    """Mean of each named gate (the first len(names) blocks of H columns of z (..., G)) over everything else:
    the column sums as one product with a vector of ones, one read of z."""
    flat = z.reshape(-1, z.shape[-1])
    sums = (np.ones(len(flat), dtype=z.dtype) @ flat)[:len(names) * H].reshape(len(names), H).sum(axis=1)
    return {name: float(total / (len(flat) * H)) for name, total in zip(names, sums)}


def row_norms(a: np.ndarray) -> np.ndarray:
    """||a[t]|| for every t, (T, ...) -> (T,): one pass, rescaled where the squares overflow (finite beyond 1e154)."""
    flat = a.reshape(len(a), -1)
    with np.errstate(over="ignore"):
        out = np.sqrt(np.einsum("ti,ti->t", flat, flat))
    for t in np.flatnonzero(np.isinf(out)):
        out[t] = norm(flat[t])
    return out


class VanillaRNN(Recurrent):
    """h_t = phi(x_t W + h_{t-1} U + b)."""

    def __init__(self, *args, activation: str = "tanh", **kw) -> None:
        super().__init__(*args, **kw)
        self.activation = activation
        self.phi, self.dphi = PHI[activation]
        self.kinks = activation == "relu"

    def step(self, t: int, mm) -> None:
        a = self.z[t]  # keeps the pre-activation: relu's derivative and mask read it
        a += mm(self.hs[t], self.Ur)
        self.phi(a, self.hs[t + 1])

    def local(self, t: int):
        return self.hs[t], self.z[t], self.hs[t + 1]  # h_prev, a, h

    def step_back(self, dstate, cache):
        h_prev, a, h = cache
        da = np.multiply(dstate[0], self.dphi(h, a), out=self.into)
        return (da @ self.Up.T,), da

    @property
    def mask(self) -> np.ndarray:
        """The winners of max(0, a) at every step, (N, T, H): what a gradient check watches."""
        return np.moveaxis(self.z > 0, 0, -2)

    def saturated(self):
        if self.activation not in ("tanh", "sigmoid"):
            return None
        d = self.dphi(self.out, None)
        top = 1.0 if self.activation == "tanh" else 0.25
        return float(np.count_nonzero(d < SATURATION * top) / d.size)

    def dead(self):
        if self.activation != "relu":
            return None
        return float(np.count_nonzero(~(self.out > 0).any(axis=(-3, -2))) / self.H)


class LSTM(Recurrent):
    """Hochreiter & Schmidhuber 1997 with a forget gate: c_t = f c_{t-1} + i g, h_t = o tanh(c_t)."""

    gates = ("i", "f", "o", "g")  # the three sigmoid gates side by side: one call for all of them
    has_cell = True

    def __init__(self, *args, forget_bias: float = 1.0, **kw) -> None:
        super().__init__(*args, **kw)
        self.params["b_f"][...] = forget_bias  # remember by default (Gers et al. 2000)
        self.signs = np.repeat(np.array([-1.0, -1.0, -1.0, 1.0], dtype=self.W.dtype), self.H)

    def sign(self) -> np.ndarray:
        return self.signs

    def begin(self, T: int, lead: tuple) -> None:
        shape = (T + 1, *lead, self.H)
        self.cs = np.empty(shape, dtype=self.z.dtype)  # cs[t] = c_{t-1}
        self.cs[0] = 0.0
        self.tc = np.empty((T, *lead, self.H), dtype=self.z.dtype)  # tanh(c_t)
        self.states = (self.hs, self.cs)

    def run(self, T: int, mm) -> None:
        """The time loop, written out: its views made once, the sigmoid gates' pre-activations held negated."""
        H, U, hs, cs, tc = self.H, self.Ur, self.hs, self.cs, self.tc
        A = self.z  # becomes the gate values i, f, o, g
        S, I, F, O, G = A[..., :3 * H], A[..., :H], A[..., H:2 * H], A[..., 2 * H:3 * H], A[..., 3 * H:]
        k = self.truncate
        for t in range(T):
            if k and t and t % k == 0:
                self.hold(t, self.computed)
            z = A[t]
            z += mm(hs[t], U)
            s = S[t]  # -a of i, f, o: sigma(a) = 1 / (1 + e^-a)
            np.exp(s, out=s)
            s += 1.0
            np.reciprocal(s, out=s)
            g = np.tanh(G[t], out=G[t])
            c = np.multiply(F[t], cs[t], out=cs[t + 1])
            c += I[t] * g
            np.multiply(O[t], np.tanh(c, out=tc[t]), out=hs[t + 1])

    CHUNK = 2**16  # entries per array of local derivatives computed at once: a few steps, kept in cache

    def local(self, t: int) -> list:
        """Step t's local derivatives, rows: dh->dc, dc->dz_i, dc->dz_f, dh->dz_o, dc->dz_g, dc->dc_prev.
        Backward asks for t = T-1 down to 0: they are computed for a few steps at once (``CHUNK``)."""
        lo = getattr(self, "chunk_lo", None)
        if lo is None or not lo <= t < self.chunk_hi or self.chunk_of is not self.z:
            self.local_chunk(t)
        k = t - self.chunk_lo
        return [rows[k] for rows in self.chunk]

    def local_chunk(self, t: int) -> None:
        """The local derivatives of steps lo..t, each row (steps, N, H)."""
        H, z = self.H, self.z
        lo = max(0, t + 1 - max(1, self.CHUNK // (z[0].size)))
        z, tc, c_prev = z[lo:t + 1], self.tc[lo:t + 1], self.cs[lo:t + 1]
        i, f, o, g = z[..., :H], z[..., H:2 * H], z[..., 2 * H:3 * H], z[..., 3 * H:]
        d = 1.0 - z[..., :3 * H]
        d *= z[..., :3 * H]  # sigma' = sigma (1 - sigma) of i, f, o at once
        d[..., :H] *= g  # c = f c_prev + i g
        d[..., H:2 * H] *= c_prev
        d[..., 2 * H:] *= tc  # h = o tanh(c)
        dtc = tc * tc
        np.subtract(1.0, dtc, out=dtc)
        dtc *= o
        dg = g * g
        np.subtract(1.0, dg, out=dg)
        dg *= i
        self.chunk = [dtc, d[..., :H], d[..., H:2 * H], d[..., 2 * H:], dg, f]
        self.chunk_lo, self.chunk_hi, self.chunk_of = lo, t + 1, self.z

    def step_back(self, dstate, local):
        dh, dc_next = dstate
        H = self.H
        dc = dh * local[0]  # through h = o tanh(c), plus from c_{t+1}
        dc += dc_next
        dz = self.into
        np.multiply(dc, local[1], out=dz[:, :H])  # d/dz_i
        np.multiply(dc, local[2], out=dz[:, H:2 * H])  # d/dz_f
        np.multiply(dh, local[3], out=dz[:, 2 * H:3 * H])  # d/dz_o
        np.multiply(dc, local[4], out=dz[:, 3 * H:])  # d/dz_g
        return (dz @ self.Up.T, dc * local[5]), dz

    def gate_means(self) -> dict[str, float]:
        """Mean of i, f, o over batch, units and steps of the last forward pass."""
        return gate_means(self.z, "ifo", self.H)

    def saturated(self):
        return None

    def dead(self):
        return None


class GRU(Recurrent):
    """Cho et al. 2014: r, z gates; n = tanh(x W_n + (r h_{t-1}) U_n + b_n); h_t = (1 - z) n + z h_{t-1}."""

    gates = ("r", "z", "n")

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.signs = np.repeat(np.array([-1.0, -1.0, 1.0], dtype=self.W.dtype), self.H)

    def sign(self) -> np.ndarray:
        return self.signs

    def begin(self, T: int, lead: tuple) -> None:
        self.rh = np.empty((T, *lead, self.H), dtype=self.z.dtype)  # r * h_{t-1}, what U_n multiplies
        self.states = (self.hs,)

    def step(self, t: int, mm) -> None:
        H, U = self.H, self.Ur
        h_prev, a = self.hs[t], self.z[t]  # a becomes the gate values r, z, n
        rz = a[..., :2 * H]  # -a of r and z: sigma(a) = 1 / (1 + e^-a)
        rz += mm(h_prev, U[..., :2 * H])
        np.exp(rz, out=rz)
        rz += 1.0
        np.reciprocal(rz, out=rz)
        r, z = rz[..., :H], rz[..., H:]
        rh = np.multiply(r, h_prev, out=self.rh[t])
        n = a[..., 2 * H:]
        n += mm(rh, U[..., 2 * H:])
        np.tanh(n, out=n)
        h = np.multiply(1.0 - z, n, out=self.hs[t + 1])
        h += z * h_prev

    def local(self, t: int) -> tuple:
        H, a = self.H, self.z[t]
        return self.hs[t], a[:, :H], a[:, H:2 * H], a[:, 2 * H:], self.rh[t]  # h_prev, r, z, n, rh

    def step_back(self, dstate, cache):
        dh = dstate[0]
        h_prev, r, z, n, rh = cache
        H, U = self.H, self.Up
        dz = self.into
        dzr, dzz, dzn = dz[:, :H], dz[:, H:2 * H], dz[:, 2 * H:]
        np.multiply(dh * (1.0 - z), 1.0 - n * n, out=dzn)  # through n
        drh = dzn @ U[:, 2 * H:].T
        np.multiply(drh * h_prev, r * (1.0 - r), out=dzr)
        np.multiply(dh * (h_prev - n), z * (1.0 - z), out=dzz)
        dh_prev = dh * z + drh * r + dz[:, :2 * H] @ U[:, :2 * H].T
        return (dh_prev,), dz

    def recurrent_grad(self, dz: np.ndarray) -> None:
        """U_r and U_z multiply h_{t-1}; U_n multiplies r * h_{t-1}."""
        T, N, G = dz.shape
        H, flat = self.H, dz.reshape(T * N, G)
        self.dU[:, :2 * H] = self.hs[:-1].reshape(T * N, H).T @ flat[:, :2 * H]
        self.dU[:, 2 * H:] = self.rh.reshape(T * N, H).T @ flat[:, 2 * H:]

    def gate_means(self) -> dict[str, float]:
        return gate_means(self.z, "rz", self.H)

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
