"""`pip install .` as a packager runs it: a clean wheel with the dashboard and the sample inside."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.deploy.stack import PROJECT


def tracked_tree(dest: Path) -> Path:
    """The project's tracked files as they are in the working tree (what a clean clone holds)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (PROJECT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT / name, dest / name)
    return dest


def test_the_wheel_builds_without_warnings_and_carries_the_page_and_the_sample(tmp_path: Path) -> None:
    source = tracked_tree(tmp_path / "src")
    out = tmp_path / "dist"
    # --no-build-isolation: the venv's setuptools and wheel build it, nothing is downloaded.
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr
    (wheel,) = out.glob("tradestream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "streamer/static/index.html", "streamer/static/app.js", "streamer/static/style.css",
        "producers/samples/sample-trades.jsonl", "bus/broker.py", "web/__init__.py",
        "store/migrate.py", "store/migrations/env.py", "store/migrations/script.py.mako",
        "store/migrations/versions/r0001_baseline.py",
    }
    assert expected <= names, expected - names
    assert not any(name.startswith(("tests/", "var/", ".venv/")) for name in names)
