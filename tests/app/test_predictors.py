"""Predictors over REST: train from the registry, inspect quality, predict with intervals."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from scipy.stats import spearmanr
from sqlalchemy import func, select, update

from app.db import session_factory, unit_of_work
from app.models import AccuracyRecord, Architecture
from app.predictor_service import design_pool
from app.settings import Settings
from tests.app.conftest import DEVICES, N, flag_unstable, train

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|none~2|"


def test_train_list_and_inspect(writer: TestClient, seeded) -> None:
    job = train(writer)
    assert job["status"] == "succeeded", job
    assert job["result"]["count"] == 5  # 4 latency models + 1 accuracy model
    listed = writer.get("/predictors", params={"target": "latency_ms"}).json()
    assert listed["total"] == 4
    one = writer.get(f"/predictors/{listed['items'][0]['id']}").json()
    assert one["quality"]["held_out"] == N // 5
    assert {"spearman", "kendall", "rmse_ms", "mape", "within_10pct", "coverage"} <= set(
        one["quality"]
    )
    assert "lightgbm" in one["provenance"]["libraries"]
    # retraining adds a version; the old one stays listed (quality history)
    train(writer, targets=["accuracy"])
    acc = writer.get("/predictors", params={"target": "accuracy"}).json()["items"]
    assert sorted(p["version"] for p in acc) == [1, 2]


def test_quality_is_also_given_over_the_measurements_that_were_stable(
    writer: TestClient, seeded, settings: Settings
) -> None:
    """Measurements whose protocol flagged them (a busy spell) are scored apart."""
    device = flag_unstable(settings.database_url, "gold_6226", N // 3, slowdown=1.5)
    train(writer, targets=["latency_ms"])
    items = writer.get("/predictors", params={"target": "latency_ms"}).json()["items"]
    by_device = {p["device_id"]: writer.get(f"/predictors/{p['id']}").json() for p in items}
    quality = by_device.pop(device)["quality"]
    assert 0 < quality["reliable_held_out"] < quality["held_out"]
    assert quality["within_10pct_reliable"] > quality["within_10pct"]
    assert not any("within_10pct_reliable" in p["quality"] for p in by_device.values())


def test_predict_with_the_devices_own_model(writer: TestClient, seeded, nb201) -> None:
    train(writer)
    designs = nb201.encodings[N : N + 300]
    r = writer.post("/predict", json={"device": "gold_6226", "space": "nb201", "designs": designs})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["answered_by"]["latency_ms"]["method"] == "device-model"
    latency = [d["latency_ms"] for d in body["designs"]]
    assert all(e["low"] <= e["value"] <= e["high"] for e in latency)
    truth = nb201.latency_ms[N : N + 300, [d.column for d in nb201.devices].index("gold_6226")]
    assert spearmanr([e["value"] for e in latency], truth)[0] > 0.8
    assert set(body["designs"][0]["accuracy"]) == {"cifar10"}
    # no energy was ever measured: the service says so instead of a number
    assert body["designs"][0]["energy_mj"] is None
    assert any("no energy_mj model" in n for n in body["notes"])


def test_a_new_device_is_answered_by_a_proxy_or_transfer(writer: TestClient, seeded, nb201) -> None:
    train(writer)
    device = writer.post("/devices", json={"name": "new-pi", "kind": "cpu"}).json()
    raspi = seeded["raspi4"]
    rows = [
        {"space": "nb201", "arch": nb201.encodings[i], "metric": "latency_ms", "value": raspi[i]}
        for i in range(0, N, 40)
    ]
    upload = writer.post(f"/devices/{device['id']}/measurements", json={"measurements": rows})
    assert upload.status_code == 201, upload.text
    designs = nb201.encodings[:N]
    body = writer.post(
        "/predict", json={"device": "new-pi", "space": "nb201", "designs": designs}
    ).json()
    info = body["answered_by"]["latency_ms"]
    assert info["method"] in ("proxy", "transfer") and info["shots"] == 10
    assert info["proxy"] in DEVICES and "decision" in info
    predicted = [d["latency_ms"]["value"] for d in body["designs"]]
    assert spearmanr(predicted, raspi)[0] > 0.9


def test_a_transfer_device_is_told_what_to_measure_next(writer: TestClient, seeded, nb201) -> None:
    train(writer)
    device = writer.post("/devices", json={"name": "new-tpu", "kind": "asic"}).json()
    column = [d.column for d in nb201.devices].index("eyeriss")  # unlike the 4 basis devices
    truth = dict(zip(nb201.encodings, nb201.latency_ms[:, column], strict=True))

    def measure(designs: list[str]) -> None:
        rows = [
            {"space": "nb201", "arch": e, "metric": "latency_ms", "value": truth[e]}
            for e in designs
        ]
        r = writer.post(f"/devices/{device['id']}/measurements", json={"measurements": rows})
        assert r.status_code == 201, r.text

    def rank_quality() -> tuple[dict, float]:
        body = writer.post(
            "/predict", json={"device": "new-tpu", "space": "nb201", "designs": nb201.encodings[:N]}
        ).json()
        predicted = [d["latency_ms"]["value"] for d in body["designs"]]
        return body["answered_by"]["latency_ms"], spearmanr(
            predicted, nb201.latency_ms[:N, column]
        )[0]

    measure(nb201.encodings[N : N + 5])
    before, quality_before = rank_quality()
    url = f"/devices/{device['id']}/next-measurements"
    advice = writer.get(url, params={"space": "nb201", "count": 10}).json()
    assert advice["shots"] == 5 and advice["answered_by"] == "transfer"
    assert len(set(advice["designs"]) - set(nb201.encodings[N : N + 5])) == 10
    assert 0 < advice["expected_spearman"] <= advice["expected_spearman_after"] <= 1
    if before["method"] == "transfer":
        assert before["expected_spearman"] == pytest.approx(advice["expected_spearman"], abs=1e-3)
    measure(advice["designs"])
    after, quality_after = rank_quality()
    assert after["shots"] == 15
    assert quality_after > quality_before
    assert writer.get(url, params={"space": "nb201", "policy": "int4"}).status_code == 422


def test_a_device_that_measured_every_suggestable_design_is_told_so(
    writer: TestClient, seeded, nb201
) -> None:
    """Suggestions are drawn from a fixed pool of designs: a device that measured all but 3
    of them gets those 3 and a note saying why not 10, and one that measured them all gets
    none and the note, not a 500."""
    train(writer)
    device = writer.post("/devices", json={"name": "thorough", "kind": "cpu"}).json()["id"]
    column = [d.column for d in nb201.devices].index("eyeriss")
    truth = dict(zip(nb201.encodings, nb201.latency_ms[:, column], strict=True))
    pool = design_pool("nb201")

    def measure(designs: list[str]) -> None:
        rows = [
            {"space": "nb201", "arch": e, "metric": "latency_ms", "value": truth[e]}
            for e in designs
        ]
        r = writer.post(f"/devices/{device}/measurements", json={"measurements": rows})
        assert r.status_code == 201, r.text

    measure(pool[3:])
    url = f"/devices/{device}/next-measurements"
    nearly = writer.get(url, params={"space": "nb201", "count": 10})
    assert nearly.status_code == 200, nearly.text
    assert sorted(nearly.json()["designs"]) == sorted(pool[:3])
    assert f"only 3 of the {len(pool)} designs" in nearly.json()["note"]
    measure(pool[:3])
    done = writer.get(url, params={"space": "nb201", "count": 10})
    assert done.status_code == 200, done.text
    assert done.json()["designs"] == [] and done.json()["shots"] == len(pool)
    assert f"every one of the {len(pool)} designs" in done.json()["note"]
    fresh = writer.post("/devices", json={"name": "fresh", "kind": "cpu"}).json()["id"]
    advice = writer.get(f"/devices/{fresh}/next-measurements", params={"space": "nb201"})
    assert len(advice.json()["designs"]) == 10 and advice.json()["note"] is None


def test_what_cannot_be_predicted_is_said(writer: TestClient, seeded, nb201) -> None:
    design = [nb201.encodings[0]]
    before = writer.post("/predict", json={"device": "pixel3", "space": "nb201", "designs": design})
    assert before.status_code == 200
    assert before.json()["designs"][0]["latency_ms"] is None  # nothing trained yet
    # accuracy is recorded for this design: answered from the record, exactly, model or not
    recorded = float(nb201.accuracies["cifar10"][0])
    assert before.json()["designs"][0]["accuracy"] == {
        "cifar10": {"value": recorded, "low": recorded, "high": recorded}
    }
    assert before.json()["answered_by"]["accuracy.cifar10"]["method"] == "recorded"
    train(writer)
    writer.post("/devices", json={"name": "two-shots", "kind": "cpu"})
    two = writer.post(
        "/predict", json={"device": "two-shots", "space": "nb201", "designs": design}
    ).json()
    assert "0 measured designs" in two["answered_by"]["latency_ms"]["reason"]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"device": "nowhere", "space": "nb201", "designs": ["x"]}, 404, "nowhere"),
        ({"device": "pixel3", "space": "nb201", "designs": ["|bogus~0|"]}, 422, "designs[0]"),
        ({"device": "pixel3", "space": "nope", "designs": ["x"]}, 422, "space"),
        ({"device": "pixel3", "space": "nb201", "designs": []}, 422, "designs"),
        ({"device": "pixel3", "space": "nb201", "policy": "int3", "designs": ["x"]}, 422, "int3"),
        (
            {"device": "pixel3", "space": "nb201", "policy": "fp32,int8", "designs": [CELL]},
            422,
            "1 or 5 precisions",
        ),
    ],
)
def test_bad_predict_requests(writer: TestClient, seeded, body, status, needle) -> None:
    r = writer.post("/predict", json=body)
    assert r.status_code == status, r.text
    assert needle in r.text


def test_a_stored_policy_that_fits_no_network_is_skipped_and_named(
    writer: TestClient, seeded, settings
) -> None:
    from sqlalchemy import update

    from app.db import session_factory, unit_of_work
    from app.models import Device, Measurement

    with unit_of_work(session_factory(settings.database_url)) as s:  # as stored before
        pixel3 = s.query(Device).filter_by(name=DEVICES[0]).one()  # uploads checked units
        s.execute(
            update(Measurement).where(Measurement.device_id == pixel3.id).values(policy="fp32,int8")
        )
    job = train(writer, targets=["latency_ms"])
    assert job["status"] == "succeeded", job
    assert job["result"]["count"] == len(DEVICES) - 1
    assert "policy 'fp32,int8'" in job["result"]["skipped"][0]
    assert "1 or 5 precisions" in job["result"]["skipped"][0]


def test_training_refusals(writer: TestClient, seeded) -> None:
    assert writer.post("/predictors/train", json={"min_rows": 5}).status_code == 422
    unknown = train(writer, "failed", devices=["nowhere"])
    assert unknown["status"] == "failed" and "nowhere" in unknown["error"]
    too_much = train(writer, "failed", min_rows=100_000)
    assert too_much["status"] == "failed" and "no scope" in too_much["error"]
    assert writer.get("/predictors").json()["total"] == 0
    assert writer.get("/predictors/999").status_code == 404


def test_predictors_on_an_older_encoding_are_found_for_retraining(
    writer: TestClient, seeded, settings
) -> None:
    from sqlalchemy import select

    from app.db import session_factory, unit_of_work
    from app.models import Predictor
    from app.predictor_service import encoding_columns, stale_predictors
    from search.spaces import NB201_COLUMNS

    train(writer, targets=["latency_ms"])
    factory = session_factory(settings.database_url)
    with factory() as s:
        assert stale_predictors(s) == []
    with unit_of_work(factory) as s:  # as if trained before the encoding grew
        old = s.scalars(select(Predictor)).first()
        assert old is not None
        assert old.provenance["encoding_columns"] == encoding_columns(s, "nb201") == NB201_COLUMNS
        old.provenance = {**old.provenance, "encoding_columns": 34}
    with factory() as s:
        assert [p.id for p in stale_predictors(s)] == [old.id]
    train(writer, targets=["latency_ms"])  # a new version of every scope: none stale
    with factory() as s:
        assert stale_predictors(s) == []


def test_whole_space_accuracy_follows_rewritten_records(
    writer: TestClient, seeded, settings: Settings, nb201
) -> None:
    from app.accuracy_service import accuracy_estimates

    designs = nb201.encodings[:N] + nb201.encodings[N : N + 200]  # many: the cached path
    factory = session_factory(settings.database_url)
    with factory() as s:
        first, _ = accuracy_estimates(
            s, settings.artifacts_dir, "nb201", "cifar10", "fp32", designs
        )
    assert first is not None and first[0][0] == pytest.approx(nb201.accuracies["cifar10"][0])
    with unit_of_work(factory) as s:  # a record measured again, in place
        s.execute(
            update(AccuracyRecord)
            .where(AccuracyRecord.id == select(func.min(AccuracyRecord.id)).scalar_subquery())
            .values(top1=12.5)
        )
    with factory() as s:
        again, _ = accuracy_estimates(
            s, settings.artifacts_dir, "nb201", "cifar10", "fp32", designs
        )
    assert again is not None and 12.5 in again[0].tolist()


def test_accuracy_models_can_ask_for_fewer_designs_than_latency(writer: TestClient, seeded) -> None:
    job = train(writer, min_rows=100_000, min_accuracy_rows=100)  # accuracy costs a training run
    assert job["status"] == "succeeded", job
    targets = {p["target"] for p in writer.get("/predictors").json()["items"]}
    assert targets and targets <= {"accuracy", "accuracy_change"}


def test_predict_follows_the_registry_between_requests(
    writer: TestClient, seeded, settings: Settings, nb201
) -> None:
    """What /predict reads once and keeps (the newest predictors, the datasets with records)
    follows a retraining, a deleted device whose ids SQLite hands out again, a new dataset."""
    train(writer)
    design = nb201.encodings[0]  # registered, with a CIFAR-10 record
    body = {"device": "pixel3", "space": "nb201", "designs": [design]}

    def answer() -> dict:
        r = writer.post("/predict", json=body)
        assert r.status_code == 200, r.text
        return r.json()

    def newest(device: str) -> int:
        items = writer.get("/predictors", params={"target": "latency_ms"}).json()["items"]
        ids = {d["id"]: d["name"] for d in writer.get("/devices").json()["items"]}
        return max(p["id"] for p in items if ids.get(p["device_id"]) == device)

    assert answer()["answered_by"]["latency_ms"]["predictor_id"] == newest("pixel3")
    gold = next(d for d in writer.get("/devices").json()["items"] if d["name"] == "gold_6226")
    assert writer.delete(f"/devices/{gold['id']}").status_code == 204
    train(writer, targets=["latency_ms"])  # new versions, on the ids the deletion freed
    assert answer()["answered_by"]["latency_ms"]["predictor_id"] == newest("pixel3")

    assert set(answer()["designs"][0]["accuracy"]) == {"cifar10"}
    with unit_of_work(session_factory(settings.database_url)) as s:
        arch = s.scalar(select(Architecture.id).where(Architecture.encoding == design))
        s.add(AccuracyRecord(architecture_id=arch, dataset="cifar100", top1=61.5, source="test"))
    got = answer()
    assert got["designs"][0]["accuracy"]["cifar100"]["value"] == pytest.approx(61.5)
    assert got["answered_by"]["accuracy.cifar100"]["method"] == "recorded"


def test_training_only_what_is_missing_completes_an_interrupted_start(
    writer: TestClient, seeded
) -> None:
    first = train(writer, targets=["latency_ms"])  # as if a first start stopped here
    again = train(writer, missing_only=True)
    assert again["result"]["count"] >= 1
    assert not set(again["result"]["predictors"]) & set(first["result"]["predictors"])
    targets = {p["target"] for p in writer.get("/predictors").json()["items"]}
    assert "accuracy" in targets
    assert train(writer, missing_only=True)["result"]["count"] == 0  # nothing left to do


def test_a_policy_no_device_has_a_model_for_is_answered_from_its_own_shots(
    writer: TestClient, seeded
) -> None:
    """A device that measured a mixed policy nobody has a model at is answered at once: the
    fp32 models are the basis, its own shots at that policy do the rest (this host's real
    ONNX Runtime timings of NB201 designs with the middle stages in int8)."""
    train(writer)
    policy = "fp32,int8,int8,int8,fp32"
    table = Path("benchmarks/results/63dc7369bf7f/host_nb201_latency.csv")
    with table.open() as f:
        rows = [r for r in csv.DictReader(f) if r["policy"] == policy][:120]
    measured = {r["arch"]: float(r["host-ort-cpu-1t"]) for r in rows}
    shots, held = list(measured)[:40], list(measured)[40:]
    writer.post("/devices", json={"name": "int8-box", "kind": "cpu"})
    upload = writer.post(
        "/devices/int8-box/measurements",
        json={
            "measurements": [
                {"space": "nb201", "arch": a, "metric": "latency_ms", "policy": policy,
                 "value": measured[a]}
                for a in shots
            ]
        },
    )  # fmt: skip
    assert upload.status_code == 201, upload.text
    body = writer.post(
        "/predict", json={"device": "int8-box", "space": "nb201", "policy": policy, "designs": held}
    ).json()
    info = body["answered_by"]["latency_ms"]
    assert info["method"] in ("proxy", "transfer") and info["shots"] == 40
    assert info["basis_policy"] == "fp32" and f"no device has a {policy}" in info["decision"]
    predicted = [d["latency_ms"]["value"] for d in body["designs"]]
    assert spearmanr(predicted, [measured[a] for a in held])[0] > 0.8
    inside = [
        d["latency_ms"]["low"] <= measured[a] <= d["latency_ms"]["high"]
        for d, a in zip(body["designs"], held, strict=True)
    ]
    assert sum(inside) / len(inside) >= 0.7
