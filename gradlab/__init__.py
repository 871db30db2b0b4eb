"""gradlab: see, layer by layer and step by step, why a deep net does or does not learn.

The public Python API; the command line is a thin layer over it. Each name is imported when first used
(PEP 562), so ``gradlab --help`` loads neither numpy, pandas nor pydantic.
"""
__version__ = "0.1.0"

from . import boot  # noqa: E402,F401 - first: a Ctrl-C while the command starts exits quietly

import importlib  # noqa: E402
import sys  # noqa: E402
import types  # noqa: E402

# public name -> (module, attribute); attribute None: the module itself
_NAMES = {
    "Config": ("gradlab.config", "Config"), "ConfigError": ("gradlab.errors", "ConfigError"),
    "config_from_dict": ("gradlab.config", "config_from_dict"), "load_config": ("gradlab.config", "load_config"),
    "LayerStat": ("gradlab.records", "LayerStat"), "ParamStat": ("gradlab.records", "ParamStat"),
    "RunResult": ("gradlab.records", "RunResult"), "StepRecord": ("gradlab.records", "StepRecord"),
    "setup": ("gradlab.train", "setup"), "train": ("gradlab.train", "train"),
    "gradcheck": ("gradlab.check", None), "check": ("gradlab.check", "check"),
    "CheckReport": ("gradlab.check", "CheckReport"),
    "check_function": ("gradlab.check.functions", "check_function"),
    "check_layer": ("gradlab.check.functions", "check_layer"),
    "sweeps": ("gradlab.sweep", None), "reports": ("gradlab.report", None), "report": ("gradlab.report", "report"),
}
# functions named like the subpackage they live in: importing gradlab.check (or .report, .train) must not
# replace gradlab.check, the function, by the module (the import system sets the parent's attribute)
_SHADOWED = {"check", "report", "train"}

__all__ = [
    "CheckReport", "Config", "ConfigError", "check", "check_function", "check_layer", "gradcheck", "sweeps", "LayerStat", "ParamStat", "RunResult", "StepRecord",
    "config_from_dict", "load_config", "report", "reports", "setup", "train", "__version__",
]


def __getattr__(name: str):
    if name not in _NAMES:
        return _submodule(name)
    module, attr = _NAMES[name]
    value = importlib.import_module(module)
    value = value if attr is None else getattr(value, attr)
    globals()[name] = value  # once: the next look-up is a plain attribute
    return value


def _submodule(name: str) -> types.ModuleType:
    """``gradlab.nn``, ``gradlab.sweep``, ...: a submodule, imported on first use as the eager package did."""
    missing = AttributeError(f"module 'gradlab' has no attribute {name!r}")
    if name.startswith("__"):
        raise missing
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise  # the submodule exists but something it imports does not
        raise missing from None


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the subpackage stays in sys.modules (and as gradcheck, reports); the name stays the function
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
