"""One BLAS thread for the whole suite, set before anything imports numpy.

On a 2-core machine OpenBLAS's worker threads stall small matrix products (up to 100x) whenever another
process is busy; the suite's run time should not depend on the neighbours. Sweeps set the same per worker
(gradlab.sweep.BLAS_THREADS).
"""
import os
import sys

if "numpy" not in sys.modules:
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ.setdefault(var, "1")
