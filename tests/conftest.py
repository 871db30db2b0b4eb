"""One BLAS thread for the whole suite, set before anything imports numpy.

On a 2-core machine OpenBLAS's worker threads stall small matrix products (up to 100x) whenever another
process is busy; the suite's run time should not depend on the neighbours. Sweeps set the same per worker
(gradlab.sweep.BLAS_THREADS).

GRADLAB_CPU_PROFILE=FILE appends one CSV row per test: its node id, the CPU seconds of set-up, call and
teardown (this process and the children it waited for: a subprocess or a sweep's workers count), the wall
seconds, the xdist worker and the time it ended. CPU time grows far less than wall time with the load
others put on the machine, so it tells what a test costs; run with -p no:xdist or -n 2 alike.
"""
import os
import signal
import sys

if "numpy" not in sys.modules:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ.setdefault(var, "1")

# A suite started in the background (`pytest &`, nohup, a CI script run as a background job) inherits SIGINT
# ignored, and so would every command it starts: gradlab keeps an ignored signal ignored (as Python does), so the
# tests that Ctrl-C a command would see it run on. Catching it here gives the children the default back (a
# handled signal is reset to its default across exec).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PROFILE = os.environ.get("GRADLAB_CPU_PROFILE")  # a CSV path: CPU seconds per test, to find what costs


def _cpu_seconds() -> float:
    """User and system time of this process and of every child it has waited for."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if PROFILE:
    import csv
    import time

    import pytest

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        """Set-up, call and teardown of one test: CPU and wall seconds, the worker and the time it ended,
        appended to GRADLAB_CPU_PROFILE as a CSV row (sort it by the second column)."""
        cpu, wall = _cpu_seconds(), time.perf_counter()
        yield
        cpu, wall = _cpu_seconds() - cpu, time.perf_counter() - wall
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(PROFILE, "a", encoding="utf-8", newline="") as out:
            csv.writer(out).writerow([item.nodeid, f"{cpu:.3f}", f"{wall:.3f}", worker, f"{time.time():.1f}"])


def pytest_collection_modifyitems(config, items):
    """The slow tests first, the longest of them (the LSTM adding run, ~200 CPU-s) at the head: with
    ``--dist worksteal`` (pyproject) the long runs start at once and the short tests fill in around
    them, instead of one long run ending the suite alone on one worker. Otherwise the order is kept."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None, item.name not in FIRST))


FIRST = ("test_lstm_solves_the_adding_problem", "test_lstm_with_truncated_bptt_stays_at_chance",
         "test_tanh_rnn_never_leaves_the_adding_baseline")  # the three longest runs, measured
