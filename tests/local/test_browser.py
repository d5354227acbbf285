"""A real browser: headless Chromium (Debian's chromium and chromium-driver)
opens the page through the external balancer, adds a task with the form and
sees it listed; the task is in PostgreSQL too."""

from __future__ import annotations

import os
import shutil
import uuid

import pytest
from fleetlib import fleet, skip_unless_asked

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
    pytest.fail(f"none of {names} on PATH: make setup installs chromium and chromium-driver")


@pytest.fixture
def browser():
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
    service = webdriver.ChromeService(executable_path=find("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_page_adds_a_task_in_a_real_browser(browser):
    url = fleet()["url"] + "/"
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
