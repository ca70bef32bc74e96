"""Headless Chromium for the console's browser tests and its screenshot script.

Debian's ``chromium`` and ``chromium-driver`` packages (``make test`` installs them when
missing): Selenium is pointed at both binaries, so Selenium Manager never downloads a browser.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from selenium.webdriver.chrome.webdriver import WebDriver

__all__ = ["CHROMEDRIVER", "CHROMIUM", "missing", "start_chromium"]

CHROMIUM: Final = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER: Final = (
    os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver") or "/usr/bin/chromedriver"
)
INSTALL: Final = (
    "install Debian's chromium and chromium-driver (make test does, with apt-get; or "
    "DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver) and the dev "
    "extra (selenium)"
)


def missing() -> str | None:
    """What the browser tests lack (with what to do), or None when they can run."""
    absent = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        absent.append("the selenium package")
    if absent:
        return f"the browser tests need {', '.join(absent)}: {INSTALL}"
    return None


def start_chromium(width: int = 1100, height: int = 900) -> WebDriver:
    """A headless Chromium session (no sandbox: tests may run as root in a container)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
