"""Packaging: ``make`` installs the project quietly, and a built wheel holds the whole service.

The builds run setuptools' own build hooks (what pip calls, offline, nothing installed) on a copy of the
sources, so no ``build/`` or ``*.egg-info`` lands in the checkout; any warning they raise fails the test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "app", "handlers", "subscriptions", "emulator")
BUILD = """
import sys, warnings
from setuptools import build_meta
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    wheel = build_meta.build_wheel(sys.argv[1])
    build_meta.build_editable(sys.argv[1])
for warning in caught:
    print(f"WARNING {warning.category.__name__}: {str(warning.message).strip().splitlines()[0]}", file=sys.stderr)
print(wheel)
"""


def test_the_wheel_and_the_editable_install_build_without_warnings(tmp_path):
    source, out = tmp_path / "source", tmp_path / "dist"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, source)
    done = subprocess.run([sys.executable, "-c", BUILD, str(out)], cwd=source, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    names = set(zipfile.ZipFile(out / done.stdout.split()[-1]).namelist())
    for expected in ("app/core/db.py", "app/records/threads.py", "app/web/pages.py", "app/microsoft/graph.py",
                     "app/templates/record.html", "app/static/live.js", "handlers/send.py",
                     "subscriptions/manager.py", "emulator/templates/control.html"):
        assert expected in names, f"{expected} is missing from the wheel"
