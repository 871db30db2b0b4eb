"""Gradient checking: analytic gradients against centred differences, graded by the tiers of
CS231n's gradient-check notes.

One file per concern: ``differences`` (the numerical gradient), ``grading`` (tiers, kinks, round-off),
``objectives`` (J as a function of one tensor, on K perturbed copies at once), ``runner`` (the whole
check of a config) ``render`` (the terminal view) and ``command``
(``gradlab check``).
"""
from .differences import (CHUNK_FLOATS, CHUNK_ROWS, Entries, Entry, centred_difference, check_directions,
                          check_entries, chunk_size, chunks, entry_indices, eps_sweep, one_sided_difference,
                          stack_at, taylor_test)
from .differences import SAFETY, noise
from .grading import (KINK_LIMIT, RESOLVE, SMOOTH_LIMIT, TIERS, TINY, TensorResult, flatten, grade, judge,
                      max_rel_error, overall, rel_bound, rel_error, resolution, subgradient_ok, tier)
from .objectives import LossObjective, ModuleObjective, NetObjective, freeze, module_label
from .runner import (AUTO_FULL_LIMIT, DEFAULT_EPS, EXIT_FAIL, EXIT_PASS, EXIT_UNRESOLVED, CheckReport, CheckSetup,
                     check, check_modules, check_tensor, coarse_warnings, culprit, has_kinks, is_finite_pass, listed,
                     n_params, prepare, report_dict, run_check, step_of, sweep_eps, taylor, tiny_warnings,
                     write_entries)

__all__ = [
    "DEFAULT_EPS", "EXIT_FAIL", "EXIT_PASS", "EXIT_UNRESOLVED", "KINK_LIMIT", "LossObjective", "RESOLVE", "SAFETY",
    "SMOOTH_LIMIT", "check_tensor", "culprit", "judge", "max_rel_error", "module_label", "noise", "rel_bound",
    "step_of",
    "AUTO_FULL_LIMIT", "CHUNK_FLOATS", "CHUNK_ROWS", "CheckReport", "CheckSetup", "Entries", "Entry", "ModuleObjective",
    "NetObjective", "TIERS", "TINY", "TensorResult", "centred_difference", "check", "check_directions", "check_entries",
    "check_modules", "chunk_size", "chunks", "coarse_warnings", "entry_indices", "eps_sweep", "flatten", "freeze",
    "grade", "has_kinks", "is_finite_pass", "listed", "n_params", "one_sided_difference", "overall", "prepare",
    "rel_error", "report_dict", "resolution", "run_check", "stack_at", "subgradient_ok", "sweep_eps", "taylor",
    "taylor_test", "tier", "tiny_warnings", "write_entries",
]
