"""The YAML schema as pydantic models; loading, ``--set`` overrides and friendly errors.

Every key name here is user interface: configs, ``--set`` paths and the resolved
``config.yaml`` of a run all use them.
"""
# no "from __future__ import annotations": pydantic would evaluate every field's annotation string as each
# model is built, a quarter of this module's import time; Python 3.10 reads `int | None` as it is

import collections.abc
import copy
import difflib
import os
import re
import stat
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .errors import ALLOW_FLAG, ALLOW_HELP, EPS_RANGE, ConfigError  # noqa: F401 - re-exported: gradlab.config's names
from .threads import DEFAULT as DEFAULT_THREADS, MAX as MAX_THREADS


class Strict(BaseModel):
    """Unknown keys are errors, and so are values of the wrong type: ``depth: true``, ``depth: 1.5`` or
    ``depth: "3"`` is not an int; a float key takes ints and floats, never a bool or a string."""

    model_config = ConfigDict(extra="forbid", validate_default=True, allow_inf_nan=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _whole_floats(cls, data: Any) -> Any:
        """``steps: 1e4`` is the whole number 10000 (YAML reads it as a float); 1.5 stays an error."""
        if not isinstance(data, dict):
            return data
        whole = {}
        for name, field in cls.model_fields.items():
            key = field.alias or name
            value = data.get(key)
            if type(value) is float and value.is_integer() and abs(value) < 2**53 and _int_key(field.annotation):
                whole[key] = int(value)
        return {**data, **whole} if whole else data


def _int_key(annotation: Any) -> bool:
    """An int key (``int``, ``int | None``, ``int | Literal['full']``), not one that takes floats too."""
    members = _members(annotation) if getattr(annotation, "__args__", None) else [annotation]
    members = [getattr(m, "__origin__", m) for m in members]  # Annotated[int, ...] -> int
    return int in members and float not in members


class Compact(Strict):
    """Written without the keys that do not apply (None), with ``kind``/``name``/``scheme`` first."""

    @model_serializer(mode="wrap")
    def _compact(self, handler):
        data = {k: v for k, v in handler(self).items() if v is not None}
        head = [k for k in ("type", "kind", "name", "scheme") if k in data]
        return {**{k: data[k] for k in head}, **data}


def _named(value: Any) -> Any:
    """Let a bare name stand for ``{name: value}`` (``activation: tanh``)."""
    return {"name": value} if isinstance(value, str) else value


# --------------------------------------------------------------------------- model

ACTIVATIONS = ("linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "softplus", "softsign")
# default slope/scale of the activations that take `alpha`
ALPHA_DEFAULTS = {"leaky_relu": 0.01, "prelu": 0.25, "elu": 1.0}
# a class of your own, by import path: `custom_layer:Swish`, `pkg.layers:Swish`
CLASS_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
CLASS_PATH_HELP = "an import path module:Class of your own layer (e.g. custom_layer:Swish)"


class ActivationConfig(Compact):
    name: str  # one of ACTIVATIONS, or module:Class
    alpha: float | None = None  # leaky_relu slope, elu scale, prelu initial slope

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value in ACTIVATIONS or CLASS_PATH.fullmatch(value):
            return value
        listed = ", ".join(f"'{a}'" for a in ACTIVATIONS[:-1])
        raise ValueError(f"Input should be {listed} or '{ACTIVATIONS[-1]}', or {CLASS_PATH_HELP}")

    @model_validator(mode="after")
    def _alpha(self) -> "ActivationConfig":
        if self.name in ALPHA_DEFAULTS:
            if self.alpha is None:
                self.alpha = ALPHA_DEFAULTS[self.name]
        elif self.alpha is not None:
            raise ValueError(f"'alpha' applies only to {', '.join(ALPHA_DEFAULTS)}, not to {self.name}")
        return self

    @property
    def spec(self) -> str | None:
        """The ``module:Class`` of a custom activation, else None."""
        return self.name if ":" in self.name else None


INIT_ALIASES = {
    "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform",
    "kaiming_normal": "he_normal",
    "kaiming_uniform": "he_uniform",
}
# scheme -> the keys it takes besides `scheme` and `gain`, with their defaults
INIT_KEYS: dict[str, dict[str, Any]] = {
    "normal": {"std": 0.01},
    "uniform": {"limit": 0.05},
    "truncated_normal": {"std": 0.01},
    "identity": {"scale": 1.0},
    "orthogonal": {},
    "lecun_normal": {},
    "lecun_uniform": {},
    "xavier_normal": {},
    "xavier_uniform": {},
    "he_normal": {"mode": "fan_in"},
    "he_uniform": {"mode": "fan_in"},
    "variance_scaling": {"scale": 1.0, "mode": "fan_in", "distribution": "normal"},
}
INIT_SCHEMES = tuple(INIT_KEYS) + tuple(INIT_ALIASES)


class InitConfig(Compact):
    """``init: he_normal`` or ``{scheme: normal, std: 0.01, gain: 1.0}``."""

    scheme: Literal[INIT_SCHEMES]  # type: ignore[valid-type]
    gain: float = Field(1.0, gt=0)
    std: float | None = Field(None, gt=0)
    limit: float | None = Field(None, gt=0)
    scale: float | None = None
    mode: Literal["fan_in", "fan_out", "fan_avg"] | None = None
    distribution: Literal["normal", "truncated_normal", "uniform"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return {"scheme": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _keys(self) -> "InitConfig":
        self.scheme = INIT_ALIASES.get(self.scheme, self.scheme)
        takes = INIT_KEYS[self.scheme]
        for key in ("std", "limit", "scale", "mode", "distribution"):
            if key in takes:
                if getattr(self, key) is None:
                    setattr(self, key, takes[key])
            elif getattr(self, key) is not None:
                allowed = ", ".join(["gain", *takes]) or "gain"
                raise ValueError(f"'{key}' does not apply to scheme {self.scheme} (it takes: {allowed})")
        if self.scheme == "variance_scaling" and not self.scale > 0:
            raise ValueError("variance_scaling needs scale > 0")
        if self.scheme in ("he_normal", "he_uniform") and self.mode == "fan_avg":
            raise ValueError(f"{self.scheme} takes mode fan_in or fan_out (use variance_scaling for fan_avg)")
        return self


class LayerItem(Compact):
    """One entry of ``model.layers``."""

    @property
    def spec(self) -> str | None:
        return None


class DenseItem(LayerItem):
    type: Literal["dense"]
    units: int = Field(ge=1)


class ActivationItem(ActivationConfig):
    type: Literal["activation"]


class BatchNormItem(LayerItem):
    type: Literal["batchnorm"]


class DropoutItem(LayerItem):
    type: Literal["dropout"]
    p: float = Field(ge=0.0, lt=1.0)


class CustomItem(LayerItem):
    """``{type: custom, class: "module:Class", args: {...}}``: ``Class(**args)``."""

    model_config = ConfigDict(**Strict.model_config, populate_by_name=True)
    type: Literal["custom"]
    cls: str = Field(alias="class")
    args: dict[str, Any] = {}

    @field_validator("cls")
    @classmethod
    def _path(cls, value: str) -> str:
        if not CLASS_PATH.fullmatch(value):
            raise ValueError(f"should be {CLASS_PATH_HELP}")
        return value

    @property
    def spec(self) -> str | None:
        return self.cls


Item = Annotated[Union[DenseItem, ActivationItem, BatchNormItem, DropoutItem, CustomItem], Field(discriminator="type")]
# what depth/width/activation/residual/batchnorm/dropout default to; `layers` replaces them all
SHAPE_DEFAULTS: dict[str, Any] = {"activation": ActivationConfig(name="relu"), "residual": False,
                                  "batchnorm": False, "dropout": 0.0}
SHAPE_KEYS = ("depth", "width", *SHAPE_DEFAULTS)


class Importing(Compact):
    """A model that may name ``module:Class``. ``_allowed`` holds the folders ``validate`` let it import
    from: where it was loaded, not what it says, so two equal configs are equal wherever they were loaded."""

    _allowed: tuple[str, ...] | None = PrivateAttr(None)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(other) is type(self) and self.model_dump() == other.model_dump()


class MLPConfig(Importing):
    kind: Literal["mlp"] = "mlp"
    depth: int | None = Field(None, ge=1, description="number of hidden layers")
    width: int | None = Field(None, ge=1)
    activation: ActivationConfig | None = None
    init: InitConfig = InitConfig(scheme="xavier_normal")
    bias_init: float = 0.0
    residual: Union[bool, Annotated[int, Field(ge=1)], None] = None
    batchnorm: bool | None = None
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    layers: list[Item] | None = Field(None, description="the hidden layers, instead of depth/width/activation")
    import_dir: str | None = Field(None, description="folder searched first for module:Class (default: the config's)")

    _activation = field_validator("activation", mode="before")(_named)

    @field_validator("residual")
    @classmethod
    def _residual(cls, value: bool | int | None) -> bool | int | None:
        """``true`` means blocks of 2 layers; an integer k is the block size."""
        return 2 if value is True else value

    @field_validator("layers")
    @classmethod
    def _first_dense(cls, items: list | None) -> list | None:
        if items and items[0].type != "dense":
            raise ValueError(f"item [0] is {{type: {items[0].type}}}, but the list must start with {{type: dense, "
                             "units: N}: each dense item starts a logged layer, and what follows it belongs to it")
        return items

    @model_validator(mode="after")
    def _shape(self) -> "MLPConfig":
        if self.layers is not None:
            given = [k for k in SHAPE_KEYS if getattr(self, k) is not None]
            if given:
                raise ValueError(f"'model.layers' replaces {', '.join(SHAPE_KEYS)}: remove "
                                 f"{', '.join('model.' + k for k in given)} or set them to null (use activation, "
                                 "batchnorm and dropout items in the list)")
            return self
        missing = [f"model.{k}" for k in ("depth", "width") if getattr(self, k) is None]
        if missing:
            raise ValueError(f"missing key {' and '.join(repr(m) for m in missing)} (or give 'model.layers', "
                             "a list of layers, instead of depth and width)")
        for key, default in SHAPE_DEFAULTS.items():
            if getattr(self, key) is None:
                setattr(self, key, default)
        return self

    @property
    def block(self) -> int:
        """Residual block size k (0 = no skip connections)."""
        return int(self.residual) if self.residual not in (False, None) else 0

    def plan(self) -> list[tuple[Any, str, int]]:
        """The hidden layers as (item, key path naming it, width of its logged layer)."""
        if self.layers is None:
            hidden = [(DenseItem(type="dense", units=self.width), "model.width"),
                      *([(BatchNormItem(type="batchnorm"), "model.batchnorm")] if self.batchnorm else []),
                      (ActivationItem(type="activation", **self.activation.model_dump()), "model.activation"),
                      *([(DropoutItem(type="dropout", p=self.dropout), "model.dropout")] if self.dropout else [])]
            return [(item, where, self.width) for _ in range(self.depth) for item, where in hidden]
        out, width = [], 0
        for i, item in enumerate(self.layers):
            width = getattr(item, "units", width)
            key = {"custom": ".class", "activation": ".name"}.get(item.type, "")
            out.append((item, f"model.layers[{i}]{key}", width))
        return out

    def custom_refs(self) -> list[tuple[Any, str, int]]:
        """The plan's items that name a class of your own (module:Class), once per key path."""
        return list({where: (item, where, w) for item, where, w in self.plan() if item.spec}.values())


RNN_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")
BUILTIN_CELLS = ("vanilla", "lstm", "gru")
CELL_PATH_HELP = "an import path module:Class of your own cell (e.g. cs231n_layers:LSTMCell)"


class RNNConfig(Importing):
    """A recurrent net: ``num_layers`` cells of ``hidden`` units and a dense read-out."""

    kind: Literal["rnn"]
    cell: str = Field("vanilla", description="vanilla, lstm, gru, or module:Class (a cell of your own)")
    cell_args: dict[str, Any] = Field({}, description="keyword arguments of a cell of your own")
    import_dir: str | None = Field(None, description="folder searched first for module:Class (default: the config's)")
    hidden: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    activation: Literal[RNN_ACTIVATIONS] | None = None  # type: ignore[valid-type]  # vanilla only; tanh
    init: InitConfig = InitConfig(scheme="xavier_normal")  # input-to-hidden and read-out weights
    recurrent_init: InitConfig = InitConfig(scheme="orthogonal")  # hidden-to-hidden weights
    bias_init: float = 0.0
    forget_bias: float | None = None  # lstm only; 1.0

    @field_validator("cell")
    @classmethod
    def _cell(cls, value: str) -> str:
        if value not in BUILTIN_CELLS and not CLASS_PATH.fullmatch(value):
            raise ValueError(f"should be {', '.join(BUILTIN_CELLS)} or {CELL_PATH_HELP}")
        return value

    @property
    def custom(self) -> bool:
        """A cell of your own (module:Class), run by gradlab's step protocol."""
        return self.cell not in BUILTIN_CELLS

    @model_validator(mode="after")
    def _cell_keys(self) -> "RNNConfig":
        if self.custom and (self.activation is not None or self.forget_bias is not None):
            key = "activation" if self.activation is not None else "forget_bias"
            raise ValueError(f"'{key}' applies to the built-in cells only; a cell of your own ({self.cell}) takes "
                             "its arguments from model.cell_args")
        if self.cell_args and not self.custom:
            raise ValueError(f"'cell_args' applies to a cell of your own (module:Class) only, not {self.cell}")
        if self.activation is not None and self.cell != "vanilla":
            raise ValueError(f"'activation' applies to cell vanilla only ({self.cell} has its own gates)")
        if self.forget_bias is not None and self.cell != "lstm":
            raise ValueError(f"'forget_bias' applies to cell lstm only, not {self.cell}")
        if self.cell == "vanilla" and self.activation is None:
            self.activation = "tanh"
        if self.cell == "lstm" and self.forget_bias is None:
            self.forget_bias = 1.0
        return self


def _model_kind(value: Any) -> str:
    """``kind`` picks the model schema; a model without one is an MLP."""
    kind = value.get("kind", "mlp") if isinstance(value, dict) else getattr(value, "kind", "mlp")
    return kind if isinstance(kind, str) else _short(kind)  # another: "'model.kind' is ...; allowed: ..."


ModelConfig = Annotated[
    Union[Annotated[MLPConfig, Tag("mlp")], Annotated[RNNConfig, Tag("rnn")]],
    Discriminator(_model_kind),
]


# --------------------------------------------------------------------------- data

class DataBase(Compact):
    val_fraction: float = Field(0.2, ge=0.0, lt=1.0)
    standardize: bool = True


class Synthetic(DataBase):
    n_samples: int = Field(512, ge=2)
    noise: float = Field(0.1, ge=0.0)


class SpiralsData(Synthetic):
    kind: Literal["spirals"]
    n_classes: int = Field(2, ge=2)


class MoonsData(Synthetic):
    kind: Literal["moons"]


class BlobsData(Synthetic):
    kind: Literal["blobs"]
    n_features: int = Field(2, ge=1)
    n_classes: int = Field(3, ge=2)
    noise: float = Field(1.0, ge=0.0)


class XorData(Synthetic):
    kind: Literal["xor"]


class ParityData(Synthetic):
    """Parity of bits: ``n_features`` bits as a vector, or, with ``T``, a sequence of T bits."""

    kind: Literal["parity"]
    n_features: int = Field(4, ge=1, description="number of bits")
    noise: float = Field(0.0, ge=0.0)
    T: int | None = Field(None, ge=1, description="sequence length: one bit per step, parity at the last")


class SequenceTask(DataBase):
    """A sequence task generated on the fly: X of shape (n_samples, T, features)."""

    T: int = Field(100, ge=2, description="sequence length")
    n_samples: int = Field(2000, ge=2)
    standardize: bool = False  # markers and symbols keep their meaning


class AddingData(SequenceTask):
    """Hochreiter & Schmidhuber 1997 / Le et al. 2015: values U[0,1] and two markers; the target is the
    sum of the two marked values (predicting 1 always gives MSE 1/6)."""

    kind: Literal["adding"]


class CopyData(SequenceTask):
    """Remember ``length`` symbols over a delay and write them out at the end (loss at every step)."""

    kind: Literal["copy"]
    n_symbols: int = Field(8, ge=2)
    length: int = Field(5, ge=1)


class TemporalOrderData(SequenceTask):
    """Hochreiter & Schmidhuber 1997, task 6a: the order of two relevant symbols (X or Y) among
    distractors, 4 classes (XX, XY, YX, YY), answered at the last step."""

    kind: Literal["temporal_order"]


class TeacherData(Synthetic):
    kind: Literal["teacher"]
    n_features: int = Field(10, ge=1)
    n_outputs: int = Field(1, ge=1)
    depth: int = Field(2, ge=1)
    width: int = Field(32, ge=1)
    activation: Literal[ACTIVATIONS] = "tanh"  # type: ignore[valid-type]
    noise: float = Field(0.0, ge=0.0)


class CsvData(DataBase):
    kind: Literal["csv"]
    path: str
    target: str
    task: Literal["auto", "classification", "regression"] = "auto"


class NpzData(DataBase):
    kind: Literal["npz"]
    path: str
    task: Literal["auto", "classification", "regression"] = "auto"


DataConfig = Annotated[
    Union[SpiralsData, MoonsData, BlobsData, XorData, ParityData, TeacherData, CsvData, NpzData,
          AddingData, CopyData, TemporalOrderData],
    Field(discriminator="kind"),
]


# --------------------------------------------------------------------------- training

class OptimizerConfig(Compact):
    name: Literal["sgd", "momentum", "adam"]
    momentum: float | None = Field(None, ge=0.0, lt=1.0)
    beta1: float | None = Field(None, ge=0.0, lt=1.0)
    beta2: float | None = Field(None, ge=0.0, lt=1.0)
    eps: float | None = Field(None, gt=0.0)

    @model_validator(mode="after")
    def _keys(self) -> "OptimizerConfig":
        takes = {"sgd": {}, "momentum": {"momentum": 0.9},
                 "adam": {"beta1": 0.9, "beta2": 0.999, "eps": 1e-8}}[self.name]
        for key in ("momentum", "beta1", "beta2", "eps"):
            if key in takes:
                if getattr(self, key) is None:
                    setattr(self, key, takes[key])
            elif getattr(self, key) is not None:
                raise ValueError(f"'{key}' does not apply to optimizer {self.name}")
        return self


class ClipConfig(Strict):
    """``clip: 1.0`` or ``{mode: norm, threshold: 1.0, scope: global}``."""

    mode: Literal["norm", "value"] = "norm"
    threshold: float = Field(gt=0)
    scope: Literal["global", "layer"] = "global"

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return {"threshold": value} if isinstance(value, (int, float)) and not isinstance(value, bool) else value


class BPTTConfig(Strict):
    """Truncated BPTT (Williams & Peng 1990): chunks of ``truncate`` steps; the hidden state is
    carried across chunks, the gradient flows only within one."""

    truncate: int = Field(ge=1)


class TrainConfig(Strict):
    optimizer: OptimizerConfig = OptimizerConfig(name="sgd")
    lr: float = Field(0.1, gt=0)
    batch_size: Union[Annotated[int, Field(ge=1)], Literal["full"]] = 64
    steps: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    shuffle: bool = True
    clip: ClipConfig | None = None
    l2: float = Field(0.0, ge=0.0)
    dtype: Literal["float64", "float32"] = "float64"
    bptt: BPTTConfig | None = None  # recurrent nets: null = full backpropagation through time
    threads: int = Field(DEFAULT_THREADS, ge=1, le=MAX_THREADS,
                         description="BLAS threads while this config computes (train, check, a sweep's run)")

    _optimizer = field_validator("optimizer", mode="before")(_named)

    @model_validator(mode="after")
    def _length(self) -> "TrainConfig":
        if self.steps is not None and self.epochs is not None:
            raise ValueError("give either 'steps' or 'epochs', not both")
        if self.steps is None and self.epochs is None:
            self.steps = 500
        return self


class LogConfig(Strict):
    every: int = Field(1, ge=1, description="log every k-th step (step 0 and the last are always logged)")
    val_every: int = Field(10, ge=1, description="measure validation loss every k-th step")
    out: str = "runs"


class CheckConfig(Strict):
    """``gradlab check``: analytic gradients against centred differences on a fixed batch."""

    batch: int = Field(8, ge=1, description="the first `batch` training samples")
    eps: float | None = Field(None, description="centred-difference step relative to each tensor's scale, "
                                          "h = eps * max(1, rms); default 1e-5 (float64), 5e-3 (float32)")
    # auto: full up to 100000 parameters, a sample of what costs a sequence pass per entry
    mode: Literal["auto", "full", "sample", "directional"] = "auto"
    samples: int = Field(10, ge=1, description="entries per tensor in sample mode")
    directions: int = Field(4, ge=1, description="random unit directions per tensor in directional mode")
    dtype: Literal["float64", "float32"] = "float64"  # the check's own, whatever train.dtype is
    strict: bool = Field(False, description="the 1e-7 tier for nets with kinks too")
    loss_scale: float = Field(1.0, gt=0, description="multiplies the loss (and its round-off alike)")

    @field_validator("eps")
    @classmethod
    def _eps(cls, value: float | None) -> float | None:
        if value is not None and not EPS_RANGE[0] <= value <= EPS_RANGE[1]:
            raise ValueError(f"allowed: {EPS_RANGE[0]:g} to {EPS_RANGE[1]:g}, relative to each tensor's scale "
                             "(default 1e-5; a smaller step is lost to round-off, a larger one spans a curve)")
        return value


class Config(Strict):
    name: str = Field("run", pattern=r"^[A-Za-z0-9_.+=,-]+$")
    seed: int = Field(0, ge=0)
    data: DataConfig
    model: ModelConfig
    loss: Literal["bce", "cross_entropy", "mse"] = "cross_entropy"
    train: TrainConfig = TrainConfig()
    log: LogConfig = LogConfig()
    check: CheckConfig = CheckConfig()

    def resolved(self) -> dict:
        """The config with every default filled in, as plain YAML-ready data."""
        return self.model_dump(mode="json", by_alias=True)


# --------------------------------------------------------------------------- loading

MAX_BYTES = 5_000_000  # a config or sweep file is a few kB; /dev/zero would be read until memory ran out
_FILE_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def read_text(path: str | Path, what: str = "config") -> str:
    """The UTF-8 text of a file the user names (``what``: config, sweep, base config); a ConfigError naming
    it for a missing file, one that is not a regular file (a folder, /dev/zero, a FIFO) or over 5 MB."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found.") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the {what} file ({getattr(exc, 'strerror', None) or exc}).") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise ConfigError(f"{path}: {kind}, not a {what} file; allowed: a regular YAML file of at most "
                          f"{MAX_BYTES // 1_000_000} MB.")
    with os.fdopen(fd, "rb") as file:
        try:
            data = file.read(MAX_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the {what} file ({exc.strerror or exc}).") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"{path}: over {MAX_BYTES // 1_000_000} MB, too large for a {what} file; allowed: a YAML "
                          f"file of at most {MAX_BYTES // 1_000_000} MB.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {data[exc.start:exc.start + 1]!r}); allowed: "
                          f"a {what} file in UTF-8.") from None


MAX_NODES = 100_000  # values in a config once its aliases are expanded; a shipped sweep has a few hundred
MERGE_TAG = "tag:yaml.org,2002:merge"
# YAML 1.2 floats: 1e-3, 2e-06 and 1e5 are numbers (YAML 1.1 wants a dot and a signed exponent: 1.0e-3)
FLOAT_12 = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")


class _SafeLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys instead of silently keeping the last, takes merge keys
    (``<<: *defaults``), reads ``1e-3`` as a float, and refuses a document whose aliases expand past
    MAX_NODES values (an alias bomb: 1.5 kB that would expand to millions)."""

    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}

    def construct_document(self, node: yaml.Node) -> Any:
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise yaml.constructor.ConstructorError(
                None, None, f"the aliases (*name) expand to more than {MAX_NODES:,} values; allowed: at most "
                f"{MAX_NODES:,} (write the data out, or alias less)", node.start_mark)
        return super().construct_document(node)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """Report values PyYAML cannot build (``2020-02-30``, ``!!int abc``, 5000-digit ints) by line."""
        try:
            return super().construct_object(node, deep=deep)
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            value = node.value if isinstance(node.value, str) else ""
            shown = f" {value[:40]!r}" if value else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read the value{shown} ({exc})", node.start_mark) from None


_SafeLoader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+.0123456789"))


def _expanded_size(node: yaml.Node, sizes: dict) -> int:
    """How many values ``node`` holds with every alias expanded, counted once per distinct node
    (an alias is the same node object), so the count costs the document's size, not the expansion's."""
    key = id(node)
    if key in sizes:
        if sizes[key] is None:  # an alias inside its own anchor: expands forever
            return MAX_NODES + 1
        return sizes[key]
    sizes[key] = None
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[key] = min(total, MAX_NODES + 1)
    return sizes[key]


def _mapping(loader: _SafeLoader, node: yaml.MappingNode) -> dict:
    """A mapping; a key written twice is an error. ``<<: *defaults`` (or ``<<: [*a, *b]``, the first
    winning) merges mappings in, and a key the mapping writes itself overrides a merged one."""
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, f"expected a mapping, but found {node.id}", node.start_mark)
    merged: dict | None = None
    seen: dict = {}
    for key_node, value_node in node.value:
        if key_node.tag == MERGE_TAG:
            if merged is not None:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key '<<' (line {line})",
                                                        key_node.start_mark)
            merged = _merged(loader, value_node)
            continue
        key = loader.construct_object(key_node)
        if not isinstance(key, collections.abc.Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a plain name, not a {key_node.id}", key_node.start_mark)
        if key in seen:
            line = key_node.start_mark.line + 1
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{key}' (line {line})", key_node.start_mark)
        seen[key] = loader.construct_object(value_node, deep=True)
    return {**merged, **seen} if merged else seen


def _merged(loader: _SafeLoader, node: yaml.Node) -> dict:
    """The mapping ``<<`` merges: one mapping, or a list of them where an earlier one wins."""
    sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
    out: dict = {}
    for source in reversed(sources):
        if not isinstance(source, yaml.MappingNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"'<<' merges a mapping or a list of mappings, not a {source.id}", source.start_mark)
        out.update(loader.construct_object(source, deep=True))
    return out


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> data, with syntax errors reported by line; no python tags."""
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"{source}: YAML error{where}: {problem}.") from None
    except yaml.reader.ReaderError as err:  # control characters: no mark, only a position
        line = text.count("\n", 0, err.position) + 1
        char = f"#x{err.character:04x}" if isinstance(err.character, int) else repr(err.character)
        raise ConfigError(f"{source}: YAML error at line {line}: character {char} is not allowed "
                          "(special characters are not allowed in YAML).") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: YAML error: {' '.join(str(err).split())}.") from None
    except RecursionError:
        raise ConfigError(f"{source}: YAML error: the data is nested too deeply.") from None


def apply_overrides(raw: dict, overrides: list[str], source: str) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config mapping."""
    if overrides and not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of keys (name, seed, data, model, loss, train, log, check).")
    for item in overrides:
        path, sep, text = item.partition("=")
        if not sep or not all(key_path(path)):
            raise ConfigError(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set model.depth=50.")
        set_value(raw, path, parse_yaml(text, f"--set {path}"), f"--set {item!r}")
    return raw


def key_path(path: str) -> list[str]:
    """``model.layers[3].units`` -> ["model", "layers", "3", "units"]."""
    return path.strip().replace("[", ".").replace("]", "").split(".")


def set_value(raw: dict, path: str, value: Any, where: str) -> None:
    """Set the dotted ``path`` of a raw config mapping to ``value``, making the mappings on the way;
    ``where`` names the source (``--set ...``, a sweep's grid key) in errors."""
    keys = key_path(path)
    node = raw
    for i, key in enumerate(keys[:-1]):
        node, key = _slot(node, key, where)
        child = node[key] if isinstance(node, list) else node.get(key)
        if isinstance(child, str) and keys[i + 1] != "name" and key in ("activation", "optimizer"):
            child = {"name": child}
        elif isinstance(child, str) and key == "init":
            child = {"scheme": child}
        elif isinstance(child, (int, float)) and key == "clip":
            child = {"threshold": child}
        elif isinstance(child, list) and not keys[i + 1].isdecimal():
            _slot(child, keys[i + 1], where)  # raises: not an index of the list (layers[-1], layers.units)
        elif not (isinstance(child, dict) or isinstance(child, list) and keys[i + 1].isdecimal()):
            child = {}
        node[key] = child
        node = child
    node, key = _slot(node, keys[-1], where)
    node[key] = value


def _slot(node: dict | list, key: str, item: str) -> tuple[dict | list, Any]:
    """(node, key) to read or write; a list takes the decimal indices of ``layers.3`` / ``layers[3]``."""
    if not isinstance(node, list):
        return node, key
    if not (key.isdecimal() and int(key) < len(node)):
        allowed = f"0..{len(node) - 1}" if node else "none: the list is empty"
        negative = "; counting from the end (-1) is not supported" if key.startswith("-") else ""
        raise ConfigError(f"{item}: '{key}' is not an index of that list (allowed: {allowed}{negative}).")
    return node, int(key)


def _schema_keys(loc: tuple, root: type[BaseModel] = Config) -> tuple[str, list[str]]:
    """Turn a pydantic error location into a dotted key path and the keys allowed at its end."""
    shown: list[str] = []
    model: Any = root
    allowed: list[str] = []
    for part in loc:
        if isinstance(part, int):
            shown.append(f"[{_short(part)}]")
            continue
        fields = _keyed(model)
        if fields is not None and part in fields:
            shown.append(str(part))
            allowed = list(fields)
            model = _submodel(fields[part].annotation)
            continue
        member = _union_member(model, part)
        if member is not None:  # a discriminated-union tag or a union branch name
            model = member
            allowed = list(_keyed(member))
            continue
        if fields is None:  # the name of a union branch ('constrained-int', "literal['full']")
            continue
        allowed = list(fields)
        shown.append(str(part))  # an unknown key
    return ".".join(shown).replace(".[", "["), allowed


def _keyed(model: Any) -> dict | None:
    """A model's fields by the key the user writes (its alias: ``class``), or None."""
    fields = getattr(model, "model_fields", None)
    return None if fields is None else {f.alias or name: f for name, f in fields.items()}


def _members(annotation: Any) -> list:
    args = getattr(annotation, "__args__", None) or ()
    out = []
    for arg in args:
        out.extend(_members(arg) if getattr(arg, "__args__", None) and not hasattr(arg, "model_fields") else [arg])
    return out


def _submodel(annotation: Any) -> Any:
    if hasattr(annotation, "model_fields"):
        return annotation
    models = [m for m in _members(annotation) if hasattr(m, "model_fields")]
    return models if len(models) > 1 else (models[0] if models else None)


def _union_member(model: Any, tag: Any) -> Any:
    if not isinstance(model, list):
        return None
    for member in model:
        for key in ("kind", "type"):  # the discriminators: data.kind, model.layers[i].type
            field = member.model_fields.get(key)
            if field is not None and tag in getattr(field.annotation, "__args__", ()):
                return member
        if member.__name__ == tag:
            return member
    return None


def _tags(key: str) -> str:
    """The values a discriminator key takes: 'spirals', 'moons', ... for kind; 'dense', ... for type."""
    members = {"kind": _members(DataConfig), "type": _members(Item)}.get(key, [])
    return ", ".join(f"'{t}'" for m in members for t in m.model_fields[key].annotation.__args__)


def _short(value: Any, limit: int = 60) -> str:
    """repr() of a bad value for a message, shortened; never fails (5000-digit ints)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int (or a list holding one) too long to print
        text = (f"an integer of about {value.bit_length() * 0.30103:.0f} digits" if isinstance(value, int)
                else f"a {type(value).__name__} holding a value too long to print")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# a number of the wrong type (strict: no bool, no string, no float for an int), and what is allowed
TYPE_HELP = {"int_type": "should be a whole number, e.g. 3 or 1e4 (true, 1.5 and \"3\" are not)",
             "float_type": "should be a number, e.g. 0.1 or 1e-3 (true and \"0.1\" are not)",
             "bool_type": "should be true or false"}


def _describe(err: dict) -> str:
    path, allowed = _schema_keys(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        key = path.rsplit(".", 1)[-1]
        parent = path.rpartition(".")[0] or "the top level"
        guess = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
        hint = f" Did you mean '{guess[0]}'?" if guess else ""
        return f"unknown key '{path}'.{hint} Allowed keys in {parent}: {', '.join(allowed)}."
    if kind == "missing":
        return f"missing key '{path}'."
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        expected = err.get("ctx", {}).get("expected_tags", "")
        got = err.get("input")
        key = err.get("ctx", {}).get("discriminator", "'kind'").strip("'")
        key = "kind" if key.endswith("()") else key  # model's: a function of its kind
        what = _short(got.get(key)) if isinstance(got, dict) and key in got else "nothing"
        return f"'{path}.{key}' is {what}; allowed: {expected or _tags(key)}."
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {_short(value)})"
    msg = TYPE_HELP.get(kind, err["msg"].removeprefix("Value error, "))
    if msg.startswith("missing key"):  # a key required only without another one (model.depth)
        return f"{msg}."
    return f"'{path or 'top level'}': {msg}{shown}."


def _problems(exc: ValidationError) -> list[str]:
    """One line per key path; the branches of a union (``batch_size: 64 | full``) joined by 'or'."""
    by_path: dict[str, list[dict]] = {}
    for err in exc.errors(include_url=False):
        by_path.setdefault(_schema_keys(tuple(err["loc"]))[0], []).append(err)
    lines = []
    for path, errs in by_path.items():
        if len(errs) == 1 or any(e["type"] in ("extra_forbidden", "missing") for e in errs):
            lines.extend(_describe(e) for e in errs)
            continue
        value = errs[0].get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {_short(value)})"
        msgs = " or ".join(e["msg"].removeprefix("Input should be ").removeprefix("Value error, ") for e in errs)
        lines.append(f"'{path}': should be {msgs}{shown}.")
    return list(dict.fromkeys(lines))


def validate(raw: Any, source: str = "<config>", folder: str | Path | None = None, *, imports: bool = True,
             allow_imports: Sequence[str | Path] = ()) -> Config:
    """Validate raw config data; raise ConfigError listing every problem.

    ``folder`` (default: the current one) is the config's own folder, where ``module:Class`` modules are
    looked for (or in ``model.import_dir``, if it lies inside it). A config naming ``module:Class`` runs that
    module's code, so only modules whose files lie under ``folder`` or a folder of ``allow_imports`` are
    imported; any other is refused. With ``imports=False`` no module is imported: ``module:Class`` names stay
    text (what ``report`` reads).
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of keys (name, seed, data, model, loss, train, log, check).")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: " + " ".join(_problems(exc))) from None
    except (TypeError, ValueError, RecursionError) as exc:  # unhashable keys and the like
        raise ConfigError(f"{source}: invalid config ({exc}).") from None
    if imports:
        _resolve_custom(config, Path(folder or "."), source, allow_imports)
    return config


def import_roots(folder: str | Path, allow_imports: Sequence[str | Path] = ()) -> tuple[str, ...]:
    """The folders whose modules a config may import: its own folder, then each ``--allow-imports`` folder
    (symlinks resolved); a ConfigError for one that is not a folder."""
    roots = [Path(folder).resolve()]
    for given in allow_imports:
        try:
            path = Path(given).expanduser().resolve()
            usable = path.is_dir()
        except (OSError, ValueError, RuntimeError):
            usable = False
        if not usable:
            raise ConfigError(f"{ALLOW_FLAG} {given}: no such folder; allowed: a folder whose modules a config may "
                              "import (module:Class).")
        roots.append(path)
    return tuple(dict.fromkeys(str(r) for r in roots))


def allowed_imports(model: Any) -> tuple[str, ...]:
    """The folders a model's ``module:Class`` may be imported from: those ``validate`` allowed, else (a config
    built without it) its ``import_dir`` alone."""
    allowed = getattr(model, "_allowed", None)
    return allowed if allowed is not None else (str(Path(model.import_dir or ".").resolve()),)


def _inside(path: Path, roots: Sequence[str]) -> bool:
    return any(path.is_relative_to(root) for root in roots)


def _resolve_custom(config: Config, folder: Path, source: str, allow_imports: Sequence[str | Path] = ()) -> None:
    """Make ``model.import_dir`` absolute (relative to ``folder``); import, build and check every
    class of your own the model names, so a bad one is a ConfigError naming its key path. A layer
    that changes the width hands its output width to the next one. Modules come only from ``folder``
    and the ``allow_imports`` folders (``import_roots``)."""
    model = config.model
    refs = model.custom_refs() if isinstance(model, MLPConfig) else [(None, "model.cell", None)] * model.custom
    if model.import_dir is None and not refs:
        return
    roots = import_roots(folder, allow_imports)
    try:
        home = (folder / (model.import_dir or ".")).resolve()
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"{source}: 'model.import_dir': not a usable path ({exc}).") from None
    if refs and not home.is_dir():
        what = "model.cell" if isinstance(model, RNNConfig) else "model.activation or model.layers"
        raise ConfigError(f"{source}: 'model.import_dir': no folder {home}; allowed: a folder (relative to the "
                          f"config file's) holding the modules of {what}.")
    if refs and not _inside(home, roots):
        raise ConfigError(f"{source}: 'model.import_dir': {home} lies outside the config's folder ({roots[0]}); a "
                          "config naming module:Class runs that module's code, so modules are imported only from "
                          f"the config's folder: pass {ALLOW_FLAG} {home} to allow that folder.")
    model.import_dir = str(home)
    model._allowed = roots
    import numpy as np  # here, like gradlab.nn, which imports this module

    from .nn.custom import CustomError, make_cell, make_custom, output_width

    dtype = np.dtype(config.train.dtype).type
    where = "model.cell"
    try:
        if isinstance(model, RNNConfig):
            if model.custom:  # the data's feature count is not known yet: a one-feature dummy tries the protocol
                make_cell(model.cell, model.import_dir, model.cell_args, 1, model.hidden, np.random.default_rng(0),
                          dtype, roots)
            return
        width, seen = 0, {}
        for item, where, _ in model.plan():
            width = getattr(item, "units", width)
            if item.spec and (where, width) not in seen:
                layer = make_custom(item.spec, model.import_dir, getattr(item, "args", {}), width, dtype, 1,
                                    activation=item.type == "activation", allowed=roots)
                seen[where, width] = output_width(layer, width, dtype)
            width = seen.get((where, width), width)
    except CustomError as exc:
        raise ConfigError(f"{source}: '{where}': {exc}.") from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                allow_imports: Sequence[str | Path] = ()) -> Config:
    """Read, override and validate a YAML config. Data paths become relative to its folder. A config
    naming ``module:Class`` runs that module's code: only modules under the config's folder, or under a
    folder of ``allow_imports``, are imported (``validate``)."""
    path = Path(path)
    raw = parse_yaml(read_text(path, "config"), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping of keys (name, seed, data, model, loss, train, log, check).")
    raw = apply_overrides(raw, list(overrides), str(path))
    config = validate(raw, str(path), path.parent, allow_imports=allow_imports)
    data = config.data
    if hasattr(data, "path") and not Path(data.path).is_absolute():
        data.path = str((path.parent / data.path).resolve())  # so the run's config.yaml finds it too
    return config


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...] = (),
                     allow_imports: Sequence[str | Path] = ()) -> Config:
    """Validate a config given as a Python mapping (what tests and the API use); its folder, for
    ``module:Class``, is the current one."""
    return validate(apply_overrides(copy.deepcopy(raw), list(overrides), "<config>"), "<config>",
                    allow_imports=allow_imports)

