"""Every dashboard page in headless Chromium against a running server with real data.

Screenshots go to ``test-artifacts/dashboard/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import insert, select

from app.db import session_factory, unit_of_work, upgrade
from app.models import Architecture, Device, Measurement
from devices.reference import load_reference
from tests.app.conftest import flag_unstable, seed_slice
from tests.conftest import API_KEY
from tests.processes import Server, edgeopt_job

SHOTS = Path("test-artifacts/dashboard")
DEVICES = ["gold_6226", "pixel3", "raspi4", "eyeriss", "fpga", "titan_rtx_256"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dash")
    url = f"sqlite:///{tmp / 'dash.db'}"
    env = {
        "EDGEOPT_DATABASE_URL": url,
        "EDGEOPT_ARTIFACTS_DIR": str(tmp / "artifacts"),
        "EDGEOPT_API_KEYS": API_KEY,
    }
    upgrade(url)
    seed_slice(url, load_reference("nb201"), DEVICES, 600, specs={"cores": 4})
    flag_unstable(url, "raspi4", 200)
    trained = edgeopt_job("predictors", "train", "--space", "nb201", "--min-rows", "100", env=env)
    assert trained.returncode == 0, trained.stderr
    srv = Server(env)
    head = {"X-API-Key": API_KEY}
    budget = float(np.median(load_reference("nb201").latency_ms[:600, 0]))
    r = httpx.post(
        f"{srv.url}/optimize",
        json={"device": "gold_6226", "goals": {"max_latency_ms": budget}},
        headers=head,
        timeout=120,
    )
    assert r.status_code == 201, r.text
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "install Debian's chromium and chromium-driver (see .ci/run)"
    options = Options()
    options.binary_location = binary
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    for flag in [*flags, "--window-size=1400,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield chrome
    chrome.quit()


PAGES = [
    ("overview", "/", 1),
    ("device", "/ui/devices/1", 1),
    ("predictors", "/ui/predictors", 4),
    ("agreement", "/ui/agreement?space=nb201", 1),
    ("optimization", "/ui/optimizations/1", 1),
    ("jobs", "/ui/jobs", 0),
]


@pytest.mark.parametrize(("name", "path", "charts"), PAGES)
def test_page_renders_its_charts_without_console_errors(
    server: Server, browser: webdriver.Chrome, name: str, path: str, charts: int
) -> None:
    browser.get_log("browser")  # drop what earlier pages logged
    browser.get(server.url + path)
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.ID, "status").text != "")
    status = browser.find_element(By.ID, "status").text
    assert not status.startswith("error"), status
    if charts:
        wait.until(
            lambda b: len(b.find_elements(By.CSS_SELECTOR, ".js-plotly-plot .main-svg")) >= charts
        )
    else:  # the jobs page: a live table of the training job, with its logs
        wait.until(lambda b: "train-predictors" in b.find_element(By.ID, "jobs").text)
        wait.until(lambda b: "succeeded" in b.find_element(By.ID, "logs").text)
    browser.save_screenshot(str(SHOTS / f"{name}.png"))
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_predictor_table_scores_stable_measurements_apart(
    server: Server, browser: webdriver.Chrome
) -> None:
    browser.get(server.url + "/ui/predictors")
    WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#table tbody tr"))
    heads = [th.text for th in browser.find_elements(By.CSS_SELECTOR, "#table thead th")]
    column = heads.index("±10%, stable measurements")
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in browser.find_elements(By.CSS_SELECTOR, "#table tbody tr")
    ]
    cells = {row[heads.index("device / dataset")]: row[column] for row in rows}
    assert 0.0 <= float(cells["raspi4"]) <= 1.0  # only raspi4 had flagged measurements
    assert cells["gold_6226"] == ""


def test_optimization_page_links_the_model(server: Server, browser: webdriver.Chrome) -> None:
    browser.get(server.url + "/ui/optimizations/1")
    link = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "download"))
    model = httpx.get(link.get_attribute("href"), timeout=120)
    assert model.status_code == 200 and len(model.content) > 10_000
    goals = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "goals").text)
    assert "latency budget (ms)" in goals and "confidence" in goals


def test_an_infeasible_optimization_shows_no_chosen_design(
    server: Server, browser: webdriver.Chrome
) -> None:
    r = httpx.post(
        f"{server.url}/optimize",
        json={"device": "gold_6226", "goals": {"min_accuracy": 99}},
        headers={"X-API-Key": API_KEY},
        timeout=120,
    )
    assert r.status_code == 201 and r.json()["design"] is None
    browser.get(f"{server.url}/ui/optimizations/{r.json()['id']}")
    title = WebDriverWait(browser, 30).until(
        lambda b: b.find_element(By.ID, "design-title").text == "Nothing met the goals"
    )
    assert title
    assert not browser.find_element(By.ID, "download").is_displayed()
    assert "closest" in browser.find_element(By.ID, "design").text


def test_chart_data_stays_small_for_large_registries(settings, monkeypatch) -> None:
    """Hundreds of devices: the heatmap uses a bounded design sample and the latency
    distribution is binned, so the browser gets kilobytes, not the raw measurements."""
    import app.dashboard_data as dashboard_data

    monkeypatch.setattr(dashboard_data, "AGREEMENT_ROWS", 150)
    rng = np.random.default_rng(0)
    factory = session_factory(settings.database_url)
    with unit_of_work(factory) as s:
        s.execute(
            insert(Architecture),
            [{"space": "nb201", "encoding": f"synthetic-{i}"} for i in range(400)],
        )
        arch_ids = s.scalars(select(Architecture.id).order_by(Architecture.id)).all()
        s.execute(insert(Device), [{"name": f"dev-{d:03d}", "kind": "cpu"} for d in range(250)])
        device_ids = s.scalars(select(Device.id).order_by(Device.id)).all()
        base = rng.lognormal(size=len(arch_ids))
        rows = [
            {
                "device_id": d,
                "architecture_id": a,
                "metric": "latency_ms",
                "policy": "fp32",
                "value": float(v),
            }
            for d in device_ids
            for a, v in zip(
                arch_ids, base * rng.lognormal(sigma=0.3, size=len(arch_ids)), strict=True
            )
        ]
        s.execute(insert(Measurement), rows)
    with factory() as s:
        agreement = dashboard_data.rank_agreement(s, "nb201")
        detail = dashboard_data.device_detail(s, device_ids[0])
    assert len(agreement["devices"]) == 250 and agreement["designs_used"] == 150
    assert agreement["proxies"]
    assert all(p["proxy"] and p["spearman"] > 0 for p in agreement["proxies"])
    assert len(detail["latency"]) == 1 and len(detail["latency"][0]["counts"]) == 40
