"""From a file (or a dict) to a validated ``Config``: overrides, validation and the folders a config may
import code from."""

import copy
from pathlib import Path
from typing import Any, Sequence

from pydantic import ValidationError

from ..errors import ALLOW_FLAG, ConfigError
from .messages import explain
from .overrides import SET_BY, apply_overrides, set_option, written_by
from .schema import CNNConfig, Config, MLPConfig, RNNConfig
from .yamlfile import parse_yaml, read_text


def validate(raw: Any, source: str = "<config>", folder: str | Path | None = None, *, imports: bool = True,
             allow_imports: Sequence[str | Path] = (), overrides: Sequence[tuple[str, str]] = ()) -> Config:
    """Validate raw config data; raise ConfigError listing every problem, each blamed on its source: the
    file, or the option of ``overrides`` ((KEY.PATH=VALUE, how the command line wrote it) pairs applied to
    ``raw``) that wrote the key.

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
        raise ConfigError(explain(exc, source, overrides)) from None
    except (TypeError, ValueError, RecursionError) as exc:  # unhashable keys and the like
        raise ConfigError(f"{source}: invalid config ({exc}).") from None
    _fits(config, source, overrides)
    if overrides:  # so that bad data, found once it is read, is blamed on the option that wrote its key
        setattr(config.data, SET_BY, tuple(overrides))
    if imports:
        _resolve_custom(config, Path(folder or "."), source, allow_imports)
    return config


def _fits(config: Config, source: str, overrides: Sequence[tuple[str, str]] = ()) -> None:
    """What the schema alone cannot see, checked before anything runs (a sweep's every combination, each
    trial of --try): a warm-up no shorter than a run of ``train.steps``, early stopping without a validation
    set. Blamed on the last --set option that wrote one of the keys involved, else on the file. (Runs of
    ``train.epochs``, and a validation set that rounds to no sample, are checked once the data is made.)"""
    t = config.train

    def blame(*paths: str) -> str:
        return written_by(paths, overrides, source)

    if t.steps is not None and t.schedule.warmup >= t.steps:
        raise ConfigError(f"{blame('train.schedule.warmup', 'train.steps')}: 'train.schedule.warmup' is "
                          f"{t.schedule.warmup}, but the run has {t.steps} steps (train.steps); allowed: 0 to "
                          f"{t.steps - 1} (the warm-up ends before the run does).")
    if isinstance(config.model, CNNConfig):
        _fits_images(config, blame)
    if t.early_stop is not None and config.data.val_fraction == 0:
        raise ConfigError(f"{blame('train.early_stop', 'data.val_fraction')}: 'train.early_stop' watches the "
                          "validation loss, but the validation set is empty (data.val_fraction 0); allowed: a "
                          "data.val_fraction above 0, or train.early_stop: null.")


def _fits_images(config: Config, blame) -> None:
    """A conv net whose pooling would shrink the images below one pixel, where the data config gives their
    size (shapes, digits; a file's images are checked once read)."""
    from ..nn.cnn import known_input_shape, plan_shapes  # numpy: only for conv nets

    shape = known_input_shape(config.data)
    if shape is not None:
        try:
            plan_shapes(config.model, shape)
        except ConfigError as exc:
            raise ConfigError(f"{blame('model', 'data.size', 'data.channels')}: {exc}") from None


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
    if isinstance(model, CNNConfig):  # built-in layers only: nothing to import
        return
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

    from ..nn.custom import CustomError, make_cell, make_custom, output_width

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


SWEEP_MARKS = ("base", "grid", "zip", "seeds")  # keys of a sweep file that a config never has


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = (),
                allow_imports: Sequence[str | Path] = (), sources: dict[str, str] | None = None) -> Config:
    """Read, override and validate a YAML config. Data paths become relative to its folder. A config
    naming ``module:Class`` runs that module's code: only modules under the config's folder, or under a
    folder of ``allow_imports``, are imported (``validate``). ``sources`` says how the command line wrote an
    override, for messages (``check.mode=full``: ``--mode full``); any other is ``--set KEY.PATH=VALUE``."""
    path = Path(path)
    raw = parse_yaml(read_text(path, "config"), str(path))
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the config must be a YAML mapping of keys (name, seed, data, model, loss, train, log, check).")
    not_sweep(raw, path)
    named = [(item, (sources or {}).get(item) or set_option(item)) for item in overrides]
    raw = apply_overrides(raw, list(overrides), str(path), [s for _, s in named])
    config = validate(raw, str(path), path.parent, allow_imports=allow_imports, overrides=named)
    data = config.data
    for key in ("path", "labels"):  # labels: the IDX labels file of data.kind images
        value = getattr(data, key, None)
        if value is not None and not Path(value).is_absolute():
            setattr(data, key, str((path.parent / value).resolve()))  # so the run's config.yaml finds it too
    return config


def not_sweep(raw: dict, path: Path) -> None:
    """A sweep file given where a config belongs (``gradlab train sweep.yaml``): say so and name the command."""
    marks = [k for k in SWEEP_MARKS if k in raw]
    if marks and "model" not in raw and ("base" in raw or "grid" in raw or "zip" in raw):
        raise ConfigError(f"{path}: a sweep file (it has {', '.join(marks)}), not a train config; run it with "
                          f"gradlab sweep {path}.")


def config_from_dict(raw: dict, overrides: list[str] | tuple[str, ...] = (),
                     allow_imports: Sequence[str | Path] = ()) -> Config:
    """Validate a config given as a Python mapping (what tests and the API use); its folder, for
    ``module:Class``, is the current one."""
    named = [(item, set_option(item)) for item in overrides]
    return validate(apply_overrides(copy.deepcopy(raw), list(overrides), "<config>"), "<config>",
                    allow_imports=allow_imports, overrides=named)
