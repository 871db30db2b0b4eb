"""The YAML config: its schema (``schema``), reading the file (``yamlfile``), ``--set`` overrides
(``overrides``), the messages for bad input (``messages``) and loading it whole (``load``).

Every name is re-exported here: ``from gradlab.config import Config, load_config`` is the way in.
"""
from ..errors import ALLOW_FLAG, ALLOW_HELP, EPS_RANGE, ConfigError  # noqa: F401
from .schema import (  # noqa: F401
    ActivationConfig, ActivationItem, ACTIVATIONS, AddingData, ALPHA_DEFAULTS, BatchNormItem, BlobsData, BPTTConfig,
    BUILTIN_CELLS, CELL_PATH_HELP, CheckConfig, CLASS_PATH, CLASS_PATH_HELP, ClipConfig, CNN_DEFAULTS, CNNConfig,
    CNNItem, Compact, Config, ConvItem, CopyData, FlattenItem, GapItem,
    CsvData, CustomItem, DataBase, DataConfig, DenseItem, DigitsData, DropoutItem, ImagesData, Importing, INIT_ALIASES,
    INIT_KEYS, ShapesData,
    INIT_SCHEMES, InitConfig, Item, LayerItem, LogConfig, MLPConfig, ModelConfig, MoonsData, NpzData,
    OptimizerConfig, ParityData, PoolItem, ResidualItem, RNN_ACTIVATIONS, RNNConfig, SequenceTask, SHAPE_DEFAULTS,
    SHAPE_KEYS, SpiralsData,
    Strict, Synthetic, TeacherData, TemporalOrderData, TrainConfig, XorData,
)
from .yamlfile import FLOAT_12, MAX_BYTES, MAX_NODES, MERGE_TAG, parse_yaml, read_text  # noqa: F401
from .overrides import apply_overrides, key_path, set_value  # noqa: F401
from .load import allowed_imports, config_from_dict, import_roots, load_config, validate  # noqa: F401
