"""Gradient checking: analytic gradients against centred differences, graded by the tiers of
CS231n's gradient-check notes.

One file per concern: ``differences`` (the numerical gradient), ``grading`` (tiers, kinks, round-off),
``objectives`` (J as a function of one tensor, on K perturbed copies at once), ``runner`` (the whole
check of a config) ``render`` (the terminal view) and ``command``
(``gradlab check``).

The names of ``__all__`` are imported when first used (PEP 562): importing ``gradlab.check.command`` for
``gradlab --help`` loads no numpy.
"""
from __future__ import annotations

import importlib

# where the names of __all__ live, looked through in this order the first time one is asked for
_SUBMODULES = ("differences", "grading", "objectives", "runner")

__all__ = [
    "DEFAULT_EPS", "EXIT_FAIL", "EXIT_PASS", "EXIT_UNRESOLVED", "KINK_LIMIT", "LossObjective", "RESOLVE", "SAFETY",
    "SMOOTH_LIMIT", "check_tensor", "culprit", "judge", "max_rel_error", "module_label", "noise", "rel_bound",
    "step_of", "AUTO_FULL_LIMIT", "CHUNK_FLOATS", "CHUNK_ROWS", "CheckReport", "CheckSetup", "Entries", "Entry",
    "ModuleObjective", "NetObjective", "TIERS", "TINY", "TensorResult", "centred_difference", "check",
    "check_directions", "check_entries", "check_modules", "check_net", "chunk_size", "chunks", "coarse_warnings",
    "entry_indices", "eps_sweep", "flatten", "freeze", "grade", "has_kinks", "is_finite_pass", "listed", "n_params",
    "net_setup", "one_sided_difference", "overall", "prepare", "rel_error", "report_dict", "resolution",
    "run_check", "stack_at", "subgradient_ok", "sweep_eps", "taylor", "taylor_test", "tier", "tiny_warnings",
    "write_entries",
]


def __getattr__(name: str):
    if name in __all__:
        for sub in _SUBMODULES:
            module = importlib.import_module(f"{__name__}.{sub}")
            if hasattr(module, name):
                globals()[name] = value = getattr(module, name)  # once: the next look-up is a plain attribute
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
