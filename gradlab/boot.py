"""The first lines the ``gradlab`` command runs: until a command sets up its own handling of Ctrl-C and
SIGTERM (``console.handle_sigterm``), either signal ends the process quietly with 130 or 143, not with a
traceback from inside an import. Imported as a library (a notebook, a test), gradlab installs nothing."""
from __future__ import annotations

import os
import signal
import sys
import threading

EXITS = {signal.SIGINT: 130, signal.SIGTERM: 143}


def command_line() -> bool:
    """True when this process is the ``gradlab`` command (the console script or ``python -m gradlab``)."""
    argv = list(getattr(sys, "orig_argv", []))  # this process's own command line (a worker's is its own)
    as_module = any(a == "-m" and b == "gradlab" for a, b in zip(argv, argv[1:]))
    script = len(argv) > 1 and os.path.basename(argv[1]) == "gradlab"
    return as_module or script or os.environ.get("GRADLAB_WORKER") == "1"  # a sweep's worker, starting


def _exit_quietly(signum, frame) -> None:
    os._exit(EXITS[signum])  # nothing has been written yet: there is nothing to close


_before: dict = {}  # the handlers found at start: an ignored signal (nohup, a background job) stays ignored


def guard() -> None:
    if command_line() and threading.current_thread() is threading.main_thread():
        for sig in EXITS:
            if signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL):
                _before[sig] = signal.signal(sig, _exit_quietly)


def release() -> None:
    """The command is about to run: Ctrl-C raises KeyboardInterrupt again (the command handles it)."""
    if signal.getsignal(signal.SIGINT) is _exit_quietly:
        signal.signal(signal.SIGINT, _before[signal.SIGINT])


guard()
