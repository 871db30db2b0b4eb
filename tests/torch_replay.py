"""The torch side of the replay test: gradlab's nets, losses, optimizers and clipping rebuilt in float64
from torch primitives, with torch.autograd for every gradient.

Nothing here runs gradlab's layers, losses, optimizers or clipping. The config says what to build (read
the way the README documents its keys), the run's params_init.npz gives the starting weights by name, and
gradlab supplies only what is random rather than computed: the data set, the batch order and the dropout
masks. ``replay`` returns, for every logged step, the numbers gradlab writes to its CSV files, computed the
torch way, keyed as ``test_torch_oracle.logged`` keys gradlab's own rows.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64
BN_MOMENTUM, BN_EPS = 0.1, 1e-5  # gradlab/nn/norm.py: the new batch statistic weighs 0.1, as in torch


def as_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(a))


def keep_grad(h: torch.Tensor) -> torch.Tensor:
    """Keep dL/dh after backward (delta_norm, ||dL/dh_t||); a no-op outside autograd (eval mode)."""
    if h.requires_grad:
        h.retain_grad()
    return h


# --------------------------------------------------------------------------- activations (z, alpha) -> phi(z)

ACTIVATIONS = {
    "linear": lambda z, alpha: z,
    "sigmoid": lambda z, alpha: torch.sigmoid(z),
    "tanh": lambda z, alpha: torch.tanh(z),
    "relu": lambda z, alpha: torch.relu(z),
    "leaky_relu": lambda z, alpha: F.leaky_relu(z, alpha),
    "prelu": lambda z, alpha: F.prelu(z, alpha),  # alpha: the learned slope per unit, (D,)
    "elu": lambda z, alpha: F.elu(z, alpha),
    # torch's default threshold 20 turns softplus into the identity beyond z = 20, off by log1p(e^-20) = 2e-9,
    # which the replay's 1e-10 would see; beyond 40 the difference is below one ulp
    "softplus": lambda z, alpha: F.softplus(z, threshold=40.0),
    "softsign": lambda z, alpha: F.softsign(z),
}


# --------------------------------------------------------------------------- nets

class Net:
    """Named leaf tensors (``dense3.W``, ``lstm1.U_g``), the logged layer of each, and a forward pass that
    keeps each layer's output (for delta_norm) and its activation statistics' source."""

    def __init__(self, init: dict[str, np.ndarray], names: list[str], layer_of: dict[str, int]) -> None:
        assert sorted(init) == sorted(names), f"params_init.npz holds {sorted(init)}, the config says {sorted(names)}"
        self.params = {k: as_tensor(init[k]).clone().requires_grad_(True) for k in names}
        self.layer_of = layer_of
        self.outputs: dict[int, torch.Tensor] = {}  # layer -> its output (the input of the next layer)
        self.acts: dict[int, torch.Tensor] = {}  # layer -> what act_mean / act_std describe
        self.steps: dict[int, list[torch.Tensor]] = {}  # recurrent layer -> h_t for t = 1..T
        self.gates: dict[int, dict[str, torch.Tensor]] = {}  # recurrent layer -> gate -> mean over the pass

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y


class MLP(Net):
    """depth hidden layers of x W (+ b), [batch norm], activation, [dropout]; skip connections F(x) + x
    around every block of k hidden layers from layer 2 on (README, model.residual); a dense output layer."""

    def __init__(self, model, init: dict[str, np.ndarray], masks: dict[str, list[np.ndarray]]) -> None:
        self.depth, self.bn, self.p = model.depth, model.batchnorm, model.dropout
        self.phi, self.alpha = ACTIVATIONS[model.activation.name], model.activation.alpha
        self.prelu = model.activation.name == "prelu"
        k = 2 if model.residual is True else int(model.residual or 0)
        self.block_end = {s: min(s + k - 1, self.depth) for s in range(2, self.depth + 1, k)} if k else {}
        self.masks = masks
        names, layer_of = [], {}
        for l in range(1, self.depth + 2):
            hidden = l <= self.depth
            own = [f"dense{l}.W"] + ([] if hidden and self.bn else [f"dense{l}.b"])  # batch norm's beta is the bias
            own += [f"bn{l}.gamma", f"bn{l}.beta"] if hidden and self.bn else []
            own += [f"prelu{l}.alpha"] if hidden and self.prelu else []
            names += own
            layer_of.update(dict.fromkeys(own, l))
        super().__init__(init, names, layer_of)
        width = model.width
        self.running = {l: (torch.zeros(width, dtype=DTYPE), torch.ones(width, dtype=DTYPE))
                        for l in range(1, self.depth + 1)}

    def forward(self, x: torch.Tensor, train: bool, step: int) -> torch.Tensor:
        """x: (N, n_in) -> logits (N, n_out)."""
        P, h, pending = self.params, x, {}
        for l in range(1, self.depth + 2):
            if l in self.block_end:
                pending[self.block_end[l]] = h  # the block's input, added back at its end
            z = h @ P[f"dense{l}.W"]
            if f"dense{l}.b" in P:
                z = z + P[f"dense{l}.b"]
            if l <= self.depth:
                h = self.hidden(l, z, train, step)
            else:
                h = self.acts[l] = z
            if l in pending:
                h = h + pending.pop(l)
            self.outputs[l] = keep_grad(h)
        return h

    def hidden(self, l: int, z: torch.Tensor, train: bool, step: int) -> torch.Tensor:
        P = self.params
        if self.bn:  # batch statistics in training (updating the running ones in place), running ones in eval
            mean, var = self.running[l]
            z = F.batch_norm(z, mean, var, P[f"bn{l}.gamma"], P[f"bn{l}.beta"], training=train,
                             momentum=BN_MOMENTUM, eps=BN_EPS)
        a = self.acts[l] = self.phi(z, P[f"prelu{l}.alpha"] if self.prelu else self.alpha)
        if self.p and train:  # inverted dropout with gradlab's mask of this step
            keep = as_tensor(self.masks[f"dropout{l}"][step]).to(DTYPE)
            a = a * keep / (1.0 - self.p)
        return a


def vanilla(phi):
    def cell(x_t, state, p):
        (h,) = state
        return (phi(x_t @ p("W") + h @ p("U") + p("b"), None),), {}
    return cell


def lstm(x_t, state, p):
    """c_t = f c_{t-1} + i g, h_t = o tanh(c_t); each gate its own W_g, U_g, b_g."""
    h, c = state
    pre = {g: x_t @ p("W", g) + h @ p("U", g) + p("b", g) for g in "ifog"}
    i, f, o = (torch.sigmoid(pre[g]) for g in "ifo")
    c = f * c + i * torch.tanh(pre["g"])
    return (o * torch.tanh(c), c), {"i": i, "f": f, "o": o}


def gru(x_t, state, p):
    """gradlab's documented GRU (gradlab/nn/recurrent.py, Cho et al. 2014): the reset gate scales h_{t-1}
    BEFORE U_n, n = tanh(x W_n + (r h_{t-1}) U_n + b_n), and h_t = (1 - z) n + z h_{t-1}. (torch.nn.GRU
    uses the other convention, n = tanh(x W_n + b_in + r (h_{t-1} U_n + b_hn)), so it is not used here.)"""
    (h,) = state
    r = torch.sigmoid(x_t @ p("W", "r") + h @ p("U", "r") + p("b", "r"))
    z = torch.sigmoid(x_t @ p("W", "z") + h @ p("U", "z") + p("b", "z"))
    n = torch.tanh(x_t @ p("W", "n") + (r * h) @ p("U", "n") + p("b", "n"))
    return ((1.0 - z) * n + z * h,), {"r": r, "z": z}


CELLS = {  # cell -> (name prefix, gates, state size, step function)
    "vanilla": ("rnn", ("",), 1, None),
    "lstm": ("lstm", tuple("ifog"), 2, lstm),
    "gru": ("gru", tuple("rzn"), 1, gru),
}


class RNN(Net):
    """num_layers recurrent layers from h_0 = 0 (c_0 = 0), then a dense read-out at the last step or at every
    step. Truncated BPTT: the state is carried into each chunk of k steps, detached at its start."""

    def __init__(self, model, init: dict[str, np.ndarray], per_step: bool, truncate: int | None) -> None:
        self.prefix, self.gate_names, self.n_state, step = CELLS[model.cell]
        self.cell = step or vanilla(ACTIVATIONS[model.activation])
        self.n, self.H, self.per_step, self.truncate = model.num_layers, model.hidden, per_step, truncate
        names, layer_of = [], {}
        for l in range(1, self.n + 1):
            own = [self.key(l, kind, g) for kind in "WUb" for g in self.gate_names]
            names += own
            layer_of.update(dict.fromkeys(own, l))
        head = [f"dense{self.n + 1}.W", f"dense{self.n + 1}.b"]
        layer_of.update(dict.fromkeys(head, self.n + 1))
        super().__init__(init, names + head, layer_of)

    def key(self, l: int, kind: str, gate: str = "") -> str:
        return f"{self.prefix}{l}.{kind}_{gate}" if gate else f"{self.prefix}{l}.{kind}"

    def targets(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(-1) if self.per_step else y  # (N, T) -> (N * T,), row n * T + t

    def forward(self, x: torch.Tensor, train: bool, step: int) -> torch.Tensor:
        """x: (N, T, D) -> logits (N, n_out), or (N * T, n_out) with a read-out at every step."""
        seq = x
        for l in range(1, self.n + 1):
            seq = self.outputs[l] = self.acts[l] = keep_grad(self.layer(l, seq))
        L = self.n + 1
        head = seq.reshape(-1, self.H) if self.per_step else seq[:, -1]
        z = head @ self.params[f"dense{L}.W"] + self.params[f"dense{L}.b"]
        self.outputs[L] = self.acts[L] = keep_grad(z)
        return z

    def layer(self, l: int, seq: torch.Tensor) -> torch.Tensor:
        """seq (N, T, D) -> h (N, T, H), keeping every h_t and the mean of every gate."""
        N, T, _ = seq.shape
        state = tuple(torch.zeros(N, self.H, dtype=DTYPE) for _ in range(self.n_state))
        p = lambda kind, gate="": self.params[self.key(l, kind, gate)]  # noqa: E731
        hs, gates = [], {}
        for t in range(T):
            if self.truncate and t > 0 and t % self.truncate == 0:
                state = tuple(s.detach() for s in state)  # the gradient stops at the chunk start
            state, g = self.cell(seq[:, t], state, p)
            hs.append(keep_grad(state[0]))
            for name, value in g.items():
                gates.setdefault(name, []).append(value.detach())
        self.steps[l] = hs
        self.gates[l] = {name: torch.stack(v).mean() for name, v in gates.items()}
        return torch.stack(hs, dim=1)


def build(config, init: dict[str, np.ndarray], per_step: bool, masks: dict) -> Net:
    model = config.model
    if model.kind == "rnn":
        truncate = config.train.bptt.truncate if config.train.bptt else None
        return RNN(model, init, per_step, truncate)
    return MLP(model, init, masks)


# --------------------------------------------------------------------------- loss, L2, optimizer, clipping

def data_loss(name: str, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch mean of bce (one logit), softmax cross-entropy, or the squared error summed over outputs."""
    if name == "bce":
        return F.binary_cross_entropy_with_logits(z[:, 0], y.to(DTYPE))
    if name == "cross_entropy":
        return F.cross_entropy(z, y.long())
    target = F.one_hot(y.long(), z.shape[1]).to(DTYPE) if y.ndim == 1 and z.shape[1] > 1 else y.reshape(z.shape)
    return ((z - target) ** 2).sum(dim=1).mean()


def accuracy(z: torch.Tensor, y: torch.Tensor) -> float:
    pred = (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(dim=1)
    return (pred == y.long()).double().mean().item()


def regularised(name: str) -> bool:
    """L2 covers every weight matrix: dense W, recurrent W and U (every gate's), never biases or slopes."""
    return name.split(".")[1][0] in "WU"


def optimizer(cfg, lr: float, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if cfg.name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if cfg.name == "momentum":
        # torch: b = mu b + g, p -= lr b. gradlab: v = mu v - lr g, p += v. With a constant lr, v = -lr b
        # at every step (both start from zero): the same update.
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum)
    # torch: p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps), eps outside the bias correction,
    # which is gradlab's formula
    return torch.optim.Adam(params, lr=lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def clip(grads: dict[str, torch.Tensor], cfg) -> tuple[float, float, bool]:
    """gradlab's documented rule, in place: (||g|| before, ||g|| after, clipped). norm / global: if ||g|| > t,
    g *= t / ||g||; norm / layer: the same for each tensor alone; value: every entry into [-t, t].
    (torch.nn.utils.clip_grad_norm_ divides by ||g|| + 1e-6, so it is not used.)"""
    def total():
        return torch.sqrt(sum((g * g).sum() for g in grads.values())).item()

    before = total()
    if cfg is None:
        return before, before, False
    t = cfg.threshold
    if cfg.mode == "value":
        clipped = any(bool((g.abs() > t).any()) for g in grads.values())
        for g in grads.values():
            g.clamp_(-t, t)
    elif cfg.scope == "global":
        clipped = before > t
        for g in grads.values() if clipped else ():
            g.mul_(t / before)
    else:
        norms = {k: g.norm().item() for k, g in grads.items()}
        clipped = any(n > t for n in norms.values())
        for k, g in grads.items():
            if norms[k] > t:
                g.mul_(t / norms[k])
    return before, total(), clipped


# --------------------------------------------------------------------------- the replay

def replay(config, data, order, init: dict[str, np.ndarray], masks: dict) -> tuple[dict, dict]:
    """Train ``config``'s net in torch from ``init`` on gradlab's batches ``order`` (an iterator of
    (epoch, indices)); returns (records keyed like gradlab's logs, final parameters)."""
    net = build(config, init, getattr(data, "per_step", False), masks)
    cfg, log = config.train, config.log
    opt = optimizer(cfg.optimizer, cfg.lr, list(net.params.values()))
    n_steps, records = cfg.steps, {}
    for step in range(n_steps):
        epoch, idx = next(order)
        x, y = as_tensor(data.X_train[idx]), net.targets(as_tensor(data.y_train[idx]))
        opt.zero_grad(set_to_none=True)
        J = data_loss(config.loss, net.forward(x, True, step), y)
        if cfg.l2:
            J = J + 0.5 * cfg.l2 * sum((W * W).sum() for k, W in net.params.items() if regularised(k))
        J.backward()
        logged = step % log.every == 0 or step == n_steps - 1
        if logged:
            records.update(step_stats(net, step, epoch, J.item(), cfg.lr))
        before, after, clipped = clip({k: p.grad for k, p in net.params.items()}, cfg.clip)
        if logged:
            records.update({("metrics.csv", step, "grad_norm"): before, ("metrics.csv", step, "clipped"): clipped,
                            ("metrics.csv", step, "grad_norm_clipped"): after})
            records.update(validation(net, config, data, step, n_steps))
        opt.step()
    return records, {k: p.detach().numpy() for k, p in net.params.items()}


def step_stats(net: Net, step: int, epoch: int, J: float, lr: float) -> dict:
    """metrics (loss), grad_norms, layer_stats, time_grad_norms and gate_stats rows of one step, before clipping."""
    out = {("metrics.csv", step, "epoch"): epoch, ("metrics.csv", step, "loss"): J, ("metrics.csv", step, "lr"): lr}
    for k, p in net.params.items():
        out[("grad_norms.csv", step, k, "layer")] = net.layer_of[k]
        out[("grad_norms.csv", step, k, "grad_norm")] = p.grad.norm().item()
        out[("grad_norms.csv", step, k, "weight_norm")] = p.detach().norm().item()
    for l, h in net.outputs.items():
        a = net.acts[l].detach()
        out[("layer_stats.csv", step, l, "delta_norm")] = h.grad.norm().item()
        out[("layer_stats.csv", step, l, "act_mean")] = a.mean().item()
        out[("layer_stats.csv", step, l, "act_std")] = a.std(correction=0).item()
    for l, hs in net.steps.items():
        for t, h in enumerate(hs, 1):
            out[("time_grad_norms.csv", step, l, t, "grad_norm")] = 0.0 if h.grad is None else h.grad.norm().item()
    for l, gates in net.gates.items():
        out.update({("gate_stats.csv", step, l, g, "mean"): m.item() for g, m in gates.items()})
    return out


def validation(net: Net, config, data, step: int, n_steps: int) -> dict:
    """val_loss and val_accuracy in eval mode (batch norm's running statistics, no dropout), before the update."""
    if len(data.X_val) == 0 or not (step % config.log.val_every == 0 or step == n_steps - 1):
        return {("metrics.csv", step, "val_loss"): None, ("metrics.csv", step, "val_accuracy"): None}
    with torch.no_grad():
        z = net.forward(as_tensor(data.X_val), False, step)
        y = net.targets(as_tensor(data.y_val))
        J = data_loss(config.loss, z, y).item()
        acc = accuracy(z, y) if data.task == "classification" else None
    return {("metrics.csv", step, "val_loss"): J, ("metrics.csv", step, "val_accuracy"): acc}
