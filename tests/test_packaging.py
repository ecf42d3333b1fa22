"""What ``pip install skanomaly`` installs: the wheel, not the source tree."""

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import skanomaly

ROOT = Path(__file__).resolve().parents[1]


def _setuptools_major():
    if importlib.util.find_spec("setuptools") is None:
        return 0
    import setuptools

    return int(setuptools.__version__.split(".")[0])


# pyproject.toml's build requirement; torch installs a recent one.
@pytest.mark.skipif(_setuptools_major() < 77, reason="building the wheel needs setuptools>=77")
def test_the_wheel_holds_every_module(tmp_path):
    # An editable install (the tests' own) reads the source tree, so a
    # subpackage left out of the build shows only in the wheel.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "skanomaly", source / "skanomaly", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    build = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)]
    done = subprocess.run([sys.executable, "-m", "pip", *build], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("skanomaly-*.whl")
    modules = {p.relative_to(source).as_posix() for p in (source / "skanomaly").rglob("*.py")}
    assert {"skanomaly/datasets/__init__.py", "skanomaly/metrics/__init__.py"} <= modules
    assert modules - set(zipfile.ZipFile(wheel).namelist()) == set()
    # The version the package reports is the one it installs as.
    assert wheel.name.startswith(f"skanomaly-{skanomaly.__version__}-")
