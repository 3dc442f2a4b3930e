"""Accuracy of designs, measured: train on scikit-learn's digits, evaluate the ONNX models.

The digits images ship inside scikit-learn (1,797 8x8 grey images, 10 classes), so nothing
is downloaded. Images are upsampled to 16x16x3. Each design is trained briefly as a small
network of its space (NB201: 1 cell per stage, 8 channels; FBNet: a quarter of the width),
exported, quantized per policy with training images as calibration data, and evaluated by
ONNX Runtime on the held-out 30%: the int8 effect is measured on the very model that would
ship, not assumed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from search.export import export_fp32, quantize
from search.networks import build

SMALL: dict[str, dict[str, int | float]] = {
    "nb201": {"cells": 1, "channels": 8},
    "fbnet": {"width": 0.25},
}
SIZE = 16  # digits are 8x8: 16x16 keeps every stage above 1x1 at a quarter of the cost
DATASET = "digits"


@dataclass(frozen=True)
class Digits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@lru_cache(maxsize=1)
def digits() -> Digits:
    """The digits split (70/30, stratified, seed 0) as normalised 3x16x16 float32 images."""
    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(
        images, size=SIZE, mode="bilinear", align_corners=False
    )
    array = ((images - 0.3) / 0.35).repeat(1, 3, 1, 1).numpy()
    xa, xb, ya, yb = train_test_split(
        array, data.target, test_size=0.3, stratify=data.target, random_state=0
    )
    return Digits(xa, ya, xb, yb)


def provenance(space: str, epochs: int) -> str:
    size = ", ".join(f"{k}={v}" for k, v in SMALL[space].items())
    return (
        f"EdgeOpt digits: scikit-learn digits upsampled to {SIZE}x{SIZE}, {space} ({size}), "
        f"{epochs} epochs Adam, seed 0, ONNX Runtime top-1 on the held-out 30%"
    )


def train(space: str, encoding: str, epochs: int = 4, seed: int = 0) -> torch.nn.Module:
    """A briefly trained small network of the design (deterministic for a seed)."""
    torch.manual_seed(seed)
    data = digits()
    net = build(space, encoding, **SMALL[space]).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=gen).split(64):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
            loss.backward()
            opt.step()
    return net.eval()


def onnx_accuracy(path: Path) -> float:
    """Top-1 (%) of an ONNX model on the held-out digits."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    data = digits()
    logits = sess.run(None, {sess.get_inputs()[0].name: data.x_test})[0]
    return float(100 * np.mean(logits.argmax(1) == data.y_test))


def measure_accuracy(
    space: str, encoding: str, policies: list[str], epochs: int = 4, seed: int = 0
) -> dict[str, float]:
    """Held-out top-1 (%) of the trained design, per policy (fp32 and quantized)."""
    net = train(space, encoding, epochs, seed)
    calibration = digits().x_train[:64]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(space, encoding, Path(tmp) / "fp32.onnx", net, calibration)
        for i, policy in enumerate(policies):
            model = quantize(fp32, space, policy, Path(tmp) / f"p{i}.onnx", calibration)
            out[policy] = onnx_accuracy(model.path)
    return out
