"""pydantic's validation errors as one line per problem, naming the key path, what was given and what is
allowed, with a did-you-mean for a misspelt key or value (and for the names torch, Keras and W&B configs use),
each blamed on where it came from: the file, or the ``--set`` option that wrote the key."""

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)

from .overrides import key_path, set_option
from .schema import BUILTIN_CELLS, CNNConfig, CNNItem, Config, DataConfig, Item, MLPConfig, _members, _short


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


def _tags(key: str, loc: tuple = ()) -> str:
    """The values a discriminator key takes: 'spirals', 'moons', ... for kind; 'dense', ... for type (a cnn's
    items: 'conv', ... when ``loc``, the error's location, passes through the cnn model)."""
    items = CNNItem if "cnn" in loc else Item
    members = {"kind": _members(DataConfig), "type": _members(items)}.get(key, [])
    return ", ".join(f"'{t}'" for m in members for t in m.model_fields[key].annotation.__args__)


# a number of the wrong type (strict: no bool, no string, no float for an int), and what is allowed
TYPE_HELP = {"int_type": "should be a whole number, e.g. 3 or 1e4 (true, 1.5 and \"3\" are not)",
             "float_type": "should be a number, e.g. 0.1 or 1e-3 (true and \"0.1\" are not)",
             "bool_type": "should be true or false"}


HINT = "\x00"  # where a did-you-mean goes in a problem's text


@dataclass
class Problem:
    """One problem: the key path it is at, its text (HINT marks where a did-you-mean goes), and what was
    probably meant: a key path (``key``, shown short when it is a sibling) or a value."""

    path: str
    text: str
    key: str | None = None
    sibling: bool = False
    value: str | None = None
    missing: bool = False  # a required key: an override that wrote its sibling made the mapping it is missing from


def _norm(name: str) -> str:
    """``LeakyReLU``, ``leaky-relu`` and ``leaky_relu`` alike: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


# what torch, Keras and W&B configs call a value: suggested, never accepted (normalised keys, see _norm)
VALUE_ALIASES = {
    "he": "he_normal", "kaiming": "he_normal", "msra": "he_normal", "henormal": "he_normal",
    "xavier": "xavier_normal", "glorot": "xavier_normal", "lecun": "lecun_normal", "ortho": "orthogonal",
    "eye": "identity", "randomnormal": "normal", "gaussian": "normal", "randomuniform": "uniform",
    "logistic": "sigmoid", "identity": "linear", "lrelu": "leaky_relu", "leaky": "leaky_relu",
    "rnn": "vanilla", "simplernn": "vanilla", "elman": "vanilla", "basic": "vanilla",
    "crossentropyloss": "cross_entropy", "categoricalcrossentropy": "cross_entropy", "ce": "cross_entropy",
    "sparsecategoricalcrossentropy": "cross_entropy", "nll": "cross_entropy", "nllloss": "cross_entropy",
    "binarycrossentropy": "bce", "bceloss": "bce", "bcewithlogitsloss": "bce", "bcewithlogits": "bce",
    "meansquarederror": "mse", "mseloss": "mse", "l2": "mse",
    "gradientdescent": "sgd", "sgdmomentum": "momentum", "nesterov": "momentum",
    "double": "float64", "float": "float32", "single": "float32",
    "cosineannealing": "cosine", "cosineannealinglr": "cosine", "cosinedecay": "cosine", "steplr": "step",
    "stepdecay": "step", "exponentialdecay": "step", "fixed": "constant", "none": "constant",
    # conv nets: model.pool, model.head and the item types of a cnn's model.layers (Keras' and torch's names)
    "maxpool": "max", "maxpool2d": "max", "maxpooling": "max", "maxpooling2d": "max", "avgpool": "avg",
    "avgpool2d": "avg", "averagepooling2d": "avg", "average": "avg", "mean": "avg", "globalaveragepooling2d": "gap",
    "globalaveragepooling": "gap", "globalavgpool": "gap", "globalavgpool2d": "gap", "adaptiveavgpool2d": "gap",
    "conv2d": "conv", "convolution": "conv", "convolution2d": "conv", "resblock": "residual",
    "residualblock": "residual", "basicblock": "residual", "batchnorm2d": "batchnorm",
    "batchnormalization": "batchnorm",
}

# a net's shape in the other kind of net's words (model.width of an rnn is its model.hidden; torch's
# hidden_size and num_layers): the sibling meant, where it is allowed
KIN_KEYS = {
    "width": ("hidden", "channels"), "hidden": ("width", "channels"), "channels": ("width", "hidden"),
    "filters": ("channels",), "numfilters": ("channels",), "outchannels": ("channels",), "kernelsize": ("kernel",),
    "ksize": ("kernel",), "poolsize": ("size",), "pooling": ("pool",), "strides": ("stride",), "hiddensize": ("hidden", "width"), "hiddendim": ("hidden", "width"),
    "units": ("hidden", "width"), "depth": ("num_layers",), "numlayers": ("num_layers", "depth"),
    "nlayers": ("num_layers", "depth"),
}

# what torch, Keras and W&B configs call a key, by normalised name: the key path meant
KEY_ALIASES = {
    "learningrate": "train.lr", "lr": "train.lr", "batchsize": "train.batch_size", "epochs": "train.epochs",
    "numepochs": "train.epochs", "nepochs": "train.epochs", "maxepochs": "train.epochs", "steps": "train.steps",
    "maxsteps": "train.steps", "numsteps": "train.steps", "iterations": "train.steps", "iters": "train.steps",
    "maxiter": "train.steps", "optimizer": "train.optimizer", "optim": "train.optimizer",
    "weightdecay": "train.l2", "clipnorm": "train.clip", "clipvalue": "train.clip", "gradclip": "train.clip",
    "clipgradnorm": "train.clip", "gradientclipval": "train.clip", "maxgradnorm": "train.clip",
    "numlayers": "model.depth", "nlayers": "model.depth", "hiddenlayers": "model.depth",
    "hiddensize": "model.width", "hiddendim": "model.width", "units": "model.width", "hiddenunits": "model.width",
    "filters": "model.channels", "kernelsize": "model.kernel", "kernelinitializer": "model.init", "weightinit": "model.init", "initializer": "model.init",
    "initialization": "model.init", "biasinitializer": "model.bias_init", "nonlinearity": "model.activation",
    "activationfn": "model.activation", "act": "model.activation", "dropoutrate": "model.dropout",
    "batchnormalization": "model.batchnorm", "bn": "model.batchnorm", "skipconnections": "model.residual",
    "celltype": "model.cell", "rnntype": "model.cell", "logdir": "log.out", "outputdir": "log.out",
    "outdir": "log.out", "savedir": "log.out", "logevery": "log.every", "loginterval": "log.every",
    "dataset": "data.kind", "numsamples": "data.n_samples", "validationsplit": "data.val_fraction",
    "valsplit": "data.val_fraction", "randomseed": "seed", "lossfn": "loss", "criterion": "loss",
    "scheduler": "train.schedule", "lrscheduler": "train.schedule", "lrschedule": "train.schedule",
    "earlystopping": "train.early_stop", "warmupsteps": "train.schedule.warmup", "stepsize": "train.schedule.every",
    "lrdecay": "train.schedule.gamma", "decayrate": "train.schedule.gamma",
}
SECTIONS = ("model", "train", "data", "log", "check")  # where a key written in the wrong place is looked for first


def guess_value(value: Any, choices: Sequence[str]) -> str | None:
    """The allowed value meant by ``value``: the same but for case and separators (``ReLU``), another
    framework's name for it (``kaiming``), or a close spelling; None if nothing is close."""
    if not isinstance(value, str) or not choices:
        return None
    by_norm = {_norm(c): c for c in choices}
    norm = _norm(value)
    alias = VALUE_ALIASES.get(norm)
    if norm in by_norm and by_norm[norm] != value:
        return by_norm[norm]
    if alias in choices:
        return alias
    close = difflib.get_close_matches(norm, list(by_norm), n=1, cutoff=0.75)
    return by_norm[close[0]] if close else None


def _schema_paths(model: Any = Config, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """Every key path the schema has (``model.depth``, ``train.clip.threshold``), through unions; not into a
    list's items (``model.layers[2].size`` is no path a key written elsewhere could be moved to)."""
    fields = _keyed(model) or {}
    for key, field in fields.items():
        path = prefix + key
        yield path
        if _is_list(field.annotation):
            continue
        sub = _submodel(field.annotation)
        subs = sub if isinstance(sub, list) else [sub] if sub is not None else []
        for child in subs:
            if depth < 3:
                yield from _schema_paths(child, path + ".", depth + 1)


def _is_list(annotation: Any) -> bool:
    """A list field (``model.layers``), or a union holding one."""
    return get_origin(annotation) is list or any(get_origin(a) is list for a in get_args(annotation))


def _rank(path: str) -> tuple:
    head = path.split(".", 1)[0]
    return (SECTIONS.index(head) if head in SECTIONS else -1, path.count("."))


def guess_key(path: str, allowed: list[str]) -> tuple[str | None, bool]:
    """The key path meant by the unknown key at ``path``, and whether it is a sibling (shown by its name):
    the same key but for case and separators, another framework's name (``learning_rate``), the key where it
    belongs (a top-level ``depth``: ``model.depth``), or a close spelling among its siblings."""
    parent, _, key = path.rpartition(".")
    parent = re.sub(r"\[\d+\]", "", parent)
    norm = _norm(key)
    same = [a for a in allowed if _norm(a) == norm]
    if same:
        return same[0], True
    kin = [a for a in KIN_KEYS.get(norm, ()) if a in allowed]  # an MLP's key in a recurrent net, or back
    if kin:
        return kin[0], True
    target = KEY_ALIASES.get(norm)
    if target is not None:
        where, _, name = target.rpartition(".")
        if where == parent:
            return (name, True) if name in allowed else (None, False)
        return target, False
    # in another section (a top-level depth: model.depth; train.dropout: model.dropout), not from inside a
    # key's own mapping (train.early_stop.mode is no model.init.mode)
    # and never between the data and the model: data.channels (a key of data.kind shapes) is no model.channels,
    # model.size no data.size
    crossed = {"data": "model.", "model": "data."}.get(parent, "\0")
    elsewhere = sorted({p for p in _schema_paths() if _norm(p.rpartition(".")[2]) == norm
                        and p.rpartition(".")[0] != parent and not p.startswith(crossed)},
                       key=_rank) if "." not in parent else []
    if elsewhere:
        return elsewhere[0], False
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.5)
    return (close[0], True) if close else (None, False)


def _choices(err: dict) -> list[str]:
    """The values allowed where a value was refused: from pydantic's context, or the built-in cells."""
    if err["type"] not in ("literal_error", "union_tag_invalid", "value_error"):
        return []
    ctx = err.get("ctx") or {}
    text = str(ctx.get("expected") or ctx.get("expected_tags") or ctx.get("error") or "")
    if err["type"] == "value_error" and not re.match(r"(Input )?should be", text):
        return []
    found = re.findall(r"'([^'\s]+)'", text)
    return found or (list(BUILTIN_CELLS) if str(err["loc"][-1]) == "cell" else [])


# what only a conv net has: its keys in model, and the item types of its model.layers
CONV_KEYS = tuple(k for k in CNNConfig.model_fields if k not in MLPConfig.model_fields)
CONV_ITEMS = tuple(t for m in _members(CNNItem) for t in m.model_fields["type"].annotation.__args__
                   if t not in {u for n in _members(Item) for u in n.model_fields["type"].annotation.__args__})


def _conv_only(loc: tuple, path: str) -> bool:
    """An MLP's model (no kind) given a key only a conv net has: model.channels, model.kernel, ..."""
    return loc[:2] == ("model", "mlp") and len(loc) == 3 and path.rpartition(".")[2] in CONV_KEYS


def _other_kinds(loc: tuple, path: str) -> str:
    """The other data kinds whose key an unknown key of a data kind is ('shapes' for data.size of digits,
    'blobs, parity or teacher' for its data.n_features), or ''."""
    if len(loc) != 3 or loc[0] != "data":
        return ""
    key = path.rpartition(".")[2]
    kinds = [t for m in _members(DataConfig) if key in _keyed(m)
             for t in m.model_fields["kind"].annotation.__args__ if t != loc[1]]
    return ", ".join(kinds[:-1]) + (" or " if len(kinds) > 1 else "") + kinds[-1] if kinds else ""


def _describe(err: dict) -> Problem:
    path, allowed = _schema_keys(tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = path.rpartition(".")[0] or "the top level"
        if _conv_only(err["loc"], path):
            return Problem(path, f"unknown key '{path}': a conv net's key, but the model is an MLP (model.kind mlp, "
                                 f"the default); set model.kind: cnn for a conv net. Allowed keys in {parent}: "
                                 f"{', '.join(allowed)}.")
        kinds = _other_kinds(err["loc"], path)
        if kinds:
            return Problem(path, f"unknown key '{path}': a key of data.kind {kinds}, not of {err['loc'][1]}; "
                                 f"allowed keys of {err['loc'][1]}: {', '.join(allowed)}.")
        key, sibling = guess_key(path, allowed)
        return Problem(path, f"unknown key '{path}'.{HINT} Allowed keys in {parent}: {', '.join(allowed)}.",
                       key=key, sibling=sibling)
    if kind == "missing":
        return Problem(path, f"missing key '{path}'.", missing=True)
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        expected = err.get("ctx", {}).get("expected_tags", "")
        got = err.get("input")
        key = err.get("ctx", {}).get("discriminator", "'kind'").strip("'")
        key = "kind" if key.endswith("()") else key  # model's: a function of its kind
        value = got.get(key) if isinstance(got, dict) else None
        what = _short(value) if isinstance(got, dict) and key in got else "nothing"
        conv = (f" {value} items make a conv net: set model.kind: cnn." if key == "type" and "mlp" in err["loc"]
                and value in CONV_ITEMS else "")
        return Problem(f"{path}.{key}", f"'{path}.{key}' is {what}; allowed: {expected or _tags(key, err['loc'])}."
                                        f"{conv}{HINT}", value=guess_value(value, _choices(err)))
    value = err.get("input")
    shown = "" if isinstance(value, (dict, list)) else f" (got {_short(value)})"
    msg = TYPE_HELP.get(kind, err["msg"].removeprefix("Value error, "))
    if msg.startswith("missing key"):  # a key required only without another one (model.depth)
        return Problem(path, f"{msg}.")
    return Problem(path, f"'{path or 'top level'}': {msg}{shown}.{HINT}", value=guess_value(value, _choices(err)))


def _problems(exc: ValidationError) -> list[Problem]:
    """One problem per key path; the branches of a union (``batch_size: 64 | full``) joined by 'or'."""
    by_path: dict[str, list[dict]] = {}
    for err in exc.errors(include_url=False):
        by_path.setdefault(_schema_keys(tuple(err["loc"]))[0], []).append(err)
    problems: dict[str, Problem] = {}
    for path, errs in by_path.items():
        if len(errs) == 1 or any(e["type"] in ("extra_forbidden", "missing") for e in errs):
            for e in errs:
                problem = _describe(e)
                problems.setdefault(problem.text, problem)
            continue
        value = errs[0].get("input")
        shown = "" if isinstance(value, (dict, list)) else f" (got {_short(value)})"
        msgs = " or ".join(e["msg"].removeprefix("Input should be ").removeprefix("Value error, ") for e in errs)
        text = f"'{path}': should be {msgs}{shown}.{HINT}"
        problems.setdefault(text, Problem(path, text, value=guess_value(value, [c for e in errs for c in _choices(e)])))
    return list(problems.values())


def _owner(problem: Problem, overrides: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The override (item, source) that wrote the key at the problem's path, a key inside it or, for a
    missing key, a key beside it (``--set model.init.std=0.1`` without a scheme); the last one wins."""
    keys = key_path(problem.path) if problem.path else []
    found = None
    for item, source in overrides:
        written = key_path(item.partition("=")[0])
        beside = problem.missing and len(keys) > 1 and written[:-1] == keys[:-1]
        if keys and (keys[:len(written)] == written or written[:len(keys)] == keys or beside):
            found = (item, source)
    return found


def _rendered(problem: Problem, owner: tuple[str, str] | None) -> str:
    """The problem's text with its did-you-mean, said the way its source is written: a key or value in the
    file, or the whole ``--set`` option to type instead."""
    hint = ""
    item, source = owner or ("", "")
    where, _, text = item.partition("=")
    setting = source.startswith("--set ")
    # an option that wrote the key itself is retyped; one that wrote a mapping holding it (--set 'data={...}')
    # gets the key to write inside that mapping
    own_key = setting and key_path(where) == key_path(problem.path)
    if problem.key is not None:
        if own_key:
            full = f"{problem.path.rpartition('.')[0]}.{problem.key}".lstrip(".") if problem.sibling else problem.key
            hint = f" Did you mean {set_option(f'{full}={text}')}?"
        elif setting:
            hint = f" Did you mean '{problem.key}'?"
        else:
            top = "the top-level " if not problem.sibling and "." not in problem.key else ""
            hint = f" Did you mean {top}'{problem.key}'?"
    elif problem.value is not None:
        own = key_path(where.strip()) in (key_path(problem.path), key_path(problem.path)[:-1])
        hint = (f" Did you mean {set_option(f'{where.strip()}={problem.value}')}?" if setting and own
                else f" Did you mean '{problem.value}'?")
    return problem.text.replace(HINT, hint)


def explain(exc: ValidationError, source: str, overrides: Sequence[tuple[str, str]] = ()) -> str:
    """The message for a config that does not validate: its problems, each under its source (the file's
    first, then each option's: ``q.yaml: ... --set model.dept=5: unknown key ...``). ``overrides`` are the
    (KEY.PATH=VALUE, how the command line wrote it) pairs applied to the file."""
    groups: dict[str, list[str]] = {}
    for problem in _problems(exc):
        owner = _owner(problem, overrides)
        groups.setdefault(owner[1] if owner else source, []).append(_rendered(problem, owner))
    order = [source, *(s for _, s in overrides)]
    return " ".join(f"{where}: {' '.join(groups[where])}" for where in dict.fromkeys(order) if where in groups)
