"""The Makefile's environment logic, run by the real ``make`` with stand-in interpreters.

A stand-in ``python`` reports the version it was made with (it executes the Makefile's
``-c`` check with that ``sys.version_info``), makes stand-in virtual environments and logs
every other call (pip, the demo) instead of running it. No second Python is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MAKE = shutil.which("make") or "make"
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

STAND_IN = """#!{python}
import json, os, sys
VERSION = {version!r}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"python": sys.argv[0], "args": sys.argv[1:]}}) + "\\n")
if sys.argv[1] == "-c":
    sys.version_info = VERSION
    exec(sys.argv[2])
    sys.exit(0)
if sys.argv[1:3] == ["-m", "venv"]:
    folder = os.path.join(sys.argv[3], "bin")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "python"), "w") as made:
        made.write(open(__file__).read())
    os.chmod(os.path.join(folder, "python"), 0o755)
"""


def stand_in(path: Path, version: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAND_IN.format(python=sys.executable, version=version))
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    return tmp_path


Calls = list[list[str]]
OUTER_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")  # when the suite runs under `make test`


def make(project: Path, *args: str, python: Path) -> tuple[subprocess.CompletedProcess[str], Calls]:
    log = project / "calls.jsonl"
    log.write_text("")
    done = subprocess.run(
        [MAKE, "--no-print-directory", *args, f"PYTHON={python}"],
        cwd=project,
        capture_output=True,
        text=True,
        env={
            **{
                k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
            },
            "FAKE_LOG": str(log),
        },
        timeout=60,
        check=False,
    )
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return done, [call["args"] for call in calls if call["args"][0] != "-c"]


def test_a_venv_of_an_old_python_is_rebuilt_and_demo_installs_only_the_gateway_extra(
    project: Path,
) -> None:
    """A .venv whose python is 3.10 (a failed `make demo PYTHON=python3.10`) is rebuilt;
    the demo installs `.[gateway]` in compat editable mode, not the development tools."""
    python = stand_in(project / "py312" / "python", (3, 12, 0))
    stand_in(project / ".venv" / "bin" / "python", (3, 10, 12))

    done, calls = make(project, "demo", python=python)

    assert done.returncode == 0, done.stderr
    assert "was made by a Python older than 3.11" in done.stdout
    assert ["-m", "venv", ".venv"] in calls
    installs = [c for c in calls if c[:3] == ["-m", "pip", "install"] and "-e" in c]
    assert installs == [
        ["-m", "pip", "install", "--config-settings", "editable_mode=compat", "-e", ".[gateway]"]
    ]
    assert calls[-1] == ["examples/quickstart.py"]
    assert "installing human-rpc-sdk[gateway]" in done.stdout  # progress is shown

    again, calls = make(project, "demo", python=python)
    assert again.returncode == 0, again.stderr
    assert calls == [["examples/quickstart.py"]]  # nothing rebuilt or reinstalled


def test_a_broken_venv_is_rebuilt(project: Path) -> None:
    python = stand_in(project / "py312" / "python", (3, 12, 0))
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "python").symlink_to(project / "gone" / "python3.9")

    done, calls = make(project, "demo", python=python)

    assert done.returncode == 0, done.stderr
    assert ["-m", "venv", ".venv"] in calls
    assert (project / ".venv" / "bin" / "python").resolve().is_file()


def test_an_old_python_is_refused_and_leaves_nothing_behind(project: Path) -> None:
    """`make demo PYTHON=python3.10` says what to do and makes no .venv; the next `make
    demo` with a good Python works without `make clean`."""
    old = stand_in(project / "py310" / "python", (3, 10, 12))
    done, calls = make(project, "demo", python=old)
    assert done.returncode != 0
    assert "is not Python 3.11 or newer" in done.stderr
    assert not (project / ".venv").exists()
    assert calls == []

    good = stand_in(project / "py312" / "python", (3, 12, 0))
    done, calls = make(project, "demo", python=good)
    assert done.returncode == 0, done.stderr
    assert calls[-1] == ["examples/quickstart.py"]


def test_the_dev_tools_have_a_stamp_of_their_own(project: Path) -> None:
    """After the demo, the tests' environment still installs `.[dev]` (and only once)."""
    python = stand_in(project / "py312" / "python", (3, 12, 0))
    assert make(project, "demo", python=python)[0].returncode == 0

    done, calls = make(project, ".venv/.installed-dev", python=python)
    assert done.returncode == 0, done.stderr
    assert calls == [
        ["-m", "pip", "install", "--config-settings", "editable_mode=compat", "-e", ".[dev]"]
    ]
    assert make(project, ".venv/.installed-dev", python=python)[1] == []
