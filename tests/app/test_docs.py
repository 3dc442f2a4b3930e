"""The interactive API docs (/docs, /redoc) need nothing but the service: no CDN, no fonts."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from app.db import upgrade
from tests.processes import Server

# ReDoc's "API docs by Redocly" footer asks its CDN for a logo it hides when that fails: the
# one request the page makes elsewhere, decorative, left as published (vendor/README.md)
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
URL = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl\s*:\s*["']([^"']+)["']""")


def referenced_urls(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_reference_only_the_services_own_urls_and_each_answers(
    client: TestClient, page: str
) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "http://" not in r.text and "https://" not in r.text
    urls = referenced_urls(r.text)
    assert "/openapi.json" in urls and len(urls) >= 3  # the schema, a script, a favicon
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        got = client.get(url)
        assert got.status_code == 200 and got.content, url
    assert client.get("/static/vendor/swagger-ui/LICENSE").status_code == 200
    assert client.get("/static/vendor/redoc/redoc.standalone.js.map").status_code == 404
    assert client.get("/static/vendor").status_code == 404  # a folder is no static file


def test_every_reference_in_the_schema_resolves(client: TestClient) -> None:
    """ReDoc stops at the first dangling ``$ref`` (the upload body's MeasurementIn was one)."""
    schema = client.get("/openapi.json").json()
    refs = set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', json.dumps(schema)))
    assert refs and refs <= set(schema["components"]["schemas"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("docs")
    url = f"sqlite:///{tmp / 'docs.db'}"
    upgrade(url)
    srv = Server({"EDGEOPT_DATABASE_URL": url, "EDGEOPT_ARTIFACTS_DIR": str(tmp / "artifacts")})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def offline_browser() -> Iterator[webdriver.Chrome]:
    """Headless Chromium that resolves no host name: only the server's 127.0.0.1 answers."""
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "install Debian's chromium and chromium-driver (see .ci/run)"
    options = Options()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    yield chrome
    chrome.quit()


@pytest.mark.parametrize(
    ("page", "operation"),
    [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id*='operation/']")],
)
def test_docs_render_the_operations_without_the_internet(
    server: Server, offline_browser: webdriver.Chrome, page: str, operation: str
) -> None:
    offline_browser.get_log("browser")  # drop what an earlier page logged
    offline_browser.get(server.url + page)
    WebDriverWait(offline_browser, 60).until(
        lambda b: len(b.find_elements(By.CSS_SELECTOR, operation)) >= 10
    )
    text = offline_browser.find_element(By.TAG_NAME, "body").text
    assert "/optimize" in text
    errors = [
        e
        for e in offline_browser.get_log("browser")
        if e["level"] == "SEVERE" and REDOC_LOGO not in e["message"]
    ]
    assert errors == []
    shots = Path("test-artifacts/docs")
    shots.mkdir(parents=True, exist_ok=True)
    offline_browser.save_screenshot(str(shots / f"{page.strip('/')}.png"))
