"""A real browser for the console's tests: Debian's chromium driven through its chromedriver
(selenium), and the API the console is served by, as real processes stopped by pid.

``make browser`` (a dependency of ``make test``) installs ``chromium`` and ``chromium-driver``
with apt-get when missing. Selenium is given the driver's path, so Selenium Manager never runs
(and never downloads anything; ``SE_OFFLINE`` says so again). The background-networking flags
keep chromium from calling home: this machine's network is closed, and without them chromium
floods it with connection attempts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from headwater.processes import free_port
from tests.integration.pipeline import Deployment

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "ConsoleServer",
    "chromium",
    "page_errors",
    "start_console_server",
    "wait",
]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebDriver]:
    """A headless chromium with a fresh profile; quit (browser and driver) at the end."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.fail(
            f"{missing} not installed: run `make browser` (apt-get install -y "
            "--no-install-recommends chromium chromium-driver)"
        )
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # for page_errors
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()  # closes chromium and stops the chromedriver process it started
        if service.process is not None and service.process.poll() is None:
            service.process.kill()
            service.process.wait(timeout=10)


def wait(
    driver: WebDriver, what: str, check: Callable[[WebDriver], object], timeout_s: float = 15
) -> None:
    """Until ``check`` is truthy; fails naming ``what`` with the page's heading and errors."""
    try:
        # Pages replace their content as they load: an element read mid-way may be gone.
        ignored = (NoSuchElementException, StaleElementReferenceException)
        WebDriverWait(driver, timeout_s, 0.1, ignored_exceptions=ignored).until(check)
    except TimeoutException:
        heading = driver.execute_script(
            "const t = document.getElementById('page-title');"
            "const e = document.querySelector('.error');"
            "return (t ? t.textContent : '(no heading)') + ' | ' + (e ? e.textContent : '');"
        )
        pytest.fail(f"waited {timeout_s}s for {what}; page {driver.current_url}: {heading}")


def page_errors(driver: WebDriver) -> list[str]:
    """Script errors and policy violations (a refused inline script or style) the pages
    logged since the last call; answers the API gave (a 401 before the key, a 404) are not."""
    return [
        str(entry["message"])
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]


class ConsoleServer:
    """The API (``create_app`` on uvicorn) as a child process, stopped by its pid."""

    def __init__(self, deployment: Deployment) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = deployment.settings.home / "console-api.log"
        self._log = self.log_file.open("ab")
        args = [sys.executable, "-m", "tests.integration.console_server", str(self.port)]
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **deployment.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 60) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the API exited: {self.log_file.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the API did not answer in {timeout_s}s: {self.log_file.read_text()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def start_console_server() -> Iterator[Callable[[Deployment], ConsoleServer]]:
    """Start the console's API for a deployment; every one started is stopped at the end of
    the test."""
    started: list[ConsoleServer] = []

    def start(deployment: Deployment) -> ConsoleServer:
        server = ConsoleServer(deployment)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()
