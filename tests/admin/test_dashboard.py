"""The dashboard in headless Chromium: the chart fills with live data and invalidation works."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.waiting import wait_until

from .dashboard_app import TOKEN, build
from .serving import serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
# CI installs both (.ci/run), so there a missing browser fails instead of skipping
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs chromium and chromium-driver (see .ci/run)",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by selenium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _points(browser: Any) -> int:
    polylines = browser.find_elements("css selector", "#chart polyline.series")
    return max((len((p.get_attribute("points") or "").split()) for p in polylines), default=0)


def test_dashboard_charts_live_data_and_invalidates(
    browser: Any, redis_url: str, tmp_path: Path
) -> None:
    """With traffic, the chart draws lines per tier and function; the form removes an entry."""
    app, _ = build(redis_url)
    with serve(app) as port:
        base = f"http://127.0.0.1:{port}"
        http = httpx.Client(base_url=base, timeout=10)
        for x in [1, 2, 3, 1, 2, 3, 1, 1, 4]:
            http.get(f"/work/{x}").raise_for_status()
            http.get(f"/report/{x}").raise_for_status()
        browser.get(f"{base}/admin/")
        browser.find_element("id", "token").send_keys(TOKEN)
        browser.find_element("id", "connect").click()
        wait_until(lambda: "live" in browser.find_element("id", "status").text, what="first poll")
        for x in range(5, 12):  # more traffic between polls: the lines get a second point
            http.get(f"/work/{x % 3}")
        wait_until(lambda: _points(browser) >= 2, what="the chart to draw a line")
        legend = browser.find_element("id", "legend").text
        assert "tier memory" in legend and "tier redis" in legend and "square" in legend
        rows = browser.find_elements("css selector", "#tiers tbody tr")
        assert [r.text.split()[0] for r in rows] == ["memory", "redis"]
        assert "closed" in rows[0].text
        wait_until(lambda: "sq:3" in browser.find_element("id", "keys").text, what="the key list")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get("/admin/entries/sq:3", headers=auth).status_code == 200

        form = browser.find_element("id", "invalidate")
        form.find_element("name", "value").send_keys("sq:3")
        form.find_element("name", "reason").send_keys("browser test")
        form.find_element("css selector", "button[type=submit]").click()
        wait_until(
            lambda: "invalidated key sq:3" in browser.find_element("id", "inv-msg").text,
            what="the invalidation to be confirmed",
        )
        assert http.get("/admin/entries/sq:3", headers=auth).status_code == 404
        assert http.get("/admin/entries/sq:2", headers=auth).status_code == 200
        assert browser.save_screenshot(str(tmp_path / "dashboard.png"))
