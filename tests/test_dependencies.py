"""Every third-party module gradlab imports is a declared dependency, and the optional ones are optional.

CI installs the test extras too, which bring in packages of their own (dask, hypothesis ...): without this
test, a dependency dropped from pyproject.toml could stay green because a test extra happens to bring it in.
"""
import ast
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).parent.parent
IMPORT_NAME = {"pyyaml": "yaml", "dask[distributed]": "dask", "scikit-learn": "sklearn"}  # distribution -> module, where they differ
OPTIONAL = {"dask", "distributed", "sklearn"}  # imported only inside the function that needs them (the Dask
# executor, the reader of scikit-learn's digits)


def distribution(requirement: str) -> str:
    """'pandas>=2' -> 'pandas'; 'dask[distributed]>=2024.1' -> 'dask[distributed]'."""
    for sep in "<>=!~; ":
        requirement = requirement.split(sep)[0]
    return requirement.strip().lower()


def third_party_imports(top_level_only: bool) -> dict[str, set[str]]:
    """{module: {files}} of every non-standard-library import in gradlab/ (module level only, if asked)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "gradlab").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = tree.body if top_level_only else ast.walk(tree)
        for node in nodes:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "gradlab":
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    module = lambda req: IMPORT_NAME.get(distribution(req), distribution(req))  # noqa: E731
    extras = {k: {module(r) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return {module(r) for r in project["dependencies"]}, extras


def test_every_imported_package_is_declared():
    required, extras = declared()
    imported = third_party_imports(top_level_only=False)
    undeclared = {m: sorted(files) for m, files in imported.items()
                  if m not in required and not (m in OPTIONAL and m in extras["dask"] | extras["images"] | {"distributed"})}
    assert not undeclared, f"imported but not in [project.dependencies]: {undeclared}"


def test_every_declared_dependency_is_used():
    required, _ = declared()
    assert required - set(third_party_imports(top_level_only=False)) == set()


def test_optional_packages_are_not_imported_at_module_level():
    at_top = third_party_imports(top_level_only=True)
    assert not {m: at_top[m] for m in OPTIONAL if m in at_top}, "dask must stay optional: import it where it is used"


def test_the_fields_own_dependencies_only():
    required, extras = declared()
    assert required == {"numpy", "typer", "yaml", "rich", "pandas", "pydantic", "matplotlib", "threadpoolctl"}
    assert extras["dask"] == {"dask"}
    assert extras["images"] == {"sklearn"}
    assert "torch" not in required | set().union(*extras.values()), "torch may only appear in optional comparisons"
