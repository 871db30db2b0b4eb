"""Objectives: J as a function of one tensor, evaluated on K perturbed copies at once.

Rather than a full forward pass per entry, an objective re-runs only the layers from the
perturbed one to the loss (every built-in layer broadcasts over a leading axis of copies).
Kinks are found by comparing the "winners" (ReLU masks) of every perturbed copy with those at theta.
"""
from __future__ import annotations

import numpy as np

from ..nn import Dense, MLP, Loss, Module
from ..nn.conv import Conv2d
from ..nn.module import l2_applies
from . import fast
from .differences import CHUNK_ROWS, NOISE_POINTS, SAFETY, _ladder, chunks, noise, stack_at

def _rms(arr: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(arr, dtype=np.float64)))) if arr.size else 0.0


def _resolvable(scale: float, dtype) -> float:
    """u^(1/3) spacings of ``scale`` (u the unit round-off): rounding the moved value then costs u^(1/3) of the
    step, what the default eps allows for truncation (6e-6 in float64, 5e-3 in float32)."""
    u = float(np.finfo(dtype).eps)
    return u ** (2.0 / 3.0) * scale


class NetObjective:
    """J(theta, x) = scale * loss(model(x), y) + l2/2 sum ||W||^2, in training mode with frozen dropout."""

    def __init__(self, model: MLP, loss: Loss, x: np.ndarray, y: np.ndarray, l2: float = 0.0, scale: float = 1.0):
        self.model, self.loss, self.x, self.l2, self.scale = model, loss, x, l2, scale
        self.y = model.targets(y)
        self.owner = {f"{m.name}.{k}": (m, k) for m in model.modules() for k in m.params}
        self.layer_of = dict(model.param_layer)
        self.kink_modules = [(l, m) for l, layer in enumerate(model.layers, 1) for m in layer.modules if m.kinks]
        freeze(model, x)
        self.analytic()  # the reference pass at theta

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {**self.model.params, "input": self.x}

    def layer(self, name: str) -> int | None:
        return self.layer_of.get(name)

    def value(self) -> float:
        return float(self.values("input", self.x[None])[0][0])

    def analytic(self) -> dict[str, np.ndarray]:
        """dJ/dtheta for every parameter and dJ/dx, from the model's backward pass."""
        J = self.model.loss_and_grads(self.x, self.y, self.loss, self.l2, train=True)
        self.J = self.scale * J
        grads = {k: self.scale * g for k, g in self.model.grads.items()}
        grads["input"] = self.scale * self.model.input_grad
        self._reference()
        return grads

    def _reference(self) -> None:
        """Winners and layer states at theta (the last forward pass was at theta)."""
        self.states = list(self.model.states)
        self.dense_out: dict[int, np.ndarray] = {}
        self.masks = {id(m): m.mask.copy() for _, m in self.kink_modules}
        self.sq = {k: float(np.vdot(W, W)) for k, W in self.model.params.items() if l2_applies(k)}
        self.out_rms = {}  # the scale of what a step in a dense b moves: that module's output at theta
        for layer in self.model.layers:
            for m, inp in zip(layer.modules, layer.inputs):
                if any(fast.moves(m, k) == "output" for k in m.params):
                    self.out_rms[id(m)] = _rms(m.forward(inp, True))

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K perturbed copies of one tensor, stack: (K, *shape) -> (J (K,), kink crossed (K,))."""
        start = 1 if name == "input" else self.layer_of[name]
        tail = [m for layer in self.model.layers[start - 1:] for m in layer.modules]
        if all(fast.takes_copies(m) for m in tail):
            z = self._forward(name, stack, start)
            J = self.loss.value(z, self.y)
            kinked = self._kinked(start, len(stack))
        else:  # a module that cannot take K copies at once: one copy at a time
            pairs = [self.values_one(name, s, start) for s in stack]
            J, kinked = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        J = self.scale * J
        if self.l2:
            J = J + 0.5 * self.l2 * self._sum_sq(name, stack)
        return J, kinked

    def values_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K copies, copy k with entry ``flat[k]`` of the tensor moved by ``delta[k]``."""
        if self.packs(name):
            return self._packed(flat, delta)
        module, key = self.owner.get(name, (None, None))
        start = self.layer_of.get(name, 1)
        tail = [m for layer in self.model.layers[start - 1:] for m in layer.modules]
        if name == "input":  # an input entry moves the first dense or conv output where its weights reach
            module, key = tail[0], "input"
        if not (fast.fast_path(module) and module is tail[0] and all(fast.takes_copies(m) for m in tail)):
            return self.values(name, stack_at(self.targets[name], flat, delta))
        h = self.states[start][0]
        z = self._tail_after(start, fast.perturb(module, key, flat, delta, h), fast.column(module, key, flat))
        J = self.scale * self.loss.value(z, self.y)
        if self.l2:
            J = J + 0.5 * self.l2 * self._sum_sq_at(name, flat, delta)
        return J, self._kinked(start, len(flat))

    def packs(self, name: str) -> int:
        """Into how many groups entries of ``name`` fall whose entries share a copy (``fast.packing``), 0 for
        none: the input's samples, when every module keeps samples apart and the loss is a mean of per-sample
        terms."""
        ok = name == "input" and self.x.ndim >= 2 and fast.separable(self.model.modules())
        return len(self.x) if ok else 0

    def group_of(self, name: str, flat: np.ndarray) -> np.ndarray:
        return flat // (self.x.size // len(self.x))

    def _packed(self, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``values_at`` of the input, entries of different samples moved in the same copy."""
        n = len(self.x)
        sample = self.group_of("input", flat)
        slot, copies = fast.packing(sample)
        z = self.model.forward(fast.packed_stack(self.x, flat, delta, slot, copies), True)
        shares = self.loss.terms(z, self.y).reshape(copies, n, -1).sum(axis=2)
        crossed = np.zeros((copies, n), dtype=bool)
        for _, m in self.kink_modules:
            crossed |= fast.sample_crossed(m.mask, self.masks[id(m)], copies, n)
        rows = self._rows_at_theta()
        J = (rows.sum() + (shares[slot, sample] - rows.reshape(n, -1).sum(axis=1)[sample])) / rows.size
        J = self.scale * J
        if self.l2:
            J = J + 0.5 * self.l2 * sum(self.sq.values())
        return J, crossed[slot, sample]

    def _rows_at_theta(self) -> np.ndarray:
        """The loss's per-row terms at theta, computed once."""
        if not hasattr(self, "rows0"):
            self.rows0 = self.loss.terms(self.model.forward(self.x, True), self.y)
        return self.rows0

    def _tail_after(self, l: int, dense_out: np.ndarray, j: np.ndarray | None) -> np.ndarray:
        """Logits of K copies whose layer-l dense outputs are ``dense_out`` (K, N, D).

        When copy k moved only column ``j[k]`` of them, layer l's other modules keep the change
        in that column, so layer l+1's product is a rank-1 update of its value at theta.
        """
        model = self.model
        skip = self.states[l][1]
        layer = model.layers[l - 1]
        out = layer.forward(dense_out, True, start=1)
        if l in model.block_end:
            out = out + skip[l]
        if l == len(model.layers):
            return out
        nxt = model.layers[l]
        h_next, skip_next = self.states[l + 1]
        skip_next = dict(skip_next)
        if l + 1 in model.block_start:  # the block starting at l+1 keeps the perturbed input
            skip_next[model.block_start[l + 1]] = out
        first = nxt.modules[0]
        if j is None or not fast.keeps_channel(layer.modules[1:]):
            return model.forward(out, True, start=l + 1, skip=skip_next)
        k = np.arange(len(j))
        if type(first) is Dense and out.ndim == 3:
            z0 = self._dense_out(l + 1)
            W = first.params["W"]
            change = out[k, :, j] - h_next[:, j].T  # (K, N): the one column that moved
            z = z0[None] + change[:, :, None] * W[j][:, None, :]
            return model.forward(z, True, start=l + 1, skip=skip_next, module=1)
        if type(first) is Conv2d and out.ndim == 5:  # one channel moved: a convolution of that channel alone
            change = out[k, ..., j] - np.moveaxis(h_next[..., j], -1, 0)  # (K, N, H, W)
            z = self._conv_out(l + 1)[None] + fast.one_channel(first, change, j)
            return model.forward(z, True, start=l + 1, skip=skip_next, module=1)
        return model.forward(out, True, start=l + 1, skip=skip_next)

    def _conv_out(self, l: int) -> np.ndarray:
        """Layer l's convolution output at theta, (N, Ho, Wo, C_out), computed once."""
        if l not in self.dense_out:
            self.dense_out[l] = self.model.layers[l - 1].modules[0].forward(self.states[l][0], True).copy()
        return self.dense_out[l]

    def min_step(self, name: str) -> float:
        """The smallest step that still shows where it lands: a tensor added to a module's output as it is
        (a dense b) must move that output by u^(-1/3) of its float spacings (a b of 0 beside z of 1e16
        moved by 1e-5 moves nothing); 0 for the rest."""
        module, key = self.owner.get(name, (None, None))
        if module is not None and fast.moves(module, key) == "output":
            return _resolvable(self.out_rms.get(id(module), 0.0), self.targets[name].dtype)
        return 0.0

    def column_numeric(self, name: str, eps: float, one_sided: bool = False, entries: int | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The numerical gradient of a whole dense W or b, from two evaluations per output column, its
        bound per entry, and which entries it cannot vouch for (bool, of the tensor's shape).

        W[i, j] and b[j] move only column j of z = x W + b, by eps x[:, i] and eps. When every
        sample's loss depends on its own row only (no batch norm in training mode) and the tail
        is smooth, sample n's centred difference in z[n, j], D[n, j], gives
        dJ/db[j] = sum_n D[n, j] exactly as entry-by-entry differences of J would, and
        dJ/dW[i, j] = sum_n x[n, i] D[n, j] up to O(eps^2), the centred difference's own
        truncation error. A tail with kinks (ReLU-like units) is smooth for sample n wherever its winners
        stay put: the step in z[n, j] is made at least as large as any entry's (h |x[n, i]|), and an entry
        is left to the caller (``unsure``) when a sample it moves changed a winner under that step, so it is
        differenced entry by entry and its kink graded as such. None where the columns do not hold (batch
        norm, a layer of yours, a tensor not the first of its layer) or cost more than ``entries`` entries.

        The bound: the per-sample losses' measured round-off over the step, and what rounding z + eps
        to floats moves each D by (spacing(z) / 2 over eps), summed over the samples with |x[n, i]|.
        """
        module, key = self.owner.get(name, (None, None))
        l = self.layer_of.get(name, 1)
        tail = [m for layer in self.model.layers[l - 1:] for m in layer.modules]
        if any(m.couples_samples for m in tail):
            return self.chained_numeric(name, eps, one_sided, entries)
        if not isinstance(module, Dense) or key not in ("W", "b") or not fast.fast_path(module):
            return None
        if module is not tail[0] or not all(m.batched for m in tail):
            return None
        kinks = any(m.kinks for m in tail)
        if kinks and not fast.separable(tail):  # a winner of sample n must be sample n's own
            return None
        h = self.states[l][0]
        cols = np.arange(module.params["W"].shape[1])
        if entries is not None and entries < len(cols) + NOISE_POINTS:
            return None  # fewer entries than columns: entry by entry is cheaper
        w_step = eps
        eps = max(eps, _resolvable(_rms(self._dense_out(l)), h.dtype))  # the step in z must show in z
        if kinks and key == "W":  # no entry moves z[n, j] further than the column's step
            eps = max(eps, w_step * float(np.abs(h).max(initial=0.0)))
        signs = (eps,) if one_sided else (eps, -eps)
        ladder = _ladder(eps)  # the round-off probe rides along: column D // 2 at k eps, k = -4..4
        flat = np.concatenate([np.tile(cols, len(signs)), np.full(len(ladder), len(cols) // 2)])
        delta = np.concatenate([np.repeat(signs, len(cols)), ladder])
        parts = [self._sample_losses(l, fast.shift(module, flat[c], delta[c], h), flat[c])
                 for c in chunks(len(flat), max(1, CHUNK_ROWS // len(h)))]
        terms, crossed = (np.concatenate(p) for p in zip(*parts))
        terms, probe = terms[: len(terms) - len(ladder)], terms[len(terms) - len(ladder):]
        crossed, probe_crossed = crossed[: len(terms)], crossed[len(terms):]
        if one_sided:
            base = self.loss.terms(self.model.forward(self.x, True), self.y)
            D = (terms - base) / eps
            moved = crossed  # (D, N)
        else:
            D = (terms[: len(cols)] - terms[len(cols):]) / (2 * eps)
            moved = crossed[: len(cols)] | crossed[len(cols):]
        D = self.scale * D.T / len(h)  # (N, D): sample n's share of dJ/dz[n, j]
        z = self._dense_out(l)
        calm = ~probe_crossed.any(axis=0)  # samples whose round-off probe changed no winner
        sigma = noise(probe.T[calm] if calm.any() else probe.T[:, NOISE_POINTS // 2:][:, :1], z.dtype)
        per_sample = SAFETY * self.scale * sigma / eps / len(h)  # round-off of (t+ - t-) / (2 eps N), 3 sigma
        rounding = np.abs(D) * np.spacing(np.abs(z)).astype(np.float64) / eps  # (N, D)
        slack = per_sample + rounding
        if key == "b":
            return D.sum(axis=0), slack.sum(axis=0), moved.any(axis=1)
        numeric, bound = h.T @ D, np.abs(h).T @ slack
        unsure = (h != 0).T.astype(np.float64) @ moved.T.astype(np.float64) > 0  # (fan_in, D)
        if self.l2 and l2_applies(name):  # the penalty, centred: l2/2 ((w + eps)^2 - (w - eps)^2) / (2 eps)
            W = module.params["W"]
            numeric = numeric + 0.5 * self.l2 * ((W + w_step) ** 2 - (W - w_step) ** 2) / (2 * w_step)
        return numeric, bound, unsure

    def chained_numeric(self, name: str, eps: float, one_sided: bool = False, entries: int | None = None
                        ) -> tuple[np.ndarray, None, np.ndarray] | None:
        """The numerical gradient of a whole tensor of a net whose samples are coupled (batch norm), by the
        chain of each layer's own centred differences (``chain``): a dense W_l from x_l^T G_l, its b from the
        sum of G_l over the samples, the input from G_1 W_1^T, a batch norm's gamma and beta (any parameter of
        a module after the dense) from the differences of the layer's output when every entry j moves at once,
        against dJ/d(output). The same numbers as entry-by-entry differences of J up to O(eps^2) (each a
        centred difference). The bound is left to the caller (None); nothing is left unsure. None where the
        chain does not hold: residual blocks, a layer of yours, a winner that changed (kinks: entry by entry),
        one-sided differences, or fewer entries than it costs copies."""
        model = self.model
        n = len(self.x)
        if one_sided or model.block_start or (entries is not None and entries < 2 * n):
            return None
        if not all(type(layer.modules[0]) is Dense and fast.columnwise(layer.modules[1:]) for layer in model.layers):
            return None
        chain = self.chain(eps)
        if chain is None:
            return None
        G, dA = chain
        if name == "input":
            numeric = G[1] @ model.layers[0].modules[0].params["W"].T
            return numeric, None, np.zeros(numeric.shape, dtype=bool)
        module, key = self.owner[name]
        l = self.layer_of[name]
        if module is model.layers[l - 1].modules[0]:
            if key == "b":
                numeric = G[l].sum(axis=0)
            else:
                numeric = self.states[l][0].T @ G[l]
                if self.l2 and l2_applies(name):
                    W = module.params["W"]
                    numeric = numeric + 0.5 * self.l2 * ((W + eps) ** 2 - (W - eps) ** 2) / (2 * eps)
            return numeric, None, np.zeros(numeric.shape, dtype=bool)
        layer = model.layers[l - 1]
        i = layer.modules.index(module)
        layer.forward(self._dense_out(l), True, start=1)
        inp = layer.inputs[i]
        value = module.params[key]
        with fast.rebound(module, key, np.stack([value + eps, value - eps])):
            out = layer.forward(inp, True, start=i)
        numeric = np.sum((out[0] - out[1]) * dA[l], axis=0) / (2 * eps)
        return numeric, None, np.zeros(numeric.shape, dtype=bool)

    def chain(self, eps: float) -> tuple[dict, dict] | None:
        """(G, dA): the numerical dJ/dz_l (N, D_l) of every layer's dense output, from the top down, and
        dJ/da_l = G_{l+1} W_{l+1}^T of every layer's output below the last. G of the last layer: the loss's
        per-sample centred differences in each logit column; G_l: the layer's own centred differences, z_l[n, :]
        moved by +-h in every column at once (its modules after the dense go column by column), against dA_l.
        None when a winner changed under a step. Computed once per step."""
        cache = self.__dict__.setdefault("chains", {})
        if eps in cache:
            return cache[eps]
        model, L = self.model, len(self.model.layers)
        G, dA = {}, {}
        z = self._dense_out(L)
        h = max(eps, _resolvable(_rms(z), z.dtype))
        C, n = z.shape[1], len(z)
        cols = np.arange(C)
        stack = np.repeat(z[None], 2 * C, axis=0)
        stack[cols, :, cols] += h
        stack[C + cols, :, cols] -= h
        terms = self.loss.terms(model.layers[L - 1].forward(stack, True, start=1), self.y)
        G[L] = self.scale * ((terms[:C] - terms[C:]) / (2 * h)).T / terms.shape[1]
        rows = np.arange(n)
        for l in range(L - 1, 0, -1):
            dA[l] = G[l + 1] @ model.layers[l].modules[0].params["W"].T
            z = self._dense_out(l)
            h = max(eps, _resolvable(_rms(z), z.dtype))
            stack = np.repeat(z[None], 2 * n, axis=0)
            stack[rows, rows, :] += h
            stack[n + rows, rows, :] -= h
            out = model.layers[l - 1].forward(stack, True, start=1)
            if any(fast.copies_crossed(m.mask, self.masks[id(m)], 2 * n).any()
                   for at, m in self.kink_modules if at == l):
                cache[eps] = None
                return None
            G[l] = np.einsum("nmj,mj->nj", out[:n] - out[n:], dA[l]) / (2 * h)
        cache[eps] = (G, dA)
        return cache[eps]

    def _sample_losses(self, l: int, dense_out: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample losses (K, N) of K copies whose layer-l dense outputs are ``dense_out``, and which
        sample of which copy changed a winner (K, N)."""
        terms = self.loss.terms(self._tail_after(l, dense_out, j), self.y)
        crossed = np.zeros(terms.shape, dtype=bool)
        for at, m in self.kink_modules:
            if at >= l:
                crossed |= fast.sample_crossed(m.mask, self.masks[id(m)], len(terms), terms.shape[1])
        return terms, crossed

    def _dense_out(self, l: int) -> np.ndarray:
        """Layer l's dense output at theta, (N, fan_out), computed once."""
        if l not in self.dense_out:
            dense = self.model.layers[l - 1].modules[0]
            W, b = dense.params["W"], dense.params.get("b")
            self.dense_out[l] = self.states[l][0] @ W + (b if b is not None else 0.0)
        return self.dense_out[l]

    def _sum_sq_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> np.ndarray:
        total = sum(self.sq.values())
        if name not in self.sq:
            return np.full(len(flat), total)
        w = self.targets[name].reshape(-1)[flat]
        return total + 2 * w * delta + delta * delta  # (w + d)^2 - w^2

    def values_one(self, name: str, value: np.ndarray, start: int) -> tuple[float, bool]:
        z = self._forward(name, value, start)
        return float(self.loss.value(z, self.y)), bool(self._kinked(start, 1)[0])

    def _forward(self, name: str, stack: np.ndarray, start: int) -> np.ndarray:
        if name == "input":
            return self.model.forward(stack, True)
        module, key = self.owner[name]
        with fast.rebound(module, key, stack):
            h, skip = self.states[start]
            return self.model.forward(h, True, start=start, skip=skip)

    def _kinked(self, start: int, k: int) -> np.ndarray:
        crossed = np.zeros(k, dtype=bool)
        for l, m in self.kink_modules:
            if l >= start:
                crossed |= fast.copies_crossed(m.mask, self.masks[id(m)], k)
        return crossed

    def _sum_sq(self, name: str, stack: np.ndarray) -> np.ndarray:
        total = sum(self.sq.values())
        if name not in self.sq:
            return np.full(len(stack), total)
        return total - self.sq[name] + np.sum(stack * stack, axis=tuple(range(1, stack.ndim)))


def module_label(module: Module, layer: int | None) -> str:
    """A module's name in messages: its own, or its class and layer (``laststep2``) when it has none."""
    return module.name or f"{type(module).__name__.lower()}{layer if layer is not None else ''}"


class ModuleObjective:
    """A module alone: J = sum(forward(x) * r) for a fixed random r, so dJ/dout = r."""

    def __init__(self, module: Module, x: np.ndarray, rng: np.random.Generator, layer: int | None = None):
        self.module, self.x, self.layer_index = module, x, layer
        self.name = module_label(module, layer)
        self.r = rng.standard_normal(module.forward(x, True).shape)
        self.kink = module.kinks

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {**{f"{self.name}.{k}": v for k, v in self.module.params.items()}, f"{self.name}.input": self.x}

    def layer(self, name: str) -> int | None:
        return self.layer_index

    def min_step(self, name: str) -> float:
        """As ``NetObjective.min_step``: a dense b must move the output by u^(-1/3) of its float spacings."""
        key = name.rsplit(".", 1)[1]
        if key != "input" and fast.moves(self.module, key) == "output":
            return _resolvable(_rms(self.module.forward(self.x, True)), self.targets[name].dtype)
        return 0.0

    def analytic(self) -> dict[str, np.ndarray]:
        out = self.module.forward(self.x, True)
        self.module_out0 = out.copy()
        self.J = float(np.sum(out * self.r))
        dx = self.module.backward(self.r.copy())
        self.mask = self.module.mask.copy() if self.kink else None
        grads = {f"{self.name}.{k}": g.copy() for k, g in self.module.grads.items()}
        grads[f"{self.name}.input"] = dx
        return grads

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not fast.takes_copies(self.module):
            pairs = [self._one(name, s) for s in stack]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        out = self._forward(name, stack)
        J = np.sum(out * self.r, axis=tuple(range(1, out.ndim)))
        return J, self._kinked(len(stack))

    def packs(self, name: str) -> int:
        """Into how many groups input entries fall whose entries share a copy (``fast.packing``), 0 for none:
        J = sum(forward(x) * r) is a sum of per-sample shares for a module that keeps samples apart, and of
        per-column shares for one that keeps columns apart (batch norm, on (N, D))."""
        if not name.endswith(".input") or self.x.ndim < 2:
            return 0
        if fast.separable([self.module]):
            return len(self.x)
        return self.x.shape[-1] if self.x.ndim in (2, 4) and fast.columnwise([self.module]) else 0

    def group_of(self, name: str, flat: np.ndarray) -> np.ndarray:
        if fast.separable([self.module]):
            return flat // (self.x.size // len(self.x))
        return flat % self.x.shape[-1]  # a channel: the last axis, of (N, D) or of images (N, H, W, C)

    def _packed(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        groups, group = self.packs(name), self.group_of(name, flat)
        slot, copies = fast.packing(group)
        out = self.module.forward(fast.packed_stack(self.x, flat, delta, slot, copies), True)
        share, base = out * self.r, self.module_out0 * self.r
        if fast.separable([self.module]):
            shares, base_shares = share.reshape(copies, groups, -1).sum(axis=2), base.reshape(groups, -1).sum(axis=1)
        else:
            shares = share.reshape(copies, -1, groups).sum(axis=1)
            base_shares = base.reshape(-1, groups).sum(axis=0)
        J = base.sum() + (shares[slot, group] - base_shares[group])
        if not self.kink:
            return J, np.zeros(len(flat), dtype=bool)
        changed = self.module.mask != self.mask
        per_group = (changed.reshape(copies, groups, -1).any(axis=2) if fast.separable([self.module])
                     else changed.reshape(copies, -1, groups).any(axis=1))
        return J, per_group[slot, group]

    def values_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = name.rsplit(".", 1)[1]
        if self.packs(name):
            return self._packed(name, flat, delta)
        if not fast.fast_path(self.module):
            return self.values(name, stack_at(self.targets[name], flat, delta))
        if type(self.module) is Dense and key in ("W", "b"):  # one output column moves: J changes by its share
            j = fast.column(self.module, key, flat)
            col = fast.dense_moved_column(self.module, key, flat, delta, self.x, self.module_out0)
            share = self.module_out0 * self.r
            J = share.sum() + (np.sum(col * self.r[:, j].T, axis=1) - share.sum(axis=0)[j])
            return J, np.zeros(len(flat), dtype=bool)
        out = fast.perturb(self.module, key, flat, delta, self.x)
        return np.sum(out * self.r, axis=tuple(range(1, out.ndim))), self._kinked(len(flat))

    def _one(self, name, value):
        out = self._forward(name, value)
        return float(np.sum(out * self.r)), bool(self._kinked(1)[0])

    def _forward(self, name: str, stack: np.ndarray) -> np.ndarray:
        if name.endswith(".input"):
            return self.module.forward(stack, True)
        with fast.rebound(self.module, name.rsplit(".", 1)[1], stack):
            return self.module.forward(self.x, True)

    def _kinked(self, k: int) -> np.ndarray:
        if not self.kink:
            return np.zeros(k, dtype=bool)
        return fast.copies_crossed(self.module.mask, self.mask, k)


class LossObjective:
    """The loss alone, as a function of the logits z at theta: J(z) = scale * loss(z, y); its analytic
    gradient is the loss's backward. Names the loss when its backward is wrong."""

    def __init__(self, loss: Loss, z: np.ndarray, y: np.ndarray, scale: float = 1.0):
        self.loss, self.z, self.y, self.scale = loss, z, y, scale
        self.name = f"loss({loss.name})" if loss.name else "loss"
        self.x = z  # chunk sizes count its rows

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {f"{self.name}.input": self.z}

    def layer(self, name: str) -> int | None:
        return None

    def analytic(self) -> dict[str, np.ndarray]:
        self.J = self.scale * float(self.loss.forward(self.z, self.y))
        return {f"{self.name}.input": self.scale * np.array(self.loss.backward(), dtype=self.z.dtype)}

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.scale * np.asarray(self.loss.value(stack, self.y)), np.zeros(len(stack), dtype=bool)


def freeze(model: MLP, x: np.ndarray) -> bool:
    """Hold what a forward pass draws or cuts at its values at theta: dropout masks, and the
    chunk-start states of truncated BPTT (so J's gradient is the truncated one backward computes).
    Returns True if anything was frozen."""
    held = [m for m in model.modules() if hasattr(m, "frozen")]
    for m in held:
        m.frozen = False
    if held:
        model.forward(x, True)
        for m in held:
            m.frozen = True
    return bool(held)
