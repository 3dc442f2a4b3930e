"""``edgeopt train / quantize / verify-model / export-code``: from a chosen design to a trained,
quantized model on the user's data, measured on the device. The compute is search.deploy's;
these commands only wire files, the registry and the progress display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli_common import JobProgress, clear_errors, console, fail

DATA_HELP = "digits (scikit-learn's, shipped) or an .npz with x_train, y_train, x_val, y_val"
SIZE_HELP = (
    "full: the network the latency predictions are for; small: the one EdgeOpt's digits "
    "accuracies were measured with"
)


def _chosen(optimization: int) -> dict[str, Any]:
    """Space, design, policy and the predictions of a stored optimization's answer."""
    from app.cli_jobs import ready_factory
    from app.models import Optimization
    from app.optimize_service import optimization_view

    with ready_factory()() as s:
        record = s.get(Optimization, optimization)
        if record is None:
            raise ValueError(f"no optimization {optimization}")
        view = optimization_view(record)
    d = view.get("design")
    if d is None:
        raise ValueError(f"optimization {optimization} chose no design: nothing met the goals")
    return {
        "space": view["space"],
        "design": d["arch"],
        "policy": d["policy"],
        "optimization_id": optimization,
        "prediction": {
            "device": view["device"],
            "dataset": view["dataset"],
            "accuracy": d.get("accuracy"),
            "latency_ms": d.get("latency_ms"),
        },
    }


def _digits_size(size: str, given: int | None) -> int:
    """Digits at the input the predictions for that size are for: 32 (full), 16 (small)."""
    return given if given is not None else (32 if size == "full" else 16)


def _within(value: float, estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return ""
    inside = estimate["low"] <= value <= estimate["high"]
    return (
        f" (predicted {estimate['value']:.2f}, interval {estimate['low']:.2f} .. "
        f"{estimate['high']:.2f}: {'within' if inside else 'outside'})"
    )


def train_cmd(
    out: Annotated[Path, typer.Option(help="where the state dict goes (+ .json beside)")],
    data: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    optimization: Annotated[
        int | None, typer.Option(help="train the design this optimization chose")
    ] = None,
    space: Annotated[str | None, typer.Option(help="nb201 or fbnet (with --design)")] = None,
    design: Annotated[str | None, typer.Option(help="a design encoding")] = None,
    policy: Annotated[
        str | None, typer.Option(help="the policy to quantize with later (kept)")
    ] = None,
    size: Annotated[str, typer.Option(help=SIZE_HELP)] = "full",
    digits_size: Annotated[
        int | None, typer.Option(min=8, max=64, help="digits image side (32 full, 16 small)")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    lr: Annotated[float, typer.Option(min=1e-6, max=1.0)] = 3e-3,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train a chosen design on your data (CPU); writes a state dict and its description."""
    from search.deploy import load_data, save_trained, train_model
    from search.model import build
    from search.policy import parse_policy

    with clear_errors():
        if (optimization is None) == (space is None or design is None):
            raise ValueError("give --optimization ID, or --space and --design (not both)")
        chosen: dict[str, Any] = (
            _chosen(optimization)
            if optimization is not None
            else {"space": space, "design": design, "policy": None}
        )
        chosen["policy"] = policy or chosen["policy"]
        if chosen["policy"]:
            parse_policy(chosen["space"], chosen["policy"])
        dataset = load_data(data, _digits_size(size, digits_size))
        net = build(
            chosen["space"], chosen["design"], dataset.num_classes, dataset.input_shape, size
        )
        with JobProgress("train") as shown:
            trained = train_model(net, dataset, epochs, lr, seed=seed, progress=shown.update)
        side = save_trained(
            out,
            trained.net,
            {
                **chosen,
                "weights": "trained",
                "size": size,
                "num_classes": dataset.num_classes,
                "input_shape": list(dataset.input_shape),
                "dataset": dataset.name,
                "data_fingerprint": dataset.fingerprint(),
                "epochs": epochs,
                "seed": seed,
                "losses": trained.losses,
                "val_accuracy": trained.val_accuracy,
            },
        )
    predicted = (chosen.get("prediction") or {}).get("accuracy")
    console.print(
        f"validation top-1 {trained.val_accuracy:.2f}% after {epochs} epochs on "
        f"{dataset.name}{_within(trained.val_accuracy, predicted)}"
    )
    console.print(f"wrote {out} and {side}")


def quantize_cmd(
    model: Annotated[Path, typer.Option(help="a state dict written by edgeopt train")],
    out: Annotated[Path, typer.Option(help="where the ONNX model goes (+ .json beside)")],
    calibration: Annotated[str, typer.Option(help=DATA_HELP)] = "digits",
    policy: Annotated[
        str | None, typer.Option(help="fp32, int8 or one per unit (default: the chosen)")
    ] = None,
) -> None:
    """Export a trained model to ONNX and quantize the policy's int8 units (static QDQ)
    with your calibration data; reports fp32 and quantized top-1 on its validation split."""
    from search.deploy import load_data, load_trained, quantize_trained, sidecar_path
    from search.export import ExportMismatch

    with clear_errors():
        net, meta = load_trained(model)
        chosen = policy or meta.get("policy")
        if not chosen:
            raise ValueError(f"{model} has no chosen policy: give --policy")
        shape = tuple(meta["input_shape"])
        data = load_data(calibration, int(shape[1]))
        if data.input_shape != shape:
            raise ValueError(
                f"the calibration images are {data.input_shape}, the model takes {shape}"
            )
        if data.num_classes > meta["num_classes"]:
            raise ValueError(
                f"the calibration labels go to {data.num_classes - 1}; the model has "
                f"{meta['num_classes']} classes"
            )
        try:
            q = quantize_trained(
                net, meta["space"], meta["design"], chosen, data, out, meta["dataset"]
            )
        except ExportMismatch as exc:
            raise ValueError(
                f"quantizing with {chosen} changed the model too much: {exc}"
            ) from None
        side = sidecar_path(out)
        side.write_text(
            json.dumps(
                {
                    **meta,
                    "policy": ",".join(q.policy),
                    "calibration": data.name,
                    "calibration_fingerprint": data.fingerprint(),
                    "fp32_accuracy": q.fp32_accuracy,
                    "quantized_accuracy": q.accuracy,
                    "accuracy_change": q.change,
                    "int8_error": q.int8_error,
                },
                indent=2,
            )
            + "\n"
        )
    predicted = (meta.get("prediction") or {}).get("accuracy")
    console.print(
        f"top-1 on the validation split of {data.name}: fp32 {q.fp32_accuracy:.2f}%, "
        f"{','.join(q.policy)} {q.accuracy:.2f}% ({q.change:+.2f} points)"
        f"{_within(q.accuracy, predicted)}"
    )
    console.print(f"wrote {out} and {side}")


def verify_model_cmd(
    model: Annotated[Path, typer.Option(help="an ONNX model (from edgeopt quantize)")],
    device: Annotated[str, typer.Option(help="this host's device, e.g. host-ort-cpu-1t")],
    budget_s: Annotated[float, typer.Option(min=1, max=600, help="timing budget")] = 20.0,
) -> None:
    """Time the model on this host's device as measurements are timed; compare it with
    the latency predicted for the chosen design and record it (job, model description)."""
    import app.deploy_service  # noqa: F401  (registers the verify-model job)
    from app.cli_jobs import run_job
    from search.deploy import DataError, read_sidecar, sidecar_path

    if not model.is_file():
        raise fail(f"no model file {model}")
    with clear_errors():
        try:
            meta: dict[str, Any] | None = read_sidecar(model)
        except DataError:
            meta = None  # any ONNX file can be timed; there is nothing to compare
        params = {
            "model": str(model.resolve()),
            "device": device,
            "budget_s": budget_s,
            "precisions": (meta or {}).get("policy", "fp32").split(","),
            "prediction": (meta or {}).get("prediction"),
        }
        if meta is not None and len(params["precisions"]) == 1:
            from search.policy import units

            params["precisions"] = params["precisions"] * len(units(meta["space"]))
        job = run_job("verify-model", params)
    v = dict(job.result or {}, job_id=job.id)
    line = f"measured {v['measured_latency_ms']:.3f} ms on {v['device']}"
    if "predicted_latency_ms" in v:
        low, high = v["interval"]
        line += (
            f" vs predicted {v['predicted_latency_ms']:.3f} ms ({v['error_pct']:+.1f}%), "
            f"interval {low:.3f} .. {high:.3f}: within interval: {v['within_interval']}"
        )
    console.print(line)
    if meta is not None:
        if meta.get("size") != "full" or tuple(meta.get("input_shape", ())) != (3, 32, 32):
            v["note"] = (
                f"the prediction is for the full-size design at 3x32x32; this model is "
                f"{meta.get('size')} at {meta.get('input_shape')}: indicative only"
            )
        side = sidecar_path(model)
        side.write_text(json.dumps({**meta, "verification": v}, indent=2) + "\n")
        console.print(f"recorded in {side} (job {job.id})")
    if v.get("note"):
        console.print(f"  note: {v['note']}")


def export_code_cmd(
    out: Annotated[Path, typer.Option(help="the Python file to write")],
    optimization: Annotated[int | None, typer.Option(help="the design it chose")] = None,
    space: Annotated[str | None, typer.Option(help="nb201 or fbnet (with --design)")] = None,
    design: Annotated[str | None, typer.Option(help="a design encoding")] = None,
) -> None:
    """Write a short PyTorch script that builds the design and trains it on your arrays."""
    from search.model import build

    with clear_errors():
        if (optimization is None) == (space is None or design is None):
            raise ValueError("give --optimization ID, or --space and --design (not both)")
        chosen: dict[str, Any] = (
            _chosen(optimization)
            if optimization is not None
            else {"space": space, "design": design, "policy": None}
        )
        build(chosen["space"], chosen["design"])  # refuse a bad design now, not in the file
        out.write_text(CODE.format(space=chosen["space"], design=chosen["design"]))
    console.print(f"wrote {out}: python {out} arrays.npz")


CODE = '''"""Train EdgeOpt's chosen {space} design on your own arrays (from an EdgeOpt checkout).

    python this_file.py arrays.npz   # x_train (N, C, H, W) float32, y_train ints, x_val, y_val
"""

import sys

import numpy as np
import torch

from search.model import build  # the network: search/networks.py

SPACE, DESIGN = {space!r}, {design!r}

data = np.load(sys.argv[1], allow_pickle=False)
x, y = torch.from_numpy(data["x_train"]).float(), torch.from_numpy(data["y_train"]).long()
net = build(SPACE, DESIGN, num_classes=int(y.max()) + 1, input_shape=tuple(x.shape[1:]))
opt = torch.optim.Adam(net.parameters(), lr=3e-3)
for epoch in range(10):
    net.train()
    for batch in torch.randperm(len(x)).split(64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
        opt.step()
net.eval()
with torch.no_grad():
    logits = net(torch.from_numpy(data["x_val"]).float())
top1 = (logits.argmax(1).numpy() == data["y_val"]).mean()
print(f"validation top-1 {{100 * top1:.2f}}%")
torch.save(net.state_dict(), "model.pt")  # or: edgeopt train / edgeopt quantize
'''


def register(cli: typer.Typer) -> None:
    """Add the deployment commands to the ``edgeopt`` command line."""

    cli.command("train")(train_cmd)
    cli.command("quantize")(quantize_cmd)
    cli.command("verify-model")(verify_model_cmd)
    cli.command("export-code")(export_code_cmd)
