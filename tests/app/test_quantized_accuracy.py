"""Accuracy under quantization policies: fp32 plus a learned change, a user's own records
first, and /optimize over per-unit policies where the device measured their latency."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.db import session_factory
from app.models import AccuracyRecord
from app.schemas import OptimizeRequest
from app.settings import Settings
from search.policy import named_mixed
from tests.app.conftest import N, train

BODY = named_mixed("nb201")["body-int8"]
STAGE1 = named_mixed("nb201")["stage1-int8"]
DIGITS = 150  # designs measured on digits in fp32, int8 and two mixed policies


def _cost(design: str, policy: str) -> float:
    """The synthetic truth: int8 in stage 3 costs a point per 3x3 convolution."""
    return -float(design.count("nor_conv_3x3")) if policy in ("int8", BODY) else 0.0


def upload(writer: TestClient, records: list[dict], expect: int = 201, **extra: object) -> dict:
    r = writer.post("/accuracy-records", json={"records": records, **extra})
    assert r.status_code == expect, r.text
    return r.json()


@pytest.fixture
def digits(writer: TestClient, seeded, nb201) -> list[str]:
    """The slice plus digits accuracies of its first designs under four policies, trained."""
    rng = np.random.default_rng(0)
    designs = nb201.encodings[:DIGITS]
    records = []
    for d in designs:
        fp32 = 95 + rng.normal()
        for policy in ("fp32", "int8", BODY, STAGE1):
            top1 = fp32 + _cost(d, policy) + (rng.normal(0, 0.1) if policy != "fp32" else 0)
            records.append({"space": "nb201", "arch": d, "dataset": "digits", "policy": policy,
                            "top1": top1, "source": "test digits"})  # fmt: skip
    upload(writer, records)
    train(writer)
    return designs


def _predict(writer: TestClient, design: str, policy: str) -> dict:
    r = writer.post(
        "/predict", json={"device": "gold_6226", "space": "nb201", "policy": policy,
                          "designs": [design]},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    return r.json()


def test_quantized_accuracy_is_fp32_plus_the_change_learned_elsewhere(
    writer: TestClient, digits, nb201
) -> None:
    predictors = writer.get("/predictors").json()["items"]
    change = [p for p in predictors if p["target"] == "accuracy_change"]
    assert [p["dataset"] for p in change] == ["digits"]
    assert change[0]["quality"]["mae"] < change[0]["quality"]["mae_no_change"]
    design = next(d for d in nb201.encodings[:N] if d.count("nor_conv_3x3") >= 3)
    body = _predict(writer, design, "int8")
    how = body["answered_by"]["accuracy.cifar10"]
    assert how["method"] == "fp32+change" and how["fp32"]["method"] == "recorded"
    assert how["change"]["learned_on"] == "digits"
    assert "learned from digits accuracies, not cifar10" in how["change"]["note"]
    cifar = body["designs"][0]["accuracy"]["cifar10"]
    fp32 = float(nb201.accuracies["cifar10"][nb201.encodings.index(design)])
    expected = fp32 + _cost(design, "int8")
    assert cifar["low"] <= expected <= cifar["high"]
    assert cifar["value"] < fp32 - 1  # the change is the design's, not a constant


def test_a_users_own_quantized_records_come_first(
    writer: TestClient, digits, nb201, settings: Settings
) -> None:
    mine = nb201.encodings[:120]
    fp32 = nb201.accuracies["cifar10"][:120]
    records = [{"space": "nb201", "arch": d, "dataset": "cifar10", "policy": "int8",
                "top1": float(v) - 5.0} for d, v in zip(mine, fp32, strict=True)]  # fmt: skip
    upload(writer, records)
    body = _predict(writer, mine[0], "int8")
    assert body["answered_by"]["accuracy.cifar10"]["method"] == "recorded"
    assert body["designs"][0]["accuracy"]["cifar10"]["value"] == pytest.approx(fp32[0] - 5)
    train(writer, targets=["accuracy"])
    other = nb201.encodings[300]  # no int8 record of its own
    how = _predict(writer, other, "int8")["answered_by"]["accuracy.cifar10"]
    assert how["method"] == "space-model"  # the model of the user's cifar10 int8 records
    mixed = _predict(writer, other, STAGE1)["answered_by"]["accuracy.cifar10"]
    assert mixed["method"] == "fp32+change"
    assert mixed["change"]["learned_on"] == "cifar10" and "note" not in mixed["change"]
    # a repeat is refused (and nothing changes) unless it asks to replace
    factory = session_factory(settings.database_url)
    with factory() as s:
        before = s.scalar(select(func.count()).select_from(AccuracyRecord))
    refused = upload(writer, records[:2], expect=409)
    assert "replace=true" in refused["error"]["message"]
    upload(writer, [{**records[0], "top1": 50.0}], replace=True)
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AccuracyRecord)) == before


@pytest.mark.parametrize(
    ("record", "needle"),
    [
        ({"top1": float("nan")}, "top1"),
        ({"top1": 101.0}, "top1"),
        ({"top1": "90"}, "top1"),
        ({"arch": "|bogus~0|"}, "records[1]"),
        ({"policy": "int8,int8"}, "records[1]"),
        ({"dataset": "../etc"}, "dataset"),
    ],
)
def test_bad_accuracy_records_change_nothing(
    writer: TestClient, seeded, nb201, settings: Settings, record: dict, needle: str
) -> None:
    good = {"space": "nb201", "arch": nb201.encodings[0], "dataset": "mine", "policy": "int8",
            "top1": 90.0}  # fmt: skip
    factory = session_factory(settings.database_url)
    with factory() as s:
        before = s.scalar(select(func.count()).select_from(AccuracyRecord))
    r = writer.post("/accuracy-records", content=_json([good, {**good, **record}]),
                    headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 422, r.text
    assert needle in r.text
    with factory() as s:
        assert s.scalar(select(func.count()).select_from(AccuracyRecord)) == before


def _json(records: list[dict]) -> str:
    import json

    return json.dumps({"records": records})


def test_a_device_that_never_ran_int8_says_so(writer: TestClient, digits) -> None:
    r = writer.post(
        "/optimize", json={"device": "gold_6226", "policies": ["per-unit"], "alternatives": 0}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    # every cell but the 341 degenerate ones
    assert body["design"]["policy"] == "fp32" and body["candidates"] == 15625 - 341
    assert body["answered_by"]["accuracy.int8"]["method"] == "fp32+change"
    left = [n for n in body["notes"] if "left out" in n]
    assert left and "31 policies" in " ".join(left)
    assert "gold_6226" in " ".join(left)


def test_optimize_weighs_every_policy_the_device_measured(
    writer: TestClient, digits, seeded, nb201
) -> None:
    designs = nb201.encodings[:N]
    rows = [
        {"space": "nb201", "arch": d, "policy": policy, "metric": "latency_ms",
         "value": float(v) * scale}
        for policy, scale in (("int8", 0.5), (BODY, 0.6))
        for d, v in zip(designs, seeded["pixel3"], strict=True)
    ]  # fmt: skip
    device_id = next(
        d["id"] for d in writer.get("/devices").json()["items"] if d["name"] == "pixel3"
    )
    assert writer.post(f"/devices/{device_id}/measurements", json=rows).status_code == 201
    train(writer, targets=["latency_ms"], devices=["pixel3"])
    budget = float(np.quantile(seeded["pixel3"], 0.3))
    r = writer.post(
        "/optimize",
        json={"device": "pixel3", "policies": ["per-unit"], "goals": {"max_latency_ms": budget}},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    # fp32, int8 and body-int8 measured: those three answer, the other 29 are left out
    assert body["candidates"] == (15625 - 341) * 3  # degenerate cells left out
    assert body["answered_by"][f"latency_ms.{BODY}"]["method"] == "device-model"
    assert body["answered_by"][f"latency_ms.{STAGE1}"]["method"] is None
    assert "29 policies" in " ".join(body["notes"])
    assert body["answered_by"][f"accuracy.{BODY}"]["change"]["learned_on"] == "digits"
    assert body["design"]["policy"] != "fp32"  # half the latency for little accuracy
    assert {p["policy"] for p in body["pareto"]} - {"fp32"}


def test_fbnet_optimizes_digits_accuracy_by_default() -> None:
    assert OptimizeRequest.model_validate({"device": "x", "space": "fbnet"}).dataset == "digits"
    assert OptimizeRequest.model_validate({"device": "x"}).dataset == "cifar10"
