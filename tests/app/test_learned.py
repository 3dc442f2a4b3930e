"""The learned optimizer in the service: trained as a job, listed, answering /optimize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.settings import Settings
from devices.fingerprint import fingerprint
from devices.reference import ReferenceTable
from search.learned import LearnedOptimizer
from tests.conftest import wait_for_job

SMALL = {"synthetic": 100, "epochs": 2}  # a quick model: these tests check wiring, not quality


@pytest.fixture
def learned(writer: TestClient, trained: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The trained slice plus a learned optimizer for NB201 on CIFAR-10."""
    started = writer.post("/optimizers/train", json=SMALL)
    assert started.status_code == 202, started.text
    job = wait_for_job(writer, started.json()["id"])
    assert job["result"]["version"] == 1
    return trained


def test_training_lists_the_optimizer_with_its_figures(
    writer: TestClient, learned: dict, settings: Settings, nb201: ReferenceTable
) -> None:
    page = writer.get("/optimizers").json()
    assert page["total"] == 1
    row = page["items"][0]
    assert sorted(row["devices"]) == sorted(learned)  # the registry's devices taught it
    quality = row["quality"]
    assert quality["synthetic_devices"] == 100
    assert 0 <= quality["realism"]["distance_synthetic"] < 1
    assert 0 <= quality["unseen_synthetic"]["hit_rate"] <= 1
    artifact = settings.artifacts_dir / row["artifact"]
    model = LearnedOptimizer.load(artifact)  # the state dict and its JSON sidecar
    assert model.spec.space == "nb201" and model.spec.dataset == "cifar10"
    assert writer.get(f"/optimizers/{row['id']}").json()["version"] == 1
    neural_answers_within_the_goals(writer, learned)
    a_goal_no_proposal_meets_falls_back_to_search_and_says_so(writer)
    a_new_device_described_inline_is_answered_from_its_fingerprint(writer, nb201)


def a_new_device_described_inline_is_answered_from_its_fingerprint(
    writer: TestClient, nb201: ReferenceTable
) -> None:
    column = [d.column for d in nb201.devices].index("pixel2")  # not in the registry
    row = {e: i for i, e in enumerate(nb201.encodings)}
    latency = nb201.latency_ms[:, column]
    shots = [{"arch": e, "latency_ms": float(latency[row[e]])} for e in fingerprint("nb201")]
    budget = float(np.median(latency))
    r = writer.post(
        "/optimize",
        json={"profile": {"name": "new-phone", "measurements": shots}, "method": "neural",
              "goals": {"max_latency_ms": budget}},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    optimizer = r.json()["answered_by"]["optimizer"]
    learned = optimizer if optimizer["method"] == "neural" else optimizer["learned"]
    assert learned["features"] == "measured"  # its own fingerprint, not a prediction


def neural_answers_within_the_goals(writer: TestClient, learned: dict) -> None:
    budget = float(np.median(learned["gold_6226"]))
    r = writer.post(
        "/optimize",
        json={"device": "gold_6226", "method": "neural", "goals": {"max_latency_ms": budget}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    optimizer = body["answered_by"]["optimizer"]
    assert optimizer["method"] == "neural", optimizer
    assert body["feasible"] and body["candidates"] < 15284  # only its proposals were checked
    design = body["design"]
    assert design["probabilities"]["all"] >= 0.9 and design["latency_ms"]["value"] < budget


def a_goal_no_proposal_meets_falls_back_to_search_and_says_so(writer: TestClient) -> None:
    r = writer.post(
        "/optimize",
        json={"device": "gold_6226", "method": "neural", "goals": {"max_latency_ms": 1e-6}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    optimizer = body["answered_by"]["optimizer"]
    assert optimizer["method"] == "search"
    assert "none of the learned optimizer's" in optimizer["decision"]
    # search over every cell but the 341 degenerate ones
    assert not body["feasible"] and body["candidates"] == 15284


def test_auto_uses_the_learned_optimizer_once_one_exists(writer: TestClient, trained) -> None:
    budget = float(np.median(trained["raspi4"]))
    goals = {"device": "raspi4", "goals": {"max_latency_ms": budget}}
    before = writer.post("/optimize", json=goals).json()
    assert before["answered_by"]["optimizer"] == {"method": "search"}
    wait_for_job(writer, writer.post("/optimizers/train", json=SMALL).json()["id"])
    after = writer.post("/optimize", json=goals).json()
    assert after["answered_by"]["optimizer"]["method"] in ("neural", "search")
    assert "learned" in after["answered_by"]["optimizer"] or (
        after["answered_by"]["optimizer"]["method"] == "neural"
    )


def test_neural_without_a_learned_optimizer_says_how_to_get_one(
    writer: TestClient, trained
) -> None:
    r = writer.post("/optimize", json={"device": "gold_6226", "method": "neural"})
    assert r.status_code == 422
    assert "train one" in r.json()["error"]["message"]


def test_a_front_of_budgets_in_one_call(
    writer: TestClient, learned: dict, settings: Settings
) -> None:
    truth = learned["pixel3"]
    budgets = [float(np.percentile(truth, p)) for p in (10, 30, 50, 70, 90)] + [1e-6]
    r = writer.post(
        "/optimize/front", json={"device": "pixel3", "method": "neural", "budgets_ms": budgets}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    points = body["points"]
    assert [p["max_latency_ms"] for p in points] == budgets
    assert not points[-1]["feasible"] and points[-1]["answered_by"] == "search"
    answered = [p for p in points if p["feasible"]]
    assert answered, body
    for p in answered:
        assert p["design"]["latency_ms"]["value"] < p["max_latency_ms"]
        assert p["design"]["probabilities"]["all"] >= 0.9
    accuracy = [p["design"]["accuracy"]["value"] for p in answered]
    assert accuracy[-1] >= accuracy[0]  # a larger budget never forces a worse design
    an_optimizer_whose_artifact_is_gone_is_reported(writer, settings)


def test_bad_training_requests_are_refused(writer: TestClient) -> None:
    assert writer.post("/optimizers/train", json={"space": "ofa_mbv3"}).status_code == 422
    assert writer.post("/optimizers/train", json={"space": "nope"}).status_code == 422
    assert writer.post("/optimizers/train", json={"epochs": 0}).status_code == 422
    front = {"device": "pixel3", "budgets_ms": [], "method": "search"}
    assert writer.post("/optimize/front", json=front).status_code == 422
    assert writer.get("/optimizers").json()["total"] == 0


def an_optimizer_whose_artifact_is_gone_is_reported(writer: TestClient, settings: Settings) -> None:
    row = writer.get("/optimizers").json()["items"][0]
    path: Path = settings.artifacts_dir / row["artifact"]
    path.unlink()
    from app.learned_service import _load

    _load.cache_clear()
    r = writer.post("/optimize", json={"device": "gold_6226", "method": "neural"})
    assert r.status_code == 422
    assert f"learned optimizer {row['id']} cannot be used" in r.json()["error"]["message"]


def test_the_cli_trains_lists_and_answers_with_it(settings: Settings, trained: dict) -> None:
    from tests.app.test_cli import env_for
    from tests.processes import edgeopt

    env = env_for(settings)
    taught = edgeopt("optimizer", "train", "--synthetic", "100", "--epochs", "2", env=env)
    assert taught.returncode == 0, taught.stderr
    assert "version 1" in taught.stdout and "100%" in taught.stderr  # the job's progress bar
    listed = edgeopt("optimizer", "list", env=env)
    assert listed.returncode == 0 and "nb201" in listed.stdout and "cifar10" in listed.stdout
    budget = str(float(np.median(trained["gold_6226"])))
    answered = edgeopt(
        "optimize", "--device", "gold_6226", "--method", "neural", "--max-latency-ms", budget,
        env=env,
    )  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    assert "answered by" in answered.stdout  # the learned optimizer, or search and why
    bad = edgeopt("optimizer", "train", "--space", "ofa_mbv3", env=env)
    assert bad.returncode != 0 and "no decisions" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
