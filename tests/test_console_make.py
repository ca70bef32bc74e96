"""``make browser`` (a step of ``make test``): Debian's chromium and chromium-driver installed
with apt-get when missing, run by the real ``make`` with a stand-in ``apt-get`` that logs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make") or "make"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

OUTSIDE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "DEBIAN_FRONTEND")
"""Left out of make's environment: an outer make's flags, and a DEBIAN_FRONTEND of our own."""
STAND_IN = """#!/bin/sh
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "{log}"
{then}
"""


def browser_step(
    tmp_path: Path, *, present: bool, apt_exit: str = "exit 0"
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    log = tmp_path / "apt.log"
    log.write_text("")
    apt = tmp_path / "apt-get"
    apt.write_text(STAND_IN.format(log=log, then=apt_exit))
    apt.chmod(0o755)
    binary = "/bin/sh" if present else str(tmp_path / "absent")
    done = subprocess.run(
        [
            MAKE,
            "--no-print-directory",
            "browser",
            f"CHROMIUM={binary}",
            f"CHROMEDRIVER={binary}",
            f"APT_GET={apt}",
            "AS_ROOT=",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in OUTSIDE},
        timeout=60,
        check=False,
    )
    return done, log.read_text().splitlines()


def test_missing_chromium_is_installed_non_interactively(tmp_path: Path) -> None:
    """No browser: apt-get install -y chromium chromium-driver, DEBIAN_FRONTEND=noninteractive."""
    done, calls = browser_step(tmp_path, present=False)
    assert done.returncode == 0, done.stderr
    assert calls == ["DEBIAN_FRONTEND=noninteractive install -y chromium chromium-driver"]
    assert "installing chromium and chromium-driver" in done.stdout


def test_a_present_chromium_is_left_alone(tmp_path: Path) -> None:
    done, calls = browser_step(tmp_path, present=True)
    assert done.returncode == 0, done.stderr
    assert calls == []


def test_a_failed_install_updates_once_then_gives_up_without_failing_make(tmp_path: Path) -> None:
    """apt-get fails (stale lists): one update, one more try; then a warning, not an error (the
    browser tests themselves skip, or fail under CI=true)."""
    done, calls = browser_step(tmp_path, present=False, apt_exit="exit 100")
    assert done.returncode == 0, done.stderr
    assert calls == [
        "DEBIAN_FRONTEND=noninteractive install -y chromium chromium-driver",
        "DEBIAN_FRONTEND= update",
    ]
    assert "could not install chromium and chromium-driver" in done.stderr
    assert "fail under CI=true" in done.stderr


def test_make_test_runs_the_browser_step() -> None:
    """`make test` reaches the browser step through its unit tests' prerequisites."""
    plan = subprocess.run(
        [MAKE, "-pn", "unit"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    ).stdout
    unit = next(line for line in plan.splitlines() if line.startswith("unit:"))
    assert "browser" in unit.split()
