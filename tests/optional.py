"""Optional tools (torch, a headless browser): a test that needs one skips, saying why, where it is
missing, except in CI (CI=true), where a missing tool is a failure: CI installs them, and a green run
that skipped them would say nothing."""
import os
import shutil

import pytest

CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(why: str):
    """Skip (a user's machine) or fail (CI) a test whose tool is absent."""
    if in_ci():
        pytest.fail(f"{why} (CI=true: .ci/run installs it, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(why)


def need_torch(what: str = "the torch replay"):
    """The torch module, or a skip (a failure in CI) saying how to get it and what is not run."""
    try:
        import torch
    except ImportError:
        missing(f"torch is not installed (pip install torch==2.13.0): {what} is not run")
    torch.set_default_dtype(torch.float64)
    return torch


def need_chromium() -> str:
    """The path of a headless Chromium, or a skip (a failure in CI)."""
    found = next((path for name in CHROMIUMS if (path := shutil.which(name))), None)
    if found is None:
        missing("headless Chromium is not installed (apt-get install chromium); report.html not loaded in a browser")
    return found
