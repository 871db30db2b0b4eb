"""The whole check: build the model at the parameters to check, check every tensor end to end and every
module alone, grade, and report."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..nn import Dropout, MLP
from .differences import Entries, Entry, check_directions, check_entries, entry_indices, eps_sweep, taylor_test
from .grading import TensorResult, grade, overall, resolution, tier, TINY
from .objectives import ModuleObjective, NetObjective

@dataclass
class CheckReport:
    mode: str
    eps: float
    dtype: str
    n_params: int
    tensors: list[TensorResult]  # the whole network, each parameter and the input
    layers: list[TensorResult]  # each module alone: its input and parameters
    rel_error: float  # over every smooth entry of the whole network
    tier: str
    has_kinks: bool
    passed: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[Entries] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TensorResult]:
        return [t for t in self.tensors + self.layers if not t.passed]

    @property
    def entries(self) -> list[Entry]:
        """Every checked entry of the whole-network check, one ``Entry`` each."""
        return [row for b in self.blocks for row in b.rows()]


def run_check(obj, names: list[str], mode: str, eps: float, rng: np.random.Generator, samples: int = 10,
              directions: int = 4, one_sided: bool = False, strict_smooth: bool = False) -> tuple[list[TensorResult], list[Entries]]:
    """Check the tensors ``names`` of an objective; returns their grades and their entries."""
    grads = obj.analytic()
    results, blocks = [], []
    for name in names:
        g = grads[name]
        if mode == "directional":
            e = check_directions(obj, name, g, directions, eps, rng, one_sided)
        else:
            e = check_entries(obj, name, g, entry_indices(g.shape, mode, samples, rng), eps, one_sided)
        results.append(grade(name, obj.layer(name), g.shape, e, eps, strict_smooth, resolution(obj.J, eps, one_sided)))
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
        warnings.append("checking in float32: with correct code the relative error can reach 1e-2 in single "
                        "precision (CS231n's gradient-check notes); use check.dtype float64 unless you mean to "
                        "test float32.")
    if after_steps:
        steps_cfg = s.config.model_copy(update={"train": train_cfg.model_copy(update={"steps": after_steps, "epochs": None})})
        result = fit(replace(s, config=steps_cfg))
        if result.status == "diverged":
            raise ConfigError(f"{source}: --after-steps {after_steps}: training diverged at step "
                              f"{result.diverged_at}; nothing finite to check.")
        notes.append(f"checked after {result.steps} training steps")
    x, y = s.data.X_train[: cc.batch], s.data.y_train[: cc.batch]
    model = s.model
    ok, where = is_finite_pass(model, x, y, s.loss, config.train.l2)
    if not ok:
        raise ConfigError(f"{source}: the forward or backward pass is not finite at the checked parameters: "
                          f"first non-finite value in {where}. Lower the init scale or check that layer.")
    obj = NetObjective(model, s.loss, x, y, config.train.l2, cc.loss_scale)
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
    notes.append(f"batch of {len(x)} training samples, eps {cc.eps:g}, {cc.dtype}, loss in training mode")
    return CheckSetup(model, obj, notes, warnings)


def check(config, source: str = "<config>", after_steps: int = 0, one_sided: bool = False) -> CheckReport:
    """Check every parameter and the input end to end, and every module alone; grade by the tiers."""
    import time

    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        report = _check(config, source, after_steps, one_sided)
    report.seconds = time.perf_counter() - t0
    return report


def _check(config, source: str, after_steps: int, one_sided: bool) -> CheckReport:
    cc = config.check
    cs = prepare(config, source, after_steps)
    model, obj = cs.model, cs.objective
    rng = np.random.default_rng(config.seed)
    mode = cc.mode if cc.mode != "auto" else ("full" if n_params(model) <= AUTO_FULL_LIMIT else "sample")
    strict_smooth = cc.strict and not has_kinks(model)
    kw = dict(mode=mode, eps=cc.eps, rng=rng, samples=cc.samples, directions=cc.directions,
              one_sided=one_sided, strict_smooth=strict_smooth)
    layers = check_modules(model, obj.x, rng, kw)
    tensors, blocks = run_check(obj, [*model.params, "input"], **kw)
    err = overall(blocks)
    report = CheckReport(mode=mode, eps=cc.eps, dtype=cc.dtype, n_params=n_params(model), tensors=tensors,
                         layers=layers, rel_error=err, tier=tier(err), has_kinks=has_kinks(model), passed=True,
                         warnings=cs.warnings, notes=cs.notes, blocks=blocks)
    report.passed = not report.failed
    report.warnings += tiny_warnings(tensors + layers)
    smooth_acceptable = [t.name for t in tensors + layers if t.tier == "acceptable" and not report.has_kinks]
    if smooth_acceptable:
        report.notes.append(f"'acceptable' ({listed(smooth_acceptable)}) is too high for a net without kinks "
                            "(CS231n's gradient-check notes): expect below 1e-7; --strict fails it unless round-off "
                            "explains it")
    if model.depth >= 10 and report.tier in ("acceptable", "uncomfortable"):
        report.notes.append(f"a {model.depth}-layer net accumulates rounding error end to end "
                            "(CS231n's gradient-check notes); every "
                            "layer is also checked alone, so a wrong layer is still named")
    report.warnings += coarse_warnings(obj.targets, cc.eps)
    return report


def coarse_warnings(targets: dict[str, np.ndarray], eps: float) -> list[str]:
    """Tensors with values so large that theta +- eps rounds back to theta (or nearly)."""
    coarse = [k for k, v in targets.items() if v.size and float(np.spacing(np.abs(v).max())) * 4 > eps]
    if not coarse:
        return []
    return [f"eps {eps:g} is within a few float spacings of the largest values of {listed(coarse)}: theta +- eps "
            "rounds, so their numerical gradient is unreliable; use a larger check.eps or a smaller init"]


def check_modules(model: MLP, x: np.ndarray, rng: np.random.Generator, kw: dict) -> list[TensorResult]:
    """Each module alone on the input it sees at theta: names the layer whose backward is wrong,
    even one without parameters of its own."""
    model.forward(x, True)
    inputs = [(l, m, layer.inputs[i]) for l, layer in enumerate(model.layers, 1) for i, m in enumerate(layer.modules)]
    results = []
    for l, m, inp in inputs:
        obj = ModuleObjective(m, inp, rng, l)
        names = list(obj.targets)
        results.extend(run_check(obj, names, **kw)[0])
    return results


def listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")


def tiny_warnings(results: list[TensorResult]) -> list[str]:
    out = []
    unresolved = [t.name for t in results if t.unresolved]
    if unresolved:
        out.append(f"unresolved: every gradient of {listed(unresolved)} is below what differences of the loss "
                   "can resolve (its last bits over eps), so those tensors are judged by the checks of each "
                   "layer alone; they pass here")
    tiny = [t.name for t in results if t.tiny and not t.unresolved]
    if not tiny:
        return out
    return out + [f"tiny gradients (|analytic| and |numeric| below {TINY:g}) in {listed(tiny)}"
            f": floats are sparse there (CS231n's gradient-check notes); scale the loss up "
            "with --loss-scale (e.g. 1e6) to bring them near 1"]


def taylor(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The Taylor test for every parameter tensor and the input (see ``taylor_test``)."""
    cs = prepare(config, source, after_steps)
    return taylor_test(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed))


def sweep_eps(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The overall relative error for eps = 1e-1 ... 1e-10, centred and one-sided."""
    cs = prepare(config, source, after_steps)
    return eps_sweep(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed),
                     directions=config.check.directions)


def report_dict(report: CheckReport) -> dict:
    """The summary as JSON-ready data (``gradlab check --json``)."""
    from dataclasses import asdict

    keep = ("mode", "eps", "dtype", "n_params", "rel_error", "tier", "has_kinks", "passed", "warnings", "notes",
            "seconds")
    return {**{k: getattr(report, k) for k in keep},
            "tensors": [asdict(t) for t in report.tensors], "layers": [asdict(t) for t in report.layers],
            "failed": [t.name for t in report.tensors if not t.passed],
            "failed_alone": [t.name for t in report.layers if not t.passed]}


def write_entries(report: CheckReport, path) -> None:
    """One row per checked entry of the whole-network check (``--csv``)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["param", "index", "analytic", "numeric", "abs_diff", "rel_error", "kink"])
        for e in report.entries:
            w.writerow([e.param, e.index, repr(e.analytic), repr(e.numeric), repr(e.abs_diff), repr(e.rel_error),
                        int(e.kink)])
