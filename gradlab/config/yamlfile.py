"""Reading a config or sweep file the user names: its text (guarded against folders, devices and huge files)
and its YAML (safe tags only, duplicate keys and alias bombs refused, with line numbers)."""

import collections.abc
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

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
        found = nearby(path)
        hint = f" Did you mean {found}?" if found else ""
        raise ConfigError(f"{path}: {what} file not found.{hint}") from None
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


YAML_NAMES = ("*.yaml", "*.yml")


def nearby(path: Path) -> Path | None:
    """A file the user probably meant by a missing ``path``: the same name under configs/ (of the current
    folder or of the path's folder) or next to it with the other YAML ending, else a close spelling there."""
    for folder in dict.fromkeys((Path("configs"), path.parent / "configs", path.parent, Path("configs").parent)):
        for name in dict.fromkeys((path.name, path.stem + (".yml" if path.suffix == ".yaml" else ".yaml"))):
            candidate = folder / name
            if candidate != path and candidate.is_file():
                return candidate
    import difflib

    for folder in dict.fromkeys((path.parent, Path("configs"))):
        try:
            names = sorted(p.name for pattern in YAML_NAMES for p in folder.glob(pattern))[:1000]
        except OSError:
            continue
        close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.8)
        if close:
            return folder / close[0]
    return None


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


class _SafeDumper(yaml.SafeDumper):
    """safe_dump that quotes a string the loader would read as a YAML 1.2 float (``'1e5'``, ``'0E0'``):
    PyYAML's YAML 1.1 rules write them plain, and ``parse_yaml`` read them back as numbers."""

    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeDumper.yaml_implicit_resolvers.items()}


_SafeDumper.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+.0123456789"))


def dump_yaml(data: Any, **options: Any) -> str:
    """YAML text that ``parse_yaml`` reads back as ``data`` (``yaml.safe_dump``'s options)."""
    return yaml.dump(data, Dumper=_SafeDumper, **options)


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
