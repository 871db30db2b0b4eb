"""docs/EXPERIMENTS.md and docs/experiments.py agree, and everything the document names exists.

Fast: nothing is trained; the script is imported, not run.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
import yaml

import gradlab
from gradlab import sweeps

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
DOC = DOCS / "EXPERIMENTS.md"
SCRIPT = DOCS / "experiments.py"

IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
CONFIG = re.compile(r"configs/[A-Za-z0-9_.-]+\.ya?ml")


@pytest.fixture(scope="module")
def text() -> str:
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def script():
    """docs/experiments.py as a module (it sets BLAS thread variables on import: restored after)."""
    saved = dict(os.environ)
    try:
        spec = importlib.util.spec_from_file_location("docs_experiments", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up while being made
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return module


def validate(path: Path, overrides: list[str] = ()) -> None:
    """A train config through gradlab.load_config, a sweep file through sweeps.load_sweep."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(raw, dict) and "grid" in raw:
        sweeps.load_sweep(path, list(overrides))
    else:
        gradlab.load_config(path, list(overrides))


def test_every_image_exists_under_docs(text):
    images = IMAGE.findall(text)
    assert images
    for ref in images:
        assert not ref.startswith(("/", "http")), ref
        path = (DOCS / ref).resolve()
        assert path.is_relative_to(DOCS) and path.is_file(), f"{ref}: no such image under docs/"


def test_every_relative_link_resolves(text):
    for ref in LINK.findall(text):
        if ref.startswith(("http://", "https://", "#")):
            continue
        assert not ref.startswith("/"), ref
        assert (DOCS / ref).exists(), f"{ref}: broken link"


def test_every_named_config_exists_and_validates(text):
    names = sorted(set(CONFIG.findall(text)))
    assert len(names) >= 10
    for name in names:
        path = ROOT / name
        assert path.is_file(), f"{name} is named in EXPERIMENTS.md but does not exist"
        validate(path)


def test_script_figures_and_document_images_agree(text, script):
    images = set(IMAGE.findall(text))
    figures = {f"figures/{e.figure}" for e in script.EXPERIMENTS.values()}
    assert figures == images, (figures - images, images - figures)
    assert len(figures) == len(script.EXPERIMENTS)


def test_every_command_of_the_script_is_in_the_document_and_valid(text, script):
    for e in script.EXPERIMENTS.values():
        assert e.jobs, e.name
        for job in e.jobs:
            assert job.command in text, f"{e.name}: `{job.command}` is not in EXPERIMENTS.md"
            validate(script.CONFIGS / job.config, job.overrides)
    labels = [j.label for e in script.EXPERIMENTS.values() for j in e.jobs]
    assert len(labels) == len(set(labels)), "two jobs would share a run folder"


def test_no_machine_paths_in_the_document(text):
    for pattern in (r"/tmp/", r"/work/", r"/home/", r"/root/", r"/Users/", r"[A-Z]:\\"):
        assert not re.search(pattern, text), pattern


def test_numbers_file_matches_the_experiments(script):
    path = DOCS / "figures" / "numbers.json"
    if not path.exists():
        pytest.skip("docs/figures/numbers.json not generated (python docs/experiments.py)")
    numbers = json.loads(path.read_text(encoding="utf-8"))
    assert set(numbers) <= set(script.EXPERIMENTS)
    for name, entry in numbers.items():
        e = script.EXPERIMENTS[name]
        assert entry["figure"] == f"figures/{e.figure}"
        assert entry["commands"] == e.commands


def test_every_anchor_names_a_heading(text):
    def slug(heading: str) -> str:  # GitHub's rule: lower case, punctuation dropped, spaces to '-'
        return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")

    headings = {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    anchors = [ref[1:] for ref in LINK.findall(text) if ref.startswith("#")]
    assert anchors
    for anchor in anchors:
        assert anchor in headings, anchor
