"""A user's trained model measured on this host's device, compared with the prediction.

The ``verify-model`` job times an ONNX file the way every host measurement is timed (the
device's protocol, normalised against the reference network), so the figure lands on the
scale of the device's stored latencies and of the predictions made from them. The job's
row keeps the result, the CLI writes it into the model's description too.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.db import unit_of_work
from app.domain_errors import InvalidInput, NotMeasurable, UnknownDevice
from app.jobs import JobContext, job_kind
from app.measure_service import busy_note, host_normaliser, is_this_host, register_host
from app.queries import find_device
from app.settings import get_settings

HOST_NAME = re.compile(r"^(?P<host>.+)-ort-cpu-(?P<threads>[0-9]{1,2})t$")


class VerifyModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="path of the ONNX file on this machine")
    device: str = Field(description="a device of this host: name or id")
    budget_s: float = Field(20.0, gt=0, le=600)
    precisions: list[str] = Field(default_factory=lambda: ["fp32"])
    prediction: dict[str, Any] | None = Field(
        None, description="latency_ms {value, low, high} and the device it was predicted for"
    )


def compare(measured_ms: float, prediction: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """The measured latency beside the predicted one (when there is one for this device)."""
    out: dict[str, Any] = {"measured_latency_ms": measured_ms, "device": device}
    latency = (prediction or {}).get("latency_ms")
    if not latency:
        out["note"] = "no latency prediction to compare with (train with --optimization)"
        return out
    out.update(
        predicted_latency_ms=latency["value"],
        interval=[latency["low"], latency["high"]],
        within_interval=latency["low"] <= measured_ms <= latency["high"],
        error_pct=100 * (latency["value"] - measured_ms) / measured_ms,
    )
    if prediction and prediction.get("device") not in (None, device):
        out["note"] = (
            f"the prediction is for {prediction['device']}, measured here on {device}: "
            "the comparison is indicative only"
        )
    return out


@job_kind("verify-model", VerifyModelParams)
def _verify_model_job(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    from devices.measure import Protocol, measure

    p = VerifyModelParams.model_validate(params)
    if not Path(p.model).is_file():
        raise InvalidInput(f"no model file {p.model}")
    with unit_of_work(ctx.factory) as s:
        try:
            device = find_device(s, p.device)
        except UnknownDevice:
            named = HOST_NAME.match(p.device)
            if named is None:
                raise
            device = register_host(s, int(named["threads"]), named["host"])
        if not is_this_host(device):
            raise NotMeasurable(
                f"device {device.name} is not a thread setting of this machine: verify-model "
                "measures here (for an agent's device, copy the model there and time it)"
            )
        device_id, name, threads = device.id, device.name, int(device.threads or 1)
    wait_s = get_settings().busy_wait_s

    def waiting(waited_s: float, load: float | None) -> None:
        ctx.progress(0.1, busy_note(waited_s, wait_s, load))

    ctx.progress(0.05, f"timing {Path(p.model).name} on {name}")
    with tempfile.TemporaryDirectory() as tmp:
        normalised = host_normaliser(ctx.factory, Path(tmp), measure, wait_s, waiting)
        result = normalised(
            p.model, device_id, p.precisions, Protocol(threads=threads, budget_s=p.budget_s)
        )
    out = compare(result.median_ms, p.prediction, name)
    out.update(
        dispersion=result.dispersion,
        stable=result.stable,
        raw_median_ms=result.protocol.get("raw_median_ms"),
        protocol=result.protocol.get("version"),
    )
    ctx.log(f"measured {p.model}: {result.median_ms:.4f} ms on {name}")
    return out
