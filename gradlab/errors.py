"""Bad input, and the words about it that the commands' ``--help`` shares with the config's checks.

Here, not in ``config`` (which builds the pydantic schema), so that ``gradlab --help`` and the command line's
own modules import neither pydantic nor numpy. ``gradlab.config`` re-exports every name.
"""
from __future__ import annotations


class ConfigError(Exception):
    """Bad input: a message naming the file, the key path and what is allowed (exit status 2)."""


ALLOW_FLAG = "--allow-imports"  # train, check, sweep, report --try: a folder whose modules a config may import
ALLOW_HELP = ("A folder whose modules a config may import (repeatable). A config naming module:Class runs that "
              "module's code: without this option only modules in the config's own folder (or in a model.import_dir "
              "inside it) are imported, and an installed module only if its file lies under a folder given here.")

# the check's relative step: below 1e-15 theta + h rounds to theta in float64; above 0.1 a difference
# spans the curvature of tanh or sigmoid and can make correct code look wrong
EPS_RANGE = (1e-15, 0.1)


received: list[int] = []  # the stop signals the running command's handlers received (``console``)


def stop_if_signalled() -> None:
    """Raise the Ctrl-C (or SIGTERM) that a library swallowed: pydantic turns one raised inside a tagged union's
    serializer into a warning and goes on, so the handler's record, not the exception, is what tells."""
    if received:
        raise KeyboardInterrupt


def interrupt_in(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The Ctrl-C (or SIGTERM, raised as one) behind ``exc``: ``exc`` itself, or one a library wrapped on its way
    out. pydantic does: a signal that arrives inside a serializer (any ``model_dump``) leaves it as a
    PydanticSerializationError caused by the KeyboardInterrupt."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


class interrupts_unwrapped:
    """Within the block, an exception that a Ctrl-C or SIGTERM caused is raised as that KeyboardInterrupt, so the
    ``except KeyboardInterrupt`` around it stops the work as interrupted, not as failed."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, KeyboardInterrupt) or not isinstance(exc, Exception):
            return False
        stop = interrupt_in(exc)
        if stop is None:
            return False
        raise stop from None
