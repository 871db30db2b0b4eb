"""How many threads BLAS runs on while gradlab computes: one unless ``train.threads`` (``--threads N``) says more.

gradlab's matrices are small (an LSTM step of 64 x 128, a check's perturbed copies): on them a second
BLAS thread gains little alone and, whenever another process is busy, the threads wait on each other and
a product takes 2-4x longer, up to 100x in stalls (README, "BLAS threads"). So every command that computes
(train, check, a sweep's runs, report --try) runs inside ``blas_threads``, set at run time with
threadpoolctl, and the count found before is restored after (a notebook keeps its own).
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator

DEFAULT = 1  # never slower than one thread on small matrices, and no stall beside a busy neighbour
MAX = 256  # train.threads' upper bound: more than any machine gradlab runs on has cores
# read once, when numpy loads BLAS: what a process starting workers sets so they start at the same count
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@contextmanager
def blas_threads(n: int = DEFAULT) -> Iterator[None]:
    """Within: every BLAS library loaded (OpenBLAS, MKL, BLIS) runs on ``n`` threads; after: as before."""
    import numpy  # noqa: F401 - loads BLAS first: threadpoolctl limits only the libraries already loaded
    from threadpoolctl import threadpool_limits  # here: gradlab --help does not load it

    limiter = threadpool_limits(limits=int(n), user_api="blas")
    try:
        yield
    finally:
        limiter.restore_original_limits()


def of(config: Any) -> int:
    """The count a config asks for: ``train.threads`` (DEFAULT for a config without one)."""
    return getattr(getattr(config, "train", None), "threads", None) or DEFAULT


def limited(fn: Callable) -> Callable:
    """``fn(config, ...)`` runs with BLAS on the config's ``train.threads`` threads."""
    @functools.wraps(fn)
    def run(config, *args, **kwargs):
        with blas_threads(of(config)):
            return fn(config, *args, **kwargs)
    return run
