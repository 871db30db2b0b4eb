"""pydantic's validation errors as one line per problem, naming the key path, what was given and what is
allowed (with a did-you-mean for a misspelt key)."""

import difflib
from typing import Any

from pydantic import (
    BaseModel,
    ValidationError,
)

from .schema import Config, DataConfig, Item, _members, _short


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
