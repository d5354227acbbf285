"""A real browser: headless Chromium (Debian's chromium and chromium-driver)
opens the site's URL (CloudFront's stand-in: the page from the artifact
bucket, the API through the external balancer) over HTTPS, trusting the local
CA as a user's browser trusts the site's CA (an NSS database of the test's
own, made with certutil, where Chromium on Linux reads its trust), adds a
task with the form and sees it listed; the task is in PostgreSQL too. Without
the CA the same browser is shown the certificate error, not the page."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from fleetlib import CA, fleet, skip_unless_asked

pytestmark = skip_unless_asked

from test_fleet import psql  # noqa: E402

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def find(*names: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"none of {names} on PATH: make setup installs them (chromium, libnss3-tools)")


def trusting(home, ca) -> dict[str, str]:
    """The environment of a Chromium whose home's NSS database (where Chromium
    on Linux reads the certificates a user trusts) holds `ca` as a CA for
    sites, or nothing when `ca` is None."""
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    certutil = find("certutil")
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True)
    if ca is not None:
        subprocess.run(
            [certutil, "-A", "-d", f"sql:{nssdb}", "-n", "local CA", "-t", "C,,", "-i", ca],
            check=True,
        )
    return {**os.environ, "HOME": str(home)}


def chromium(env: dict[str, str]):
    options = webdriver.ChromeOptions()
    options.binary_location = find("chromium", "chromium-browser")
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI: Chromium's sandbox refuses to run as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1024,768",
        "--no-first-run",
        "--disable-extensions",
        # only 127.0.0.1: no proxy, no background networking
        "--no-proxy-server",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "SEVERE"})
    # the driver on PATH, never a download (Selenium Manager stays offline)
    os.environ["SE_OFFLINE"] = "true"
    service = webdriver.ChromeService(executable_path=find("chromedriver"), env=env)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture
def browser(tmp_path):
    driver = chromium(trusting(tmp_path, str(CA)))
    try:
        yield driver
    finally:
        driver.quit()


def test_without_the_local_ca_the_browser_shows_the_certificate_error(tmp_path):
    url = fleet()["site"] + "/"
    driver = chromium(trusting(tmp_path, None))
    try:
        driver.get(url)
        # Chromium's interstitial, never the page
        assert driver.find_elements(By.ID, "version") == []
        assert "ERR_CERT_AUTHORITY_INVALID" in driver.page_source
    finally:
        driver.quit()


def test_page_adds_a_task_in_a_real_browser(browser):
    url = fleet()["site"] + "/"
    title = f"browser {uuid.uuid4().hex[:12]}"
    browser.get(url)
    wait = WebDriverWait(browser, 20)
    # the page's script ran: it showed the release from /version
    wait.until(lambda d: "taskboard" in d.find_element(By.ID, "version").text)
    field = wait.until(ec.element_to_be_clickable((By.ID, "title")))
    field.send_keys(title)
    browser.find_element(By.CSS_SELECTOR, "#add-form button[type=submit]").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "tasks"), title))
    # the form is ready for the next task, and no error was shown
    assert browser.find_element(By.ID, "title").get_attribute("value") == ""
    # (the browser's own request for /favicon.ico is not the page's: the page has none)
    severe = [
        e
        for e in browser.get_log("browser")
        if e.get("level") == "SEVERE" and "/favicon.ico" not in e.get("message", "")
    ]
    assert severe == [], severe
    # a reload lists it again: it came from the API, not only from the page
    browser.get(url)
    wait.until(ec.text_to_be_present_in_element((By.ID, "tasks"), title))
    # the title is the test's own hex: nothing to inject
    stored = psql(f"SELECT count(*) FROM tasks WHERE title = '{title}'")  # noqa: S608
    assert stored == "1"
