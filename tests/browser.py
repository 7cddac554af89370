"""Open a self-contained HTML page in headless Chromium and say what the browser saw.

Used by the report's and the controls page's browser tests; the ``chromium`` fixture
(tests/conftest.py) finds the browser and its driver.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def find_chromium() -> tuple[str, str]:
    """Paths of Chromium and its driver; skip (fail with QUAKESHAP_REQUIRE_BROWSER=1, as in
    CI) when they are not installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    reason = (
        "headless Chromium not found (install the Debian packages chromium and "
        "chromium-driver); the browser test did not run"
    )
    if os.environ.get("QUAKESHAP_REQUIRE_BROWSER") == "1":
        pytest.fail(reason + ", and QUAKESHAP_REQUIRE_BROWSER=1 makes it mandatory")
    pytest.skip(reason)


@dataclass(frozen=True)
class PageView:
    title: str
    #: every <img>: its alt text, whether it finished loading, its natural width
    images: list[dict]
    #: resources fetched other than data: URIs (a self-contained page fetches none)
    fetched: list[str]
    #: console messages at level SEVERE or ERROR
    errors: list[dict]
    #: the text of every table header cell, in page order
    headers: list[str]


def view_page(chromium: tuple[str, str], page: Path, profile_dir: Path) -> PageView:
    """Load ``page`` from the file system in headless Chromium and report what it saw."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium_path, driver_path = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_path
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        browser.get(page.resolve().as_uri())
        images = browser.execute_script(
            "return Array.from(document.images).map("
            "i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth}));"
        )
        fetched = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
            ".filter(n => !n.startsWith('data:'));"
        )
        headers = browser.execute_script(
            "return Array.from(document.querySelectorAll('th')).map(t => t.textContent);"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        return PageView(browser.title, images, fetched, errors, headers)
    finally:
        browser.quit()
