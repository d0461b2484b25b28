"""Each package's `__init__` docstring names every module in it (one line each), so the layout is
documented where the code is."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "tinycomp"
PACKAGES = sorted(p.parent for p in ROOT.rglob("__init__.py"))


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.relative_to(ROOT.parent).as_posix())
def test_the_package_docstring_names_every_module(package):
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
    modules = sorted(p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__"))
    missing = [m for m in modules if f"`{m}`" not in doc]
    assert not missing, f"{package.name}/__init__.py does not name {', '.join(missing)}"
