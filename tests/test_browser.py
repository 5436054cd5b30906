"""The dashboard in a real browser: headless Chromium (Debian's package) driven by Selenium.

The collector runs in a real HTTP server on loopback against the test Redis;
reports reach it through the report endpoint. Screenshots of the overview and
host pages go to ``test-artifacts/`` (or ``$TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from werkzeug.serving import WSGIRequestHandler, make_server

from collector import create_app, sites, users
from tests import pki
from tests.conftest import app_config, post
from tests.receiver import Receiver

PASSWORD = "correct horse battery"
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / "test-artifacts")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 20  # seconds a condition may take to hold (a ceiling, not a measurement)


@pytest.fixture
def app(redis_client, redis_url, redis_cluster, tmp_path):
    return create_app(app_config(redis_url, redis_cluster, tmp_path, WEBHOOK_ALLOW_PRIVATE="true"))


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


@pytest.fixture
def server(app) -> Iterator[str]:
    http = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{http.server_port}"
    app.config["PUBLIC_URL"] = base
    yield base
    http.shutdown()


@pytest.fixture
def browser(tmp_path) -> Iterator[WebDriver]:
    assert Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists(), (
        "Chromium and ChromeDriver are needed: apt-get install chromium chromium-driver (.ci/run does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: WebDriver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.execute_script("window.scrollTo(0, 0)")
    # The whole page: grow the window to the document's height first.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, min(max(int(height), 800), 6000))
    assert driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1400)
    return path


def attr(driver: WebDriver, selector: str, name: str) -> str | None:
    """An attribute read in one step (the live part may be replaced between two Selenium calls)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
        selector, name)


def text(driver: WebDriver, selector: str) -> str | None:
    return driver.execute_script("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                                 selector)


def click(driver: WebDriver, by: str, value: str) -> None:
    """Find and click, again if the live part was replaced in between (a refresh may land any time)."""
    def attempt(d: WebDriver) -> bool:
        d.find_element(by, value).click()
        return True

    WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(attempt)


def wait(driver: WebDriver, condition, message: str):
    # An element read while a form's answer replaces the page (or a refresh its live part) goes
    # stale: that is "not yet", like an element not found.
    return WebDriverWait(driver, WAIT, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), message)


def arrive(driver: WebDriver, url_holds, message: str) -> None:
    """Wait until the browser is on a page whose URL satisfies url_holds and that page has loaded."""
    wait(driver, lambda d: url_holds(d.current_url) and d.execute_script("return document.readyState") == "complete",
         message)


def sign_in(driver: WebDriver, base: str, email: str) -> None:
    driver.get(base + "/sites")
    assert "/login" in driver.current_url  # signed out: sent to sign in first
    driver.find_element(By.NAME, "email").send_keys(email)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    # The path, not the URL's end: the sign-in page itself is /login?next=/sites.
    arrive(driver, lambda url: urlsplit(url).path == "/sites", "sign-in did not reach /sites")


def report(app, site_id: str, body: dict, address: str, user_agent: str = "Mozilla/5.0 Chrome/63") -> None:
    answer = post(app.test_client(), site_id, body,
                  environ_base={"REMOTE_ADDR": address, "HTTP_USER_AGENT": user_agent})
    assert answer.status_code == 200, answer.get_data(as_text=True)


@pytest.fixture
def shop(app, redis_client, ca):
    """A site with data: a Must-Staple host without staples (firing), a host with no OCSP URL."""
    shop = sites.create(redis_client, "Shop", [])
    users.create(redis_client, "owner@example.com", PASSWORD, sites=[shop.site.id])
    must = pki.make_leaf(ca, "www.example.com", must_staple=True)
    for i in range(3):
        report(app, shop.site.id, pki.chrome_report(must, ca), f"192.0.2.{i + 1}")
    old = pki.make_leaf(ca, "www.example.com", must_staple=True)
    report(app, shop.site.id,
           pki.chrome_report(must, ca, response_status="NO_MATCHING_RESPONSE", ocsp_der=pki.ocsp_response(old, ca)),
           "192.0.2.9")
    no_ocsp = pki.make_leaf(ca, "api.example.com", ocsp_url=None)
    report(app, shop.site.id, pki.chrome_report(no_ocsp, ca), "198.51.100.7")
    return shop


def test_owner_signs_in_reads_the_hosts_changes_settings_and_signs_out(app, server, browser, shop, ca, redis_client):
    driver = browser
    sign_in(driver, server, "owner@example.com")

    # Overview: the firing host first, with its badge and a drawn sparkline.
    section = driver.find_element(By.CSS_SELECTOR, f'section[data-site="{shop.site.id}"]')
    rows = section.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [r.get_attribute("data-host") for r in rows] == ["www.example.com", "api.example.com"]
    assert rows[0].find_element(By.CSS_SELECTOR, ".badge").text == "firing"
    spark = rows[0].find_element(By.CSS_SELECTOR, "svg.spark")
    assert spark.get_attribute("data-total") == "4"
    assert spark.find_elements(By.CSS_SELECTOR, "rect") and spark.size["width"] > 50
    print("screenshot:", shot(driver, "overview.png"))

    # Host page: chart drawn with a bar per hour, the why, Must-Staple, the incident, decoded samples.
    click(driver, By.LINK_TEXT, "www.example.com")
    arrive(driver, lambda url: "/hosts/www.example.com" in urlsplit(url).path, "host page did not open")
    chart = driver.find_element(By.CSS_SELECTOR, "svg.chart")
    assert chart.get_attribute("data-points") == "24" and chart.get_attribute("data-total") == "4"
    bars = chart.find_elements(By.CSS_SELECTOR, "rect.s-missing")
    assert bars and bars[0].size["height"] > 10  # really drawn, not zero-sized
    assert chart.find_elements(By.CSS_SELECTOR, "rect.s-no-matching-response")
    assert driver.find_element(By.CSS_SELECTOR, "[data-state]").text == "firing"
    assert driver.find_element(By.CSS_SELECTOR, "[data-must-staple]").text.startswith("Yes.")
    codes = [e.get_attribute("data-diagnosis") for e in driver.find_elements(By.CSS_SELECTOR, "[data-diagnosis]")]
    assert codes == ["no_staple", "wrong_certificate"]
    assert "ssl_stapling on" in driver.find_element(By.CSS_SELECTOR, '[data-diagnosis="no_staple"]').text
    first_sample = driver.find_element(By.CSS_SELECTOR, "details.sample")
    assert "CN=www.example.com" in first_sample.text and "(not the served certificate)" in first_sample.text
    print("screenshot:", shot(driver, "host.png"))

    # Switching the range and refreshing happen in place: the page is not reloaded.
    driver.execute_script("window.__samePage = 'yes'")
    click(driver, By.CSS_SELECTOR, 'a[data-range="7d"]')
    wait(driver, lambda d: attr(d, "svg.chart", "data-points") == "28", "the 7 d chart did not replace the 24 h one")
    assert "range=7d" in driver.current_url
    assert driver.execute_script("return window.__samePage") == "yes"
    report(app, shop.site.id, pki.chrome_report(pki.make_leaf(ca, "www.example.com"), ca), "192.0.2.50")
    click(driver, By.CSS_SELECTOR, "[data-refresh-now]")
    wait(driver, lambda d: text(d, "[data-last-day]") == "5", "refresh did not show the new report")
    assert attr(driver, "svg.chart", "data-total") == "5"
    assert driver.execute_script("return window.__samePage") == "yes"

    # Settings: copy the header.
    driver.find_element(By.LINK_TEXT, "Settings").click()
    arrive(driver, lambda url: urlsplit(url).path.endswith("/settings"), "settings did not open")
    driver.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": server, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    header = sites.header_line(server, shop.site.id)
    assert driver.find_element(By.ID, "header-line").text == header
    button = driver.find_element(By.CSS_SELECTOR, '[data-copy="header-line"]')
    button.click()
    wait(driver, lambda d: button.text == "Copied", "the copy button did not report a copy")
    copied = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "navigator.clipboard.readText().then(done, e => done('error: ' + e));")
    assert copied == header
    print("screenshot:", shot(driver, "settings.png"))

    # Change a threshold.
    field = driver.find_element(By.NAME, "min_reports")
    field.clear()
    field.send_keys("9")
    field.submit()
    wait(driver, lambda d: "Alert thresholds saved" in d.find_element(By.ID, "alerts").text, "no confirmation")
    assert driver.find_element(By.NAME, "min_reports").get_attribute("value") == "9"
    assert redis_client.hget(f"es:{{{shop.site.id}}}:site", "alert:min_reports") == b"9"
    assert sites.get(redis_client, shop.site.id).alerts == {"min_reports": 9}

    # Set a webhook to a real receiver and send a test.
    receiver = Receiver()
    try:
        driver.find_element(By.NAME, "url").send_keys(receiver.url)
        driver.find_element(By.CSS_SELECTOR, "#webhook form button[type=submit]").click()
        wait(driver, lambda d: d.find_elements(By.ID, "webhook-secret"), "the signing secret was not shown")
        assert driver.find_element(By.ID, "webhook-secret").text.startswith("whsec_")
        driver.find_element(By.CSS_SELECTOR, "[data-send-test]").click()
        result = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "[data-webhook-result]"), "no test result")
        assert "delivered (HTTP 200" in result[0].text
        received = receiver.wait_for(1)
        assert received[0].json()["type"] == "test"
    finally:
        receiver.close()

    # Rotate the API token: the old one stops working, the new one works.
    api_path = f"/api/v1/sites/{shop.site.id}/stats"
    assert requests.get(server + api_path, headers={"Authorization": f"Bearer {shop.token}"}, timeout=10).ok
    driver.find_element(By.CSS_SELECTOR, "#token button").click()
    driver.switch_to.alert.accept()
    wait(driver, lambda d: d.find_elements(By.ID, "api-token"), "the new token was not shown")
    new_token = driver.find_element(By.ID, "api-token").text
    assert new_token.startswith("st_") and new_token != shop.token
    assert requests.get(server + api_path, headers={"Authorization": f"Bearer {shop.token}"},
                        timeout=10).status_code == 401
    fresh = requests.get(server + api_path, headers={"Authorization": f"Bearer {new_token}"}, timeout=10)
    assert fresh.status_code == 200 and fresh.json()["today"]["accepted"] == 6

    # Nothing the pages did was blocked by their own Content-Security-Policy, nothing failed to load.
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert problems == []

    # Sign out: back to the sign-in page, and the pages are closed again.
    driver.find_element(By.CSS_SELECTOR, "header.top form button").click()
    arrive(driver, lambda url: urlsplit(url).path == "/login", "sign-out did not reach the sign-in page")
    driver.get(server + "/sites")
    assert "/login" in driver.current_url


def test_a_user_of_one_site_cannot_reach_another(app, server, browser, shop, redis_client):
    other = sites.create(redis_client, "Other", [])
    users.create(redis_client, "other@example.com", PASSWORD, sites=[other.site.id])
    driver = browser
    sign_in(driver, server, "other@example.com")
    assert shop.site.id not in driver.page_source and "Shop" not in driver.page_source
    for path in (f"/sites/{shop.site.id}/hosts/www.example.com", f"/sites/{shop.site.id}/settings",
                 f"/sites/{other.site.id}/hosts/www.example.com"):
        driver.get(server + path)
        assert driver.find_element(By.TAG_NAME, "h1").text == "Not Found", path
        assert "www.example.com" not in driver.find_element(By.TAG_NAME, "main").text
    # The API: the other site's token gets a 404 for this site, like the pages.
    answer = requests.get(f"{server}/api/v1/sites/{shop.site.id}/hosts",
                          headers={"Authorization": f"Bearer {other.token}"}, timeout=10)
    assert answer.status_code == 404
    # A forged settings form for the other site is refused the same way.
    token = driver.find_element(By.NAME, "csrf").get_attribute("value")
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    forged = requests.post(f"{server}/sites/{shop.site.id}/settings/token", data={"csrf": token},
                           cookies=cookies, timeout=10)
    assert forged.status_code == 404
    assert sites.site_for_token(redis_client, shop.token) == shop.site.id  # not rotated


PAYLOADS = ("<script>document.title='pwned';window.__xss=1</script>",
            "<img src=x onerror=\"document.title='pwned';window.__xss=2\">")


def test_markup_in_a_report_is_shown_as_text_and_runs_nothing(app, server, browser, redis_client, ca):
    site = sites.create(redis_client, "Shop", [])
    users.create(redis_client, "owner@example.com", PASSWORD, sites=[site.site.id])
    leaf = pki.make_leaf(ca, "www.example.com")
    # A hostname cannot carry markup: it is refused at the door.
    bad_host = post(app.test_client(), site.site.id, {**pki.chrome_report(leaf, ca), "hostname": PAYLOADS[0]})
    assert bad_host.status_code == 400
    # PEM fields and the user agent can: they are stored as sent.
    hostile = {**pki.chrome_report(leaf, ca), "served-certificate-chain": list(PAYLOADS)}
    report(app, site.site.id, hostile, "192.0.2.1", user_agent=PAYLOADS[1])
    driver = browser
    sign_in(driver, server, "owner@example.com")
    click(driver, By.LINK_TEXT, "www.example.com")
    arrive(driver, lambda url: "/hosts/www.example.com" in urlsplit(url).path, "host page did not open")
    click(driver, By.CSS_SELECTOR, "details.sample details.raw > summary")
    shown = driver.execute_script(
        "return Array.from(document.querySelectorAll('details.sample details.raw pre.pem'), e => e.textContent)")
    assert shown == list(PAYLOADS)
    summary = driver.find_element(By.CSS_SELECTOR, "details.sample summary").text
    assert "<img src=x onerror=" in summary
    with pytest.raises(NoSuchElementException):
        driver.find_element(By.CSS_SELECTOR, "main img")
    assert driver.execute_script("return window.__xss") is None
    assert driver.title != "pwned"
    # The refreshed part is escaped the same way.
    click(driver, By.CSS_SELECTOR, "[data-refresh-now]")
    wait(driver, lambda d: attr(d, "#live", "data-refreshed"), "no refresh")
    assert driver.execute_script("return window.__xss") is None
    assert not driver.find_elements(By.CSS_SELECTOR, "main img")
    # What the reader opened stays open across the refresh.
    assert driver.execute_script("return document.querySelector('details.sample details.raw').open") is True
    print("screenshot:", shot(driver, "host-hostile-report.png"))
