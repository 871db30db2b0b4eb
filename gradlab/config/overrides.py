"""``--set key.path=value``: the overrides a command line puts on a config's raw YAML data."""

import shlex
from typing import Any, Sequence

from ..errors import ConfigError
from .yamlfile import parse_yaml


def apply_overrides(raw: dict, overrides: list[str], source: str, sources: list[str] | None = None) -> dict:
    """Apply ``key.path=value`` strings (values parsed as YAML) to a raw config mapping; an error names the
    option as typed (``--set model.depth=[1``), or as ``sources`` says the command line wrote it."""
    if overrides and not isinstance(raw, dict):
        raise ConfigError(f"{source}: the config must be a YAML mapping of keys (name, seed, data, model, loss, train, log, check).")
    for item, where in zip(overrides, sources or [set_option(item) for item in overrides]):
        path, sep, text = item.partition("=")
        if not sep or not all(key_path(path)):
            raise ConfigError(f"{where}: expected KEY.PATH=VALUE, e.g. --set model.depth=50.")
        set_value(raw, path, parse_yaml(text, where), where)
    return raw


SET_BY = "_set_by"  # the attribute of a validated data config holding the overrides that wrote it (load.validate)


def written_by(paths: Sequence[str], overrides: Sequence[tuple[str, str]], source: str) -> str:
    """Where a problem with the keys ``paths`` came from: the last override (KEY.PATH=VALUE, how the command
    line wrote it) that wrote one of them, a key inside one or a mapping holding one; else ``source``."""
    written = [where for item, where in overrides
               if any(p == k or p.startswith(k + ".") or k.startswith(p + ".")
                      for p in paths for k in [".".join(key_path(item.partition("=")[0]))])]
    return written[-1] if written else source


def set_option(item: str) -> str:
    """How a message names a ``--set`` option: as typed in a shell (``--set model.depth=5``)."""
    return f"--set {shlex.quote(item)}"


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
