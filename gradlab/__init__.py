"""gradlab: see, layer by layer and step by step, why a deep net does or does not learn.

The public Python API; the command line is a thin layer over it.
"""
__version__ = "0.1.0"

from . import boot  # noqa: E402,F401 - first: a Ctrl-C while the command starts exits quietly

from .config import Config, ConfigError, config_from_dict, load_config  # noqa: E402
from .records import LayerStat, ParamStat, RunResult, StepRecord  # noqa: E402
from .train import setup, train  # noqa: E402
from . import check as gradcheck  # noqa: E402
from .check import CheckReport  # noqa: E402
from .check.functions import check_function, check_layer  # noqa: E402
from . import sweep as sweeps  # noqa: E402
from . import report as reports  # noqa: E402

check = gradcheck.check
report = reports.report

__all__ = [
    "CheckReport", "Config", "ConfigError", "check", "check_function", "check_layer", "gradcheck", "sweeps", "LayerStat", "ParamStat", "RunResult", "StepRecord",
    "config_from_dict", "load_config", "report", "reports", "setup", "train", "__version__",
]
