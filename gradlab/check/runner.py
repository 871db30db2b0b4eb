"""The whole check: build the model at the parameters to check, check every tensor end to end and every
module alone, grade, and report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..nn import Dropout, MLP, Module
from .fast import RECURRENT
from .differences import Entries, Entry, check_directions, check_entries, entry_indices, eps_sweep, taylor_test
from .grading import (KINK_LIMIT, RESOLVE, SMOOTH_LIMIT, TensorResult, grade, max_rel_error, overall, tier)
from .objectives import LossObjective, ModuleObjective, NetObjective, module_label
from ..threads import limited

EXIT_PASS, EXIT_FAIL, EXIT_UNRESOLVED = 0, 1, 3  # 2 is bad input (every command)
DEFAULT_EPS = {"float64": 1e-5, "float32": 5e-3}  # about u^(1/3): truncation h^2 and round-off u/h balance
MAX_EPS = 1e-2  # relative steps beyond this are left to the user: truncation takes over
RETRY = 100.0  # an unresolved tensor whose bound is round-off is retried once at 100x the step


@dataclass
class CheckReport:
    mode: str
    eps: float
    dtype: str
    n_params: int
    tensors: list[TensorResult]  # the whole network, each parameter and the input
    layers: list[TensorResult]  # each module alone: its input and parameters; and the loss alone
    rel_error: float  # over every smooth entry of the whole network
    tier: str
    has_kinks: bool
    passed: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[Entries] = field(default_factory=list, repr=False)
    seconds: float = 0.0
    max_rel_error: float = 0.0  # CS231n's element-wise rel_error over every smooth entry of the whole network

    @property
    def failed(self) -> list[TensorResult]:
        return [t for t in self.tensors + self.layers if t.verdict == "fail"]

    @property
    def unresolved(self) -> list[TensorResult]:
        """Tensors that neither pass nor fail: not covered by the checks alone either."""
        return [t for t in self.tensors + self.layers if t.verdict == "unresolved" and not t.covered]

    @property
    def exit_code(self) -> int:
        """0 every tensor passes; 1 any fails; 3 none fails but some cannot be resolved."""
        if self.failed:
            return EXIT_FAIL
        return EXIT_UNRESOLVED if self.unresolved else EXIT_PASS

    @property
    def entries(self) -> list[Entry]:
        """Every checked entry of the whole-network check, one ``Entry`` each."""
        return [row for b in self.blocks for row in b.rows()]


def step_of(arr: np.ndarray, eps: float, least: float = 0.0) -> float:
    """The step for a tensor: eps relative to its scale, eps * max(1, rms): an input of 1e8 is moved by
    about 1e3, never by less than its floats can show; and never below ``least``, the smallest step that shows
    where it lands (a dense b of 0 is added to z, which may be 1e16)."""
    scale = float(np.sqrt(np.mean(np.square(arr, dtype=np.float64)))) if arr.size else 0.0
    h = eps * max(1.0, scale) if np.isfinite(scale) else eps
    return float(max(h, least if np.isfinite(least) else 0.0))


class Ticker:
    """Progress of a check, in entries: ``report(done, total)`` as each chunk of differences is done. A tensor
    counts its planned entries once; its re-steps and retries move nothing."""

    def __init__(self, report: Callable[[float, float], None], total: float) -> None:
        self.report, self.total, self.done = report, float(total), 0.0

    def tensor(self, count: int) -> Callable[[float], None]:
        """The tick of a tensor of ``count`` entries, told the fraction of them done."""
        base = self.done

        def tick(fraction: float) -> None:
            done = base + count * min(max(fraction, 0.0), 1.0)
            if done > self.done:
                self.done = done
                self.report(self.done, self.total)
        return tick


def entries_of(how: tuple, size: int) -> int:
    """How many entries (or directions) a tensor of ``size`` entries is checked at, by ``how`` (mode, count)."""
    mode, count = how
    if mode == "directional":
        return int(count)
    return int(min(count, size)) if mode == "sample" else int(size)


def _differences(obj, name, g, how, h, seed, one_sided, tick=None):
    mode, count = how
    if mode == "directional":
        return check_directions(obj, name, g, count, h, np.random.default_rng(seed), one_sided)
    idx = entry_indices(g.shape, "sample" if mode == "sample" else "full", count, np.random.default_rng(seed))
    return check_entries(obj, name, g, idx, h, one_sided, tick)


def check_tensor(obj, name: str, g: np.ndarray, how: tuple, eps: float, seed: int, one_sided: bool = False,
                 limit: float = SMOOTH_LIMIT, adapt: bool = False,
                 tick: Callable[[float], None] | None = None) -> tuple[TensorResult, Entries]:
    """One tensor: differences at h = eps * scale, graded; a tensor that does not pass at once gets the
    truncation error (from a second step, 2h) in its bound and is graded again; with ``adapt`` an unresolved
    one whose bound is round-off is tried once more at a 100x larger step."""
    arr = obj.targets[name]
    h = step_of(arr, eps, obj.min_step(name) if hasattr(obj, "min_step") else 0.0)
    result, e = _graded(obj, name, g, how, h, seed, one_sided, limit, tick)
    hopeful = result.bound / RETRY <= RESOLVE and eps * RETRY <= MAX_EPS  # round-off shrinks as 1 / h
    if result.verdict == "unresolved" and adapt and hopeful and _round_off_bound(e):
        retry, e2 = _graded(obj, name, g, how, h * RETRY, seed, one_sided, limit)
        if retry.verdict != "unresolved" or retry.bound < result.bound:
            result, e = retry, e2
    if result.verdict == "unresolved":
        result.cure = cure(result, e, eps, obj)
    return result, e


KINK_STEPS = (1e-2, 1e-4)  # an entry that crossed a kink is tried again at these fractions of its step


def _graded(obj, name, g, how, h, seed, one_sided, limit, tick=None):
    e = _differences(obj, name, g, how, h, seed, one_sided, tick)
    if not e.directional:
        rekink(obj, name, g, e, h, one_sided)
    result = grade(name, obj.layer(name), g.shape, e, limit, step=h)
    if result.verdict != "pass" and not result.kink_failures:
        e2 = _differences(obj, name, g, how, 2 * h, seed, one_sided)  # Richardson: n(2h) - n(h) = 3 C h^2
        e.truncation = np.abs(e2.numeric - e.numeric)
        e.truncation[e.kink | e2.kink] = 0.0
        e.bound = e.bound + e.truncation
        result = grade(name, obj.layer(name), g.shape, e, limit, step=h)
    return result, e


def rekink(obj, name: str, g: np.ndarray, e: Entries, h: float, one_sided: bool) -> None:
    """Entries that crossed a kink, differenced again at smaller steps: one that no longer crosses is graded
    as a smooth entry (its analytic value is the slope of the piece theta lies on); what still crosses at
    the smallest step is left to the subgradient test."""
    for fraction in KINK_STEPS:
        where = np.flatnonzero(e.kink)
        if not len(where):
            return
        again = check_entries(obj, name, g, e.index[where], h * fraction, one_sided)
        for key in ("numeric", "kink", "left", "right", "bound", "step"):
            getattr(e, key)[where] = getattr(again, key)
        e.restepped[where] = ~again.kink


def _round_off_bound(e: Entries) -> bool:
    """Whether the bound is mostly round-off (a larger step shrinks it) rather than truncation."""
    return float(np.sum(e.truncation ** 2)) < 0.25 * float(np.sum(e.bound ** 2))


def cure(result: TensorResult, e: Entries, eps: float, obj) -> str:
    """What resolves an unresolved tensor, of the cures that work: float64, a larger step; a loss scale
    never does (it multiplies J's round-off as much as J)."""
    dtype = obj.targets[result.name].dtype
    if dtype != np.float64:
        return "check in float64 (--dtype float64): its round-off is 5e8 times smaller"
    if not _round_off_bound(e):
        return f"a smaller step (--eps {eps / 10:g}): the bound is truncation error"
    need = result.bound / (0.1 * RESOLVE)  # the step factor that brings the round-off part under RESOLVE / 10
    if not need < math.inf:  # the step vanished against the values it was added to: no difference at all
        return f"a larger step (--eps {DEFAULT_EPS['float64']:g}): at --eps {eps:g} theta + h rounds to theta"
    factor = 10.0 ** math.ceil(math.log10(need)) if need > 1 else 10.0
    if eps * factor <= MAX_EPS:
        return f"a larger step (--eps {eps * factor:g}): the bound is J's round-off over the step"
    return ("none by differences of J: its gradient is below what J's round-off lets a difference show at any "
            "step; the modules it passes through are checked alone")


def run_check(obj, names: list[str], mode: str, eps: float, rng: np.random.Generator, samples: int = 10,
              directions: int = 4, one_sided: bool = False, strict_smooth: bool = False, kinks: bool = False,
              strict: bool = False, adapt: bool = False, plan: dict | None = None,
              ticker: Ticker | None = None) -> tuple[list[TensorResult], list[Entries]]:
    """Check the tensors ``names`` of an objective; returns their grades and their entries.

    ``eps`` is relative (see ``step_of``); ``mode`` full | sample | directional, or a per-tensor ``plan``
    {name: (mode, count)}. The tier's limit is 1e-7, or 1e-4 when ``kinks`` (unless ``strict``);
    ``strict_smooth`` is the old name of ``not kinks``. A ``ticker`` is told each tensor's progress.
    """
    limit = KINK_LIMIT if kinks and not strict else SMOOTH_LIMIT
    grads = obj.analytic()
    results, blocks = [], []
    count = {"directional": directions, "sample": samples, "full": 0}
    for name in names:
        how = (plan or {}).get(name, (mode, count.get(mode, 0)))
        tick = ticker.tensor(entries_of(how, obj.targets[name].size)) if ticker else None
        r, e = check_tensor(obj, name, grads[name], how, eps, int(rng.integers(2**31)), one_sided, limit, adapt, tick)
        if tick:
            tick(1.0)
        results.append(r)
        blocks.append(e)
    return results, blocks


def has_kinks(model: MLP) -> bool:
    return any(m.kinks for m in model.modules())


def n_params(model: MLP) -> int:
    return int(sum(p.size for p in model.params.values()))


def is_finite_pass(model: MLP, x, y, loss, l2) -> tuple[bool, str]:
    """Pre-flight: forward and backward give finite numbers, or the first layer that did not."""
    with np.errstate(all="ignore"):
        J = model.loss_and_grads(x, y, loss, l2, train=True)
    finite = math.isfinite(J) and all(np.isfinite(g).all() for g in model.grads.values())
    if finite:
        return True, ""
    layer, where = model.first_nonfinite(math.isfinite(J))
    return False, f"layer {layer} ({where})"



# --------------------------------------------------------------------------- the whole check

AUTO_FULL_LIMIT = 100_000  # mode auto: every entry up to this many parameters, else a sample


@dataclass
class CheckSetup:
    """A model at the parameters to check, on its fixed batch, with its objective."""

    model: MLP
    objective: NetObjective
    notes: list[str]
    warnings: list[str]


def prepare(config, source: str = "<config>", after_steps: int = 0) -> CheckSetup:
    """Build the model in the check's dtype, optionally train it, freeze what is random, pre-flight."""
    from dataclasses import replace

    from ..config import ConfigError
    from ..train import fit, setup

    cc = config.check
    train_cfg = config.train.model_copy(update={"dtype": cc.dtype})
    s = setup(config.model_copy(update={"train": train_cfg}), source)
    notes, warnings = [], []
    if cc.dtype == "float32":
        warnings.append("checking in float32, where correct code can reach a relative error of 1e-2 (CS231n's "
                        "gradient-check notes): every tensor is graded against float32's own bound (its round-off "
                        "is 5e8 times float64's), so correct code passes and a wrong factor still fails, but "
                        "smaller errors cannot be seen; check in float64 (the default) to see those.")
    elif config.train.dtype != "float64":
        notes.append(f"checked in float64 although train.dtype is {config.train.dtype}: the check's own dtype is "
                     "check.dtype (--dtype float32 grades against float32's bound)")
    if after_steps:
        steps_cfg = s.config.model_copy(update={"train": train_cfg.model_copy(update={"steps": after_steps, "epochs": None})})
        result = fit(replace(s, config=steps_cfg))
        if result.status == "diverged":
            raise ConfigError(f"{source}: --after-steps {after_steps}: training diverged at step "
                              f"{result.diverged_at}; nothing finite to check.")
        notes.append(f"checked after {result.steps} training steps")
    x, y = s.data.X_train[: cc.batch], s.data.y_train[: cc.batch]
    cs = net_setup(s.model, s.loss, x, y, config.train.l2, cc.loss_scale, source, notes, warnings)
    eps = eps_of(cc)
    cs.notes.append(f"batch of {len(x)} training samples, {cc.dtype}, loss in training mode; eps {eps:g} relative: "
                    "each tensor moves by h = eps * max(1, rms(tensor))")
    return cs


def net_setup(model: MLP, loss, x: np.ndarray, y: np.ndarray, l2: float = 0.0, scale: float = 1.0,
              source: str = "<net>", notes: list[str] | None = None, warnings: list[str] | None = None) -> CheckSetup:
    """A net at the parameters to check, on the batch (x, y): what is random frozen, pre-flighted (finite, and
    the same loss twice)."""
    from ..config import ConfigError

    notes, warnings = notes if notes is not None else [], warnings if warnings is not None else []
    ok, where = is_finite_pass(model, x, y, loss, l2)
    if not ok:
        raise ConfigError(f"{source}: the forward or backward pass is not finite at the checked parameters: "
                          f"first non-finite value in {where}. Lower the init scale or check that layer.")
    obj = NetObjective(model, loss, x, y, l2, scale)
    if any(isinstance(m, Dropout) and m.p > 0 for m in model.modules()):
        notes.append("dropout: one fixed mask per layer, so dropout's backward is checked, not skipped")
    if any(getattr(m, "truncate", None) for m in model.modules()):
        notes.append("truncated BPTT: the chunk-start states are held at their values at theta, so the "
                     "numerical gradient is the truncated one")
    if any(m.kinks for m in model.modules()):
        notes.append("the net has kinks (ReLU-like units): entries whose winners change between theta - eps "
                     "and theta + eps are graded apart, by the one-sided derivatives")
    J1, J2 = obj.value(), obj.value()
    if J1 != J2:
        raise ConfigError(f"{source}: the loss differs between two evaluations at the same parameters "
                          f"({J1!r} vs {J2!r}): something random is still on.")
    return CheckSetup(model, obj, notes, warnings)


def eps_of(cc) -> float:
    """The relative step: check.eps, or the default for the check's dtype."""
    return cc.eps if cc.eps is not None else DEFAULT_EPS[cc.dtype]


@limited  # BLAS on train.threads threads (one by default)
def check(config, source: str = "<config>", after_steps: int = 0, one_sided: bool = False,
          progress: Callable[[float, float], None] | None = None) -> CheckReport:
    """Check every parameter and the input end to end, every module alone and the loss alone; grade each
    tensor against its tier and its bound. ``progress(done, total)`` is told the entries checked so far and
    the entries planned (every module alone, the loss and the whole net), as the check goes."""
    import time

    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        report = _check(config, source, after_steps, one_sided, progress)
    report.seconds = time.perf_counter() - t0
    return report


def check_net(model: MLP, loss, x: np.ndarray, y: np.ndarray, *, l2: float = 0.0, seed: int = 0,
              one_sided: bool = False, progress: Callable[[float, float], None] | None = None,
              **settings) -> CheckReport:
    """``gradlab check`` of a net built by hand (an ``MLP`` of ``Sequential`` layers) on the batch (x, y),
    without a config: ``settings`` are check.* keys (mode, eps, samples, directions, strict)."""
    import time

    from ..config.schema import CheckConfig

    cc = CheckConfig(**settings)
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        cs = net_setup(model, loss, x, y, l2, cc.loss_scale)
        report = _check_setup(cs, cc, seed, one_sided, progress)
    report.seconds = time.perf_counter() - t0
    return report


def _check(config, source: str, after_steps: int, one_sided: bool, progress=None) -> CheckReport:
    return _check_setup(prepare(config, source, after_steps), config.check, config.seed, one_sided, progress)


def _check_setup(cs: CheckSetup, cc, seed: int, one_sided: bool, progress=None) -> CheckReport:
    model, obj = cs.model, cs.objective
    rng = np.random.default_rng(seed)
    kinks = has_kinks(model)
    eps = eps_of(cc)
    mode = cc.mode if cc.mode != "auto" else ("full" if n_params(model) <= AUTO_FULL_LIMIT else "sample")
    kw = dict(mode=mode, eps=eps, rng=rng, samples=cc.samples, directions=cc.directions, one_sided=one_sided,
              kinks=kinks, strict=cc.strict, adapt=cc.eps is None)
    sampled: list[str] = []
    alone = module_plans(model, obj.x, kw, auto=cc.mode == "auto", sampled=sampled)
    names = [*model.params, "input"]
    base = (mode, cc.samples if mode == "sample" else 0)
    plan = auto_plan(obj, names, model, sampled, base) if cc.mode == "auto" else None
    if progress:
        count = {"directional": cc.directions, "sample": cc.samples, "full": 0}.get(mode, 0)
        planned = [entries_of(p.get(k, (mode, count)), size) for _, _, _, p, sizes in alone for k, size in sizes.items()]
        planned += [entries_of((plan or {}).get(k, (mode, count)), obj.targets[k].size) for k in names]
        planned.append(entries_of((mode, count), model.outputs[-1].size))  # the loss alone, at the logits
        kw["ticker"] = Ticker(progress, sum(planned))
    layers = run_modules(alone, rng, kw)
    layers += check_loss(model, obj, rng, kw)
    tensors, blocks = run_check(obj, names, plan=plan, **kw)
    smooth = [b for b in blocks]
    err = overall(smooth)
    a = np.concatenate([b.analytic[~b.kink] for b in blocks]) if blocks else np.zeros(0)
    n = np.concatenate([b.numeric[~b.kink] for b in blocks]) if blocks else np.zeros(0)
    report = CheckReport(mode=mode if not sampled else "auto", eps=eps, dtype=cc.dtype, n_params=n_params(model),
                         tensors=tensors, layers=layers, rel_error=err, tier=tier(err), has_kinks=kinks, passed=True,
                         warnings=cs.warnings, notes=cs.notes, blocks=blocks, max_rel_error=max_rel_error(a, n))
    cover(report, model)
    report.passed = report.exit_code == EXIT_PASS
    report.notes += verdict_notes(report, kinks, cc.strict, sampled)
    report.warnings += unresolved_warnings(report)
    return report


AUTO_FLOPS = 2e10  # mode auto: what the whole network's differences may cost, some seconds of NumPy
ELEMENTWISE = 100.0  # an elementwise pass over an output costs about as much as this many flops of a product


def module_flops(m, width: int, positions: int = 1) -> float:
    """Work of one row (one sample, one time step) through a module with ``width`` outputs at each of
    ``positions`` places (an image's Ho * Wo, else 1): its products and its elementwise passes, which cost far
    more per operation than a matrix product does. A recurrent cell's elementwise passes go over its gates'
    pre-activations, gates x width of them (an LSTM's 4H, a GRU's 3H); a convolution's product is made at
    every output position."""
    P = sum(int(np.prod(p.shape)) for p in m.params.values())
    gates = len(m.gates) if type(m) in RECURRENT else 1
    return positions * (2.0 * P + ELEMENTWISE * width * gates)


def places(out: np.ndarray) -> int:
    """Positions per sample of a module's output: Ho * Wo of an image (N, Ho, Wo, C), else 1."""
    return int(np.prod(out.shape[1:-1])) if out.ndim == 4 else 1


def tail_flops(model: MLP, start: int) -> float:
    """Work of one row through layers ``start``.. of the net (after a forward pass, which keeps each module's
    input: the next one's input is its output)."""
    total = 0.0
    for l in range(start, len(model.layers) + 1):
        layer = model.layers[l - 1]
        outs = [*getattr(layer, "inputs", [])[1:len(layer.modules)], model.outputs[l]]
        if len(outs) != len(layer.modules) or any(o is None for o in outs):
            outs = [model.outputs[l]] * len(layer.modules)
        total += sum(module_flops(m, o.shape[-1], places(o)) for m, o in zip(layer.modules, outs))
    return total


def auto_plan(obj, names: list[str], model: MLP, sampled: list[str], base: tuple) -> dict:
    """Mode auto, per tensor: every entry while the whole check costs less than AUTO_FLOPS; beyond it, every
    tensor is sampled in proportion (each entry costs a pass of the layers above it, over every sample and
    time step), never fewer than 10 entries."""
    rows = obj.x.shape[0] * (obj.x.shape[1] if obj.x.ndim == 3 else 1)
    model.forward(obj.x, True)
    costs = {}
    for name in names:
        start = 1 if name == "input" else model.param_layer[name]
        costs[name] = 2 * _copies(obj, name) * rows * tail_flops(model, start)
    return _budget(costs, {k: obj.targets[k].size for k in names}, AUTO_FLOPS, sampled, base)


def _copies(obj, name: str) -> int:
    """Perturbed copies per sign: one per entry, or one per output column on a dense layer's column path."""
    module, key = getattr(obj, "owner", {}).get(name, (None, None))
    if module is not None and key in ("W", "b") and hasattr(obj, "column_numeric"):
        l = obj.layer_of[name]
        tail = [m for layer in obj.model.layers[l - 1:] for m in layer.modules]
        if module is tail[0] and all(m.batched and not m.kinks and not m.couples_samples for m in tail):
            return int(module.params["W"].shape[1])
    return int(obj.targets[name].size)


def _budget(costs: dict, sizes: dict, budget: float, sampled: list[str], base: tuple) -> dict:
    """Every entry within ``budget``; beyond it each tensor sampled in proportion, at least 10 entries."""
    plan = {k: base for k in costs}
    total = sum(costs.values())
    if base[0] != "full" or total <= budget:
        return plan
    for k in costs:
        count = int(max(10, sizes[k] * budget / total))
        if count < sizes[k]:
            plan[k] = ("sample", count)
            sampled.append(f"{k} ({count} of {sizes[k]} entries)")
    return plan


def module_plans(model: MLP, x: np.ndarray, kw: dict, auto: bool = False, sampled: list[str] | None = None
                 ) -> list[tuple[int, Module, np.ndarray, dict, dict]]:
    """(layer, module, its input at theta, plan, {tensor: size}) of every module, to check it alone: in mode
    auto each module alone may cost AUTO_FLOPS / 4, beyond which its tensors are sampled in proportion."""
    model.forward(x, True)
    inputs = [(l, m, layer.inputs[i]) for l, layer in enumerate(model.layers, 1) for i, m in enumerate(layer.modules)]
    base = (kw["mode"], kw["samples"] if kw["mode"] == "sample" else 0)
    plans = []
    for l, m, inp in inputs:
        label = module_label(m, l)
        sizes = {**{f"{label}.{k}": int(v.size) for k, v in m.params.items()}, f"{label}.input": int(inp.size)}
        plan = {}
        if auto:
            rows = inp.shape[0] * (inp.shape[1] if inp.ndim == 3 else 1)
            out = m.forward(inp, True)
            costs = {k: 2 * size * rows * module_flops(m, out.shape[-1], places(out)) for k, size in sizes.items()}
            plan = _budget(costs, sizes, AUTO_FLOPS / 4, sampled if sampled is not None else [], base)
        plans.append((l, m, inp, plan, sizes))
    return plans


def run_modules(plans: list, rng: np.random.Generator, kw: dict) -> list[TensorResult]:
    """Each module alone on the input it sees at theta (``module_plans``): names the layer whose backward is
    wrong, even one without parameters of its own."""
    results = []
    for l, m, inp, plan, _ in plans:
        obj = ModuleObjective(m, inp, rng, l)
        results.extend(run_check(obj, list(obj.targets), plan=plan or None, **kw)[0])
    return results


def check_modules(model: MLP, x: np.ndarray, rng: np.random.Generator, kw: dict, auto: bool = False,
                  sampled: list[str] | None = None) -> list[TensorResult]:
    """Each module alone on the input it sees at theta: names the layer whose backward is wrong,
    even one without parameters of its own."""
    return run_modules(module_plans(model, x, kw, auto, sampled), rng, kw)


def check_loss(model: MLP, obj: NetObjective, rng: np.random.Generator, kw: dict) -> list[TensorResult]:
    """The loss alone at the logits of theta: names the loss when its backward is wrong."""
    z = model.forward(obj.x, True)
    lo = LossObjective(obj.loss, z, obj.y, obj.scale)
    return run_check(lo, list(lo.targets), **{**kw, "kinks": False})[0]


def cover(report: CheckReport, model: MLP) -> None:
    """A tensor unresolved end to end is covered when every module its gradient passes through (its layer and
    those above) and the loss pass alone, resolved: the chain rule composes them, and the resolved tensors
    above it check the composition."""
    alone = {}
    for t in report.layers:
        alone.setdefault(t.layer, []).append(t)
    loss_ok = all(t.verdict == "pass" for t in report.layers if t.layer is None)
    wired = any(t.verdict == "pass" and not t.explained for t in report.tensors)
    for t in report.tensors:
        if t.verdict != "unresolved":
            continue
        start = t.layer or 1
        path = [r for l, rs in alone.items() if l is not None and l >= start for r in rs]
        t.covered = bool(loss_ok and wired and path and all(r.verdict == "pass" for r in path))


def verdict_notes(report: CheckReport, kinks: bool, strict: bool, sampled: list[str]) -> list[str]:
    notes = []
    if kinks and not strict:
        notes.append("tiers: the net has kinks, so 'acceptable' (below 1e-4) passes (CS231n's gradient-check "
                     "notes); --strict holds it to 1e-7 like a net without kinks")
    else:
        notes.append("tiers: above 1e-7 a tensor fails unless the bound (round-off and truncation) explains it "
                     "(CS231n's gradient-check notes: without kinks, expect below 1e-7)")
    explained = [t.name for t in report.tensors + report.layers if t.explained]
    if explained:
        notes.append(f"above the tier but explained by the bound, and resolved: {listed(explained)}")
    covered = [t.name for t in report.tensors if t.covered]
    if covered:
        notes.append(f"below what differences of J can resolve end to end: {listed(covered)}; every module their "
                     "gradient passes through, and the loss, pass alone, so they pass")
    if sampled:
        notes.append(f"auto mode sampled the tensors whose entries cost most (each a pass of the layers above "
                     f"it over every sample and time step): {listed(sampled)}; --mode full checks every entry")
    return notes


def unresolved_warnings(report: CheckReport) -> list[str]:
    out = []
    for t in report.unresolved:
        out.append(f"unresolved: {t.name} (rel error {t.rel_error:.1e}, bound {t.bound:.1e}): the bound cannot "
                   f"tell a right gradient from a wrong one; cure: {t.cure}")
    return out


def coarse_warnings(targets: dict[str, np.ndarray], eps: float) -> list[str]:
    """Tensors with values so large that theta +- eps rounds back to theta (or nearly)."""
    coarse = [k for k, v in targets.items() if v.size and float(np.spacing(np.abs(v).max())) * 4 > eps]
    if not coarse:
        return []
    return [f"eps {eps:g} is within a few float spacings of the largest values of {listed(coarse)}: theta +- eps "
            "rounds, so their numerical gradient is unreliable; use a larger check.eps or a smaller init"]


def listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")


def tiny_warnings(results: list[TensorResult]) -> list[str]:
    """Kept for callers: the bound now decides; nothing to warn about tiny values as such."""
    return []


@limited  # BLAS on train.threads threads (one by default)
def taylor(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The Taylor test for every parameter tensor and the input (see ``taylor_test``)."""
    cs = prepare(config, source, after_steps)
    return taylor_test(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed))


@limited  # BLAS on train.threads threads (one by default)
def sweep_eps(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The overall relative error for eps = 1e-1 ... 1e-10, centred and one-sided."""
    cs = prepare(config, source, after_steps)
    return eps_sweep(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed),
                     directions=config.check.directions)


def report_dict(report: CheckReport) -> dict:
    """The summary as JSON-ready data (``gradlab check --json``)."""
    from dataclasses import asdict

    keep = ("mode", "eps", "dtype", "n_params", "rel_error", "max_rel_error", "tier", "has_kinks", "passed",
            "exit_code", "warnings", "notes", "seconds")
    return {**{k: getattr(report, k) for k in keep},
            "tensors": [asdict(t) for t in report.tensors], "layers": [asdict(t) for t in report.layers],
            "failed": [t.name for t in report.tensors if t.verdict == "fail"],
            "failed_alone": [t.name for t in report.layers if t.verdict == "fail"],
            "unresolved": [t.name for t in report.unresolved], "culprit": culprit(report)}


def write_entries(report: CheckReport, path) -> None:
    """One row per checked entry of the whole-network check (``--csv``), written whole or not at all; a
    path that cannot be written is a ConfigError naming it."""
    import csv

    from ..config import ConfigError
    from ..files import atomic

    try:
        with atomic(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["param", "index", "analytic", "numeric", "abs_diff", "rel_error", "kink", "cs231n_rel_error",
                        "bound", "step"])
            for e in report.entries:
                w.writerow([e.param, e.index, repr(e.analytic), repr(e.numeric), repr(e.abs_diff),
                            repr(e.rel_error), int(e.kink), repr(e.cs231n_rel_error), repr(e.bound), repr(e.step)])
    except OSError as exc:
        raise ConfigError(f"--csv {path}: cannot write it ({exc.strerror or exc}); allowed: a file in an existing "
                          "folder you can write to.") from None


def culprit(report: CheckReport) -> str:
    """Who is wrong: the loss, or the modules that fail alone, first; then what fails end to end (which follows
    from them, or, when every module passes alone, from the wiring between them)."""
    ends = [t for t in report.tensors if t.verdict == "fail"]
    shown = ", ".join(f"{t.name} ({t.tier})" for t in ends[:8]) + (" ..." if len(ends) > 8 else "")
    loss = [t for t in report.layers if t.layer is None and t.verdict == "fail"]
    modules = list(dict.fromkeys(t.name.rsplit(".", 1)[0] for t in report.layers
                                 if t.verdict == "fail" and t.layer is not None))
    parts = []
    if loss:
        parts.append(f"the loss's backward is wrong ({loss[0].name.split('.')[0]}, checked alone)")
    if modules:
        parts.append(f"the backward of {', '.join(modules)} is wrong (checked alone)")
    if ends and parts:
        parts.append(f"end to end {len(ends)} tensor(s) fail, as follows from it: {shown}")
    elif ends:
        parts.append(f"end to end {len(ends)} tensor(s) fail: {shown}; every module and the loss pass alone, "
                     "so the error is in how the net joins them")
    return "; ".join(parts)
