"""What every command shares: the consoles, the exit codes, and the rules that bad input is one paragraph
and exit 2, code of the user's that raised one paragraph and exit 4, Ctrl-C exit 130 and SIGTERM 143."""
from __future__ import annotations

import signal
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
from typer.core import TyperCommand
from rich.console import Console
from rich.markup import escape

from . import boot
from .errors import ConfigError, interrupt_in, received

out = Console()
err = Console(stderr=True)

SET_METAVAR = "KEY.PATH=VALUE"
SET_HELP = "Override a config key, e.g. --set model.depth=50 (repeatable)."
THREADS_HELP = "BLAS threads (train.threads; default 1: small matrices run fastest on one, busy machine or not)."
EXIT_USER_CODE, EXIT_CTRL_C, EXIT_SIGTERM = 4, 130, 143
TRAIN_EXITS = ("Exit status: 0 completed; 2 bad input (also a full disk; the message names the file or folder); "
               "3 diverged; 4 a layer or cell of yours raised (summary.json says failed, error.txt has the "
               "traceback); 130 Ctrl-C, 143 SIGTERM (summary.json says interrupted, every CSV ends at a whole row).")


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (whatever stops on Ctrl-C stops on it), with exit status 143."""


def quiet_warnings(ctx: typer.Context) -> None:
    """For the command about to run, no RuntimeWarning is printed (numpy's, from code of the user's too):
    gradlab says itself when a figure overflows. The last resort: the sources that handle non-finite
    values themselves silence them (np.errstate)."""
    quiet = warnings.catch_warnings()
    quiet.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)
    ctx.call_on_close(lambda: quiet.__exit__(None, None, None))


class Command(TyperCommand):
    """A command whose own handling of Ctrl-C, SIGTERM and warnings starts when it runs, once its arguments are
    parsed (typer imports pydantic to parse them): until then ``boot`` makes either signal exit quietly."""

    def invoke(self, ctx: typer.Context):
        handle_sigterm(ctx)
        quiet_warnings(ctx)
        try:
            value = super().invoke(ctx)
        except typer.Exit as exc:
            if received and exc.exit_code not in (EXIT_CTRL_C, EXIT_SIGTERM):
                stopped()  # a signal a library swallowed (pydantic warns and goes on): the work ended, as asked
            raise
        except Exception as exc:  # a Ctrl-C or SIGTERM that a library wrapped (pydantic, in a model_dump)
            if interrupt_in(exc) is None:
                raise
            stopped()
        if received:
            stopped()
        return value


def handle_sigterm(ctx: typer.Context) -> None:
    """For the command about to run, SIGTERM raises ``Terminated`` (handled as Ctrl-C is) and Ctrl-C
    raises KeyboardInterrupt again (``boot`` made both exit quietly during the imports); the handler
    before it is put back when the command ends. Imported as a library, gradlab installs no handler."""
    received.clear()
    ctx.call_on_close(received.clear)  # a signal to this command does not stop the next (a test, a notebook)
    if threading.current_thread() is not threading.main_thread():
        return
    boot.release()
    for sig, handler in ((signal.SIGTERM, _terminate), (signal.SIGINT, _interrupt)):
        if signal.getsignal(sig) in (signal.SIG_IGN, None):
            continue  # a signal the caller ignores (nohup, a background job) stays ignored
        before = signal.signal(sig, handler)
        ctx.call_on_close(lambda sig=sig, before=before: signal.signal(sig, before if before is not None
                                                                        else signal.SIG_DFL))


def _terminate(signum, frame) -> None:
    received.append(signum)
    raise Terminated()


def _interrupt(signum, frame) -> None:
    """Ctrl-C as Python's own handler raises it, and recorded (``errors.stop_if_signalled``)."""
    received.append(signum)
    raise KeyboardInterrupt


def interrupted_code() -> int:
    """143 when SIGTERM stopped the command, else 130 (Ctrl-C)."""
    return EXIT_SIGTERM if signal.SIGTERM in received else EXIT_CTRL_C


def fail(exc: ConfigError) -> None:
    """Bad input: one paragraph, the message as written (a path or value may hold [brackets]), exit 2."""
    err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def bad_input(config: Path):
    """Bad input -> one paragraph on stderr and exit 2; Ctrl-C -> exit 130 (SIGTERM 143); never a traceback."""
    try:
        yield
    except ConfigError as exc:
        fail(exc)
    except MemoryError:
        fail(ConfigError(f"{config}: the model or data set is larger than this machine's memory; "
                         "lower model.width, model.depth, data.n_samples or train.batch_size."))
    except KeyboardInterrupt:
        stopped()


def stopped() -> None:
    """Ctrl-C or SIGTERM stopped the command: one word on stderr, exit 130 or 143."""
    err.print("interrupted" if interrupted_code() == EXIT_CTRL_C else "terminated (SIGTERM)")
    raise typer.Exit(interrupted_code())


@contextmanager
def user_code(what: str):
    """Code of the user's (a layer or cell of theirs) that raised -> one paragraph on stderr naming it, and
    exit 4; an error of gradlab's own is raised as it is (a bug to report, with its traceback)."""
    from .records import RunFailed
    from .train import blame, raised

    try:
        yield
    except RunFailed as exc:
        _say(str(exc))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - only code of the user's is reported here; the rest is re-raised
        culprit = None if interrupt_in(exc) else blame(exc)
        if culprit is None:
            raise
        _say(f"{what} could not run: {raised(exc, culprit)}; nothing was graded or written.")


def _say(message: str) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_CODE)
