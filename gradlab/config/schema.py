"""The YAML schema: every key, its type, range and default, as pydantic models.

Every key name here is user interface: configs, ``--set`` paths and the resolved ``config.yaml`` of a run
all use them.
"""
# no "from __future__ import annotations": pydantic would evaluate every field's annotation string as each
# model is built, a quarter of this module's import time; Python 3.10 reads `int | None` as it is

import copy
import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from ..errors import EPS_RANGE
from ..threads import DEFAULT as DEFAULT_THREADS
from ..threads import MAX as MAX_THREADS


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


def _replaced_by_layers(model: BaseModel, keys: tuple[str, ...], items: str) -> None:
    """A model given as a ``layers`` list takes none of the shape keys the list replaces."""
    given = [k for k in keys if getattr(model, k) is not None]
    if given:
        raise ValueError(f"'model.layers' replaces {', '.join(keys)}: remove {', '.join('model.' + k for k in given)} "
                         f"or set them to null (use {items} items in the list)")


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
            _replaced_by_layers(self, SHAPE_KEYS, "activation, batchnorm and dropout")
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


# ----- convolutional nets: `model.kind: cnn`, by stages (channels, depth, ...) or a `layers` list of items

class ConvItem(LayerItem):
    """``{type: conv, channels: 16, kernel: 3, stride: 1, padding: same}``: padding same keeps the image's
    size at stride 1 (it pads (kernel - 1) / 2, so the kernel must be odd); an integer pads that many zeros."""

    type: Literal["conv"]
    channels: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    padding: Union[Literal["same"], Annotated[int, Field(ge=0)]] = "same"

    @model_validator(mode="after")
    def _odd(self) -> "ConvItem":
        if self.padding == "same" and self.kernel % 2 == 0:
            raise ValueError(f"padding same needs an odd kernel (it pads (kernel - 1) / 2 on every side), got kernel "
                             f"{self.kernel}; allowed: an odd kernel, or an integer padding")
        return self


class PoolItem(LayerItem):
    """``{type: maxpool, size: 2, stride: 2}`` or avgpool: a size x size window every stride pixels (stride null:
    size), per channel, without padding."""

    type: Literal["maxpool", "avgpool"]
    size: int = Field(2, ge=1)
    stride: int | None = Field(None, ge=1)


class GapItem(LayerItem):
    """``{type: gap}``: global average pooling, (N, H, W, C) -> (N, C)."""

    type: Literal["gap"]


class FlattenItem(LayerItem):
    """``{type: flatten}``: (N, H, W, C) -> (N, H * W * C)."""

    type: Literal["flatten"]


class ResidualItem(LayerItem):
    """``{type: residual, channels: 32, stride: 2}``: two convolutions (kernel x kernel, padding same), each with
    batch norm when ``batchnorm``, ``activation`` between them, plus the input: itself, or its 1x1 projection
    (stride ``stride``) where the channels or the size change (He et al. 2016). The activation after the sum is
    the activation item that follows."""

    type: Literal["residual"]
    channels: int = Field(ge=1)
    kernel: int = Field(3, ge=1)
    stride: int = Field(1, ge=1)
    batchnorm: bool = True
    activation: ActivationConfig = ActivationConfig(name="relu")

    _activation = field_validator("activation", mode="before")(_named)

    @model_validator(mode="after")
    def _odd(self) -> "ResidualItem":
        if self.kernel % 2 == 0:
            raise ValueError(f"a residual block pads (kernel - 1) / 2, so its kernel must be odd, got {self.kernel}")
        return self


CNNItem = Annotated[Union[ConvItem, PoolItem, GapItem, FlattenItem, ResidualItem, DenseItem, ActivationItem,
                          BatchNormItem, DropoutItem], Field(discriminator="type")]
SPATIAL_ITEMS = ("conv", "maxpool", "avgpool", "residual")  # items that take an image and give one
HEAD_ITEMS = ("gap", "flatten")  # image -> vector: what must come before any dense item
# what the stage keys default to; `layers` replaces them all
CNN_DEFAULTS: dict[str, Any] = {"channels": [16, 32], "depth": 2, "kernel": 3, "pool": "max",
                                "activation": ActivationConfig(name="relu"), "batchnorm": False, "residual": False,
                                "dropout": 0.0, "head": "gap"}


class CNNConfig(Compact):
    """A convolutional net on images (N, H, W, C), by stages or as a ``layers`` list.

    By stages: ``conv1`` takes the image to ``channels[0]``; then each stage s has ``depth`` conv layers of
    ``channels[s]`` (``residual``: depth / 2 blocks of two), the stages joined by ``pool`` (max, avg; none: the
    first conv of the next stage has stride 2); then the ``head`` (gap or flatten) and the output dense layer:
    2 + len(channels) * depth weighted layers (ResNet-20 is channels [16, 32, 64], depth 6, residual).
    """

    kind: Literal["cnn"]
    channels: list[Annotated[int, Field(ge=1)]] | None = Field(None, min_length=1,
                                                              description="channels of each stage (default [16, 32])")
    depth: int | None = Field(None, ge=1, description="conv layers per stage, after conv1 (default 2)")
    kernel: int | None = Field(None, ge=1, description="kernel size, odd (padding same; default 3)")
    pool: Literal["max", "avg", "none"] | None = Field(None, description="between stages: a 2x2 max or avg pool, or "
                                                                         "none: stride 2 (default max)")
    activation: ActivationConfig | None = None
    init: InitConfig = InitConfig(scheme="he_normal")
    bias_init: float = 0.0
    batchnorm: bool | None = None
    residual: bool | None = Field(None, description="blocks of two conv layers plus a shortcut (default false)")
    dropout: float | None = Field(None, ge=0.0, lt=1.0)
    head: Literal["gap", "flatten"] | None = Field(None, description="image -> vector before the output layer: gap "
                                                                     "(global average pooling) or flatten (default gap)")
    layers: list[CNNItem] | None = Field(None, description="the layers, instead of the stage keys")

    _activation = field_validator("activation", mode="before")(_named)

    @field_validator("channels", mode="before")
    @classmethod
    def _one_stage(cls, value: Any) -> Any:
        """``channels: 16`` is one stage of 16 channels."""
        return [value] if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("kernel")
    @classmethod
    def _odd(cls, value: int | None) -> int | None:
        if value is not None and value % 2 == 0:
            raise ValueError(f"should be odd: conv layers pad (kernel - 1) / 2 to keep the image's size; allowed: "
                             f"{value - 1} or {value + 1}")
        return value

    @field_validator("activation")
    @classmethod
    def _built_in(cls, value: ActivationConfig | None) -> ActivationConfig | None:
        if value is not None and value.spec:
            raise ValueError(f"a cnn takes the built-in activations only, not {value.name}; allowed: "
                             f"{', '.join(ACTIVATIONS)}")
        return value

    @field_validator("layers")
    @classmethod
    def _items(cls, items: list | None) -> list | None:
        if items is not None and not items:
            raise ValueError("the list is empty; allowed: a list that starts with {type: conv, channels: N} or "
                             "{type: residual, channels: N} and turns the image into a vector with {type: gap} or "
                             "{type: flatten} (or leave model.layers out and give model.channels)")
        if items:
            _check_items(items)
        return items

    @model_validator(mode="after")
    def _shape(self) -> "CNNConfig":
        if self.layers is not None:
            _replaced_by_layers(self, tuple(CNN_DEFAULTS), "conv, pool, residual, activation, batchnorm and dropout")
            return self
        for key, default in CNN_DEFAULTS.items():
            if getattr(self, key) is None:
                setattr(self, key, copy.deepcopy(default))
        if self.residual and self.depth % 2:
            raise ValueError(f"a residual net's stages are blocks of two conv layers, but model.depth is {self.depth}; "
                             f"allowed: an even model.depth ({max(self.depth - 1, 2)} or {self.depth + 1}), or "
                             "model.residual: false")
        return self

    @property
    def block(self) -> int:
        """No model-level skips: a cnn's shortcuts live inside its residual blocks."""
        return 0

    def plan(self) -> list[tuple[Any, str]]:
        """The layers as (item, key path naming it): ``layers`` as given, or the stages spelt out as items."""
        if self.layers is not None:
            key = {"activation": ".name"}
            return [(item, f"model.layers[{i}]{key.get(item.type, '')}") for i, item in enumerate(self.layers)]
        out = [*self._conv(self.channels[0], 1, "model.channels[0]")]
        for s, c in enumerate(self.channels):
            if s and self.pool != "none":
                out.append((PoolItem(type=f"{self.pool}pool"), "model.pool"))
            stride = 2 if s and self.pool == "none" else 1
            for i in range(self.depth // 2 if self.residual else self.depth):
                where = f"model.channels[{s}]"
                out += self._block(c, stride, where) if self.residual else self._conv(c, stride, where)
                stride = 1
        return [*out, (GapItem(type="gap") if self.head == "gap" else FlattenItem(type="flatten"), "model.head")]

    def _conv(self, channels: int, stride: int, where: str) -> list[tuple[Any, str]]:
        """A conv layer of the stages: conv, batch norm, activation, dropout."""
        out = [(ConvItem(type="conv", channels=channels, kernel=self.kernel, stride=stride), where)]
        if self.batchnorm:
            out.append((BatchNormItem(type="batchnorm"), "model.batchnorm"))
        return out + self._after()

    def _block(self, channels: int, stride: int, where: str) -> list[tuple[Any, str]]:
        item = ResidualItem(type="residual", channels=channels, kernel=self.kernel, stride=stride,
                            batchnorm=self.batchnorm, activation=self.activation)
        return [(item, where), *self._after()]

    def _after(self) -> list[tuple[Any, str]]:
        out = [(ActivationItem(type="activation", **self.activation.model_dump()), "model.activation")]
        if self.dropout:
            out.append((DropoutItem(type="dropout", p=self.dropout), "model.dropout"))
        return out


def _check_items(items: list) -> None:
    """A layers list a cnn can build: it starts with a conv or residual item (each starts a logged layer), turns
    the image into a vector once (gap or flatten) and has dense items only after that."""
    acts = [(i, item if item.type == "activation" else item.activation) for i, item in enumerate(items)
            if item.type in ("activation", "residual")]
    for i, act in acts:
        if act.spec:
            raise ValueError(f"item [{i}]: a cnn takes the built-in activations only, not {act.name}; allowed: "
                             f"{', '.join(ACTIVATIONS)}")
    if items[0].type not in ("conv", "residual"):
        raise ValueError(f"item [0] is {{type: {items[0].type}}}, but the list must start with {{type: conv, "
                         "channels: N} or {type: residual, channels: N}: each conv, residual and dense item starts "
                         "a logged layer, and what follows it belongs to it")
    heads = [i for i, item in enumerate(items) if item.type in HEAD_ITEMS]
    if not heads:
        raise ValueError("the list never turns the image into a vector for the output layer; allowed: add "
                         "{type: gap} (global average pooling) or {type: flatten} after the conv layers")
    if len(heads) > 1:
        raise ValueError(f"items [{heads[0]}] and [{heads[1]}] both turn the image into a vector; allowed: one "
                         "gap or flatten item")
    for i, item in enumerate(items):
        if item.type in SPATIAL_ITEMS and i > heads[0]:
            raise ValueError(f"item [{i}] is {{type: {item.type}}}, after item [{heads[0]}] ({items[heads[0]].type}) "
                             "made the image a vector; allowed: conv, pool and residual items before the gap or "
                             "flatten item, dense items after it")
        if item.type == "dense" and i < heads[0]:
            raise ValueError(f"item [{i}] is {{type: dense}}, but the image is still (H, W, C) there; allowed: dense "
                             f"items after a gap or flatten item (item [{heads[0]}] is the first)")


def _model_kind(value: Any) -> str:
    """``kind`` picks the model schema; a model without one is an MLP."""
    kind = value.get("kind", "mlp") if isinstance(value, dict) else getattr(value, "kind", "mlp")
    return kind if isinstance(kind, str) else _short(kind)  # another: "'model.kind' is ...; allowed: ..."


ModelConfig = Annotated[
    Union[Annotated[MLPConfig, Tag("mlp")], Annotated[RNNConfig, Tag("rnn")], Annotated[CNNConfig, Tag("cnn")]],
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


class ShapesData(Synthetic):
    """Images of three classes on a size x size grid: a horizontal bar, a vertical bar, a hollow square, each at
    a random place and of a random length or side, with Gaussian pixel noise; X (n_samples, size, size, channels)."""

    kind: Literal["shapes"]
    size: int = Field(12, ge=6, le=256, description="image height and width in pixels")
    channels: int = Field(1, ge=1, le=16, description="colour channels: each shape gets a random colour")
    noise: float = Field(0.3, ge=0.0, description="std of the Gaussian noise added to every pixel (shapes are 0.5 to 1)")


class ImagesData(DataBase):
    """Images from a file: an .npz with X (N, H, W, C) or (N, H, W) and y (N,), MNIST's IDX files, or CIFAR-10's
    binary batches; pixel values scaled to [0, 1] (8-bit ones divided by 255), then standardised per channel."""

    kind: Literal["images"]
    path: str = Field(description="an .npz or IDX images file, or a folder of IDX files or CIFAR-10 batches "
                                  "(or one batch file)")
    format: Literal["auto", "npz", "idx", "cifar10"] = Field(
        "auto", description="auto: by the file's name and first bytes")
    labels: str | None = Field(None, description="idx: the labels file (default: the images file's name with "
                                                 "images-idx3 -> labels-idx1, in its folder)")
    split: Literal["train", "test"] = Field(
        "train", description="a folder: which files (idx: train-* or t10k-*; cifar10: data_batch_* or test_batch)")
    n_samples: int | None = Field(None, ge=2, description="a random subset of this many images (default: all)")


class DigitsData(DataBase):
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): pip install 'gradlab[images]'."""

    kind: Literal["digits"]
    n_samples: int | None = Field(None, ge=2, le=1797, description="a random subset of this many images "
                                                                  "(default: all 1,797)")


DataConfig = Annotated[
    Union[SpiralsData, MoonsData, BlobsData, XorData, ParityData, TeacherData, CsvData, NpzData,
          AddingData, CopyData, TemporalOrderData, ShapesData, ImagesData, DigitsData],
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


class ScheduleConfig(Compact):
    """``schedule: cosine`` or ``{name: step, every: 100, gamma: 0.5, warmup: 50}``: the learning rate of every
    step, logged in metrics.csv's ``lr``."""

    name: Literal["constant", "step", "cosine"] = Field(
        "constant", description="constant: train.lr throughout; step: times gamma every `every` steps; cosine: "
                                "from train.lr down to floor * train.lr along half a cosine over the run")
    warmup: int = Field(0, ge=0, description="steps of linear warm-up first (step t at train.lr * (t + 1) / warmup); "
                                             "the schedule then runs over the steps after it")
    every: int | None = Field(None, ge=1, description="step: steps between two decays (no default)")
    gamma: float | None = Field(None, gt=0.0, le=1.0, description="step: the factor of each decay (default 0.1)")
    floor: float | None = Field(None, ge=0.0, lt=1.0,
                                description="cosine: the last rate as a fraction of train.lr (default 0)")

    @field_validator("every", "gamma", "floor")
    @classmethod
    def _applies(cls, value: Any, info: ValidationInfo) -> Any:
        """Each key where its schedule takes it, with its default there; `every` has none."""
        name, key = info.data.get("name"), info.field_name
        if name not in SCHEDULE_KEYS:  # the name's own error says what is allowed
            return value
        takes = SCHEDULE_KEYS[name]
        if key not in takes:
            if value is not None:
                raise ValueError(f"does not apply to schedule {name}; it takes "
                                 f"{', '.join(['warmup', *takes])}")
            return None
        if value is None and takes[key] is None:
            raise ValueError(f"schedule {name} needs a value: the steps between two decays, an integer >= 1")
        return takes[key] if value is None else value


# the keys each schedule takes, with their defaults (None: no default)
SCHEDULE_KEYS = {"constant": {}, "step": {"every": None, "gamma": 0.1}, "cosine": {"floor": 0.0}}


class EarlyStopConfig(Strict):
    """``early_stop: {patience: 5, min_delta: 0.001}``: stop when the validation loss has not improved by more
    than min_delta for `patience` evaluations in a row (one every log.val_every steps)."""

    patience: int = Field(ge=1, description="evaluations of the validation loss without an improvement "
                                            "before the run stops")
    min_delta: float = Field(0.0, ge=0.0, description="an improvement is a validation loss below the best "
                                                      "so far minus min_delta")


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
    schedule: ScheduleConfig = Field(ScheduleConfig(), description="the learning rate of every step "
                                                                   "(default constant)")
    early_stop: EarlyStopConfig | None = Field(None, description="stop on the validation loss (default null: "
                                                                "never); the parameters are those of the last "
                                                                "step, not the best")

    _optimizer = field_validator("optimizer", mode="before")(_named)
    _schedule = field_validator("schedule", mode="before")(_named)

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


def _members(annotation: Any) -> list:
    args = getattr(annotation, "__args__", None) or ()
    out = []
    for arg in args:
        out.extend(_members(arg) if getattr(arg, "__args__", None) and not hasattr(arg, "model_fields") else [arg])
    return out


def _short(value: Any, limit: int = 60) -> str:
    """repr() of a bad value for a message, shortened; never fails (5000-digit ints)."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int (or a list holding one) too long to print
        text = (f"an integer of about {value.bit_length() * 0.30103:.0f} digits" if isinstance(value, int)
                else f"a {type(value).__name__} holding a value too long to print")
    return text if len(text) <= limit else text[: limit - 3] + "..."
