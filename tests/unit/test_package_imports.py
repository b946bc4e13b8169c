"""Layer rules of the security and analytics packages, read from what importing them loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Imports every module of the package, then prints every webapp module that got loaded.
LOADED = """
import importlib, pkgutil, sys
package = importlib.import_module(sys.argv[1])
for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
    importlib.import_module(module.name)
print("\\n".join(sorted(name for name in sys.modules if name.startswith("webapp"))))
"""


def _loaded_by(package: str) -> list[str]:
    """The webapp modules that importing every module of `package` loads, in a fresh interpreter."""
    run = subprocess.run(
        [sys.executable, "-c", LOADED, package], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return run.stdout.split()


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("webapp.analytics", "webapp.security"), ("webapp.security", "webapp.api")],
)
def test_a_package_loads_nothing_of_a_layer_it_must_not_know(package, forbidden):
    loaded = _loaded_by(package)
    assert f"{package}.cache" in loaded or f"{package}.admission" in loaded  # the walk did import
    assert [name for name in loaded if name == forbidden or name.startswith(f"{forbidden}.")] == []
