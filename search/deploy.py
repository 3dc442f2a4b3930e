"""From a chosen design to a deployable model: train on the user's data, quantize with the
user's calibration data, label what the weights are.

Pure functions over arrays; the ``edgeopt train`` / ``quantize`` commands only wire them.
Data is ``x`` (N, C, H, W) or (N, H, W) float images and ``y`` integer labels 0..K-1, in a
train and a validation split. Nothing from outside is unpickled: ``.npz`` files are read
with ``allow_pickle=False`` and state dicts with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from search.export import export_fp32, quantize
from search.model import build
from search.policy import parse_policy

ARRAY_KEYS = ("x_train", "y_train", "x_val", "y_val")
WEIGHTS_KEY = "edgeopt.weights"  # the ONNX metadata entry saying what the weights are
PROBE = "untrained (latency probe)"
SIDECAR_FORMAT = "edgeopt-trained/1"
CALIBRATION_SAMPLES = 128  # calibration images quantize_static sees (from the train split)


class DataError(ValueError):
    """Data that cannot be trained on, with what is wrong."""


@dataclass(frozen=True)
class Data:
    """A train and a validation split of images and integer labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def fingerprint(self) -> str:
        """A hash of the arrays, so a model records exactly which data it saw."""
        digest = hashlib.sha256()
        for a in (self.x_train, self.y_train, self.x_val, self.y_val):
            digest.update(f"{a.dtype}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
        return "sha256:" + digest.hexdigest()[:24]


def _images(x: np.ndarray, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{key} must be images (N, C, H, W) or (N, H, W), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{key} must be numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise DataError(f"{key} holds NaN or infinite values")
    return x


def _labels(y: np.ndarray, key: str, n: int) -> np.ndarray:
    if y.ndim != 1 or len(y) != n:
        raise DataError(f"{key} must be {n} labels (one per image), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{key} must be integer class labels 0..K-1, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise DataError(f"{key} holds a negative label ({int(y.min())}); use 0..K-1")
    return y.astype(np.int64)


def from_arrays(name: str, arrays: dict[str, np.ndarray]) -> Data:
    """Validated data from the four arrays (``ARRAY_KEYS``)."""
    missing = [k for k in ARRAY_KEYS if k not in arrays]
    if missing:
        raise DataError(f"{name} lacks {', '.join(missing)} (needs {', '.join(ARRAY_KEYS)})")
    x_train, x_val = _images(arrays["x_train"], "x_train"), _images(arrays["x_val"], "x_val")
    if x_train.shape[1:] != x_val.shape[1:]:
        raise DataError(f"x_train images are {x_train.shape[1:]}, x_val {x_val.shape[1:]}")
    if len(x_train) < 2 or len(x_val) < 1:
        raise DataError(f"{name} needs at least 2 training and 1 validation image")
    y_train = _labels(arrays["y_train"], "y_train", len(x_train))
    y_val = _labels(arrays["y_val"], "y_val", len(x_val))
    classes = int(max(y_train.max(), y_val.max())) + 1
    if classes < 2:
        raise DataError(f"{name} has one class: a classifier needs at least 2")
    return Data(name, x_train, y_train, x_val, y_val, classes)


def load_npz(path: Path) -> Data:
    """Data from an ``.npz`` of x_train, y_train, x_val, y_val (no pickled objects)."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no data file {path}") from None
    except (ValueError, OSError, EOFError) as exc:  # ValueError: it would need unpickling
        raise DataError(
            f"{path} is not a NumPy .npz of plain arrays (nothing is unpickled): {exc}"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path} is one array; give an .npz with {', '.join(ARRAY_KEYS)}")
    try:
        arrays = {k: loaded[k] for k in loaded.files}
    except ValueError as exc:
        raise DataError(f"{path}: {exc} (nothing is unpickled)") from None
    finally:
        loaded.close()
    return from_arrays(path.name, arrays)


def load_digits(size: int = 32) -> Data:
    """scikit-learn's digits (shipped, no download) as 3 x size x size images, normalised
    and split as search/digits.py does (70/30, stratified, seed 0)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    data = sk_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=size, mode="bilinear")
    array = ((images - 0.3) / 0.35).repeat(1, 3, 1, 1).numpy()
    xa, xb, ya, yb = train_test_split(
        array, data.target, test_size=0.3, stratify=data.target, random_state=0
    )
    return Data(f"digits {size}x{size}", xa, ya.astype(np.int64), xb, yb.astype(np.int64), 10)


def load_data(spec: str, digits_size: int = 32) -> Data:
    """``digits`` or the path of an ``.npz``; an image folder is refused with what to do."""
    if spec == "digits":
        return load_digits(digits_size)
    path = Path(spec)
    if path.is_dir():
        raise DataError(
            f"{spec} is a folder: image folders are not read (Pillow is not installed); "
            f"save the images as an .npz with {', '.join(ARRAY_KEYS)}"
        )
    if not path.exists():
        raise DataError(
            f"no data file {spec} (give digits or an .npz with {', '.join(ARRAY_KEYS)})"
        )
    return load_npz(path)


def accuracy(net: torch.nn.Module, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 (%) of a torch network."""
    net.eval()
    with torch.no_grad():
        logits = torch.cat(
            [net(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
        )
    return float(100 * (logits.argmax(1).numpy() == y).mean())


@dataclass
class Trained:
    net: torch.nn.Module
    val_accuracy: float
    losses: list[float]  # mean training loss per epoch


def train_model(
    net: torch.nn.Module,
    data: Data,
    epochs: int,
    lr: float = 3e-3,
    batch: int = 64,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> Trained:
    """Adam on cross-entropy (the loop EdgeOpt's digits accuracies were measured with),
    deterministic for a seed; ``progress(fraction, note)`` after every batch."""
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    steps = epochs * ((len(x) + batch - 1) // batch)
    done, losses = 0, []
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for idx in torch.randperm(len(x), generator=gen).split(batch):
            if len(idx) < 2:  # batch norm cannot train on one image
                continue
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            done += 1
            if progress is not None:
                progress(done / steps, f"epoch {epoch + 1}/{epochs} loss {loss.item():.3f}")
        losses.append(total / len(x))
    net.eval()
    return Trained(net, accuracy(net, data.x_val, data.y_val), losses)


def sidecar_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def save_trained(out: Path, net: torch.nn.Module, meta: dict[str, Any]) -> Path:
    """The state dict at ``out`` and its description beside it (``out`` + ``.json``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out)
    side = sidecar_path(out)
    side.write_text(json.dumps({"format": SIDECAR_FORMAT, **meta}, indent=2) + "\n")
    return side


def read_sidecar(model: Path) -> dict[str, Any]:
    side = sidecar_path(model)
    if not side.is_file():
        raise DataError(f"{model} has no description {side.name} beside it (written by edgeopt)")
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{side} is not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise DataError(f"{side} is not an EdgeOpt model description ({SIDECAR_FORMAT})")
    return meta


def load_trained(model: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained network (eval mode) and its description; only tensors are read."""
    if not model.is_file():
        raise DataError(f"no model file {model}")
    meta = read_sidecar(model)
    net = build(
        meta["space"], meta["design"], meta["num_classes"], tuple(meta["input_shape"]), meta["size"]
    )
    try:
        state = torch.load(model, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as exc:  # a corrupt file, another network's weights, pickled code
        raise DataError(f"{model} is not the state dict of this design: {exc}") from None
    return net.eval(), meta


def onnx_accuracy(path: Path, x: np.ndarray, y: np.ndarray, batch: int = 256) -> float:
    """Top-1 (%) of an ONNX model under ONNX Runtime (the model that ships)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    logits = np.concatenate(
        [sess.run(None, {name: x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    )
    return float(100 * (logits.argmax(1) == y).mean())


def label(path: Path, entries: dict[str, str]) -> None:
    """Write ``edgeopt.*`` metadata_props into an ONNX file (replacing those of the same key)."""
    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


@dataclass
class Quantized:
    path: Path
    policy: list[str]
    fp32_accuracy: float
    accuracy: float
    int8_error: float | None

    @property
    def change(self) -> float:
        return self.accuracy - self.fp32_accuracy


def quantize_trained(
    net: torch.nn.Module,
    space: str,
    design: str,
    policy: str,
    calibration: Data,
    out: Path,
    dataset: str,
) -> Quantized:
    """Export the trained network, quantize the policy's int8 units (static QDQ, calibrated
    on the calibration data's training images), and measure fp32 and quantized top-1 on its
    validation split with ONNX Runtime; the file is labelled as trained."""
    parse_policy(space, policy)
    rng = np.random.default_rng(0)
    take = rng.choice(
        len(calibration.x_train), min(CALIBRATION_SAMPLES, len(calibration.x_train)), replace=False
    )
    images = calibration.x_train[np.sort(take)]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_fp32(space, design, Path(tmp) / "fp32.onnx", net.eval(), images)
        fp32_top1 = onnx_accuracy(fp32.path, calibration.x_val, calibration.y_val)
        done = quantize(fp32, space, policy, out, images)
    top1 = onnx_accuracy(done.path, calibration.x_val, calibration.y_val)
    label(
        done.path,
        {
            WEIGHTS_KEY: f"trained ({dataset}; validation top-1 {top1:.2f}%)",
            "edgeopt.space": space,
            "edgeopt.design": design,
            "edgeopt.policy": ",".join(done.policy),
            "edgeopt.dataset": dataset,
        },
    )
    return Quantized(done.path, done.policy, fp32_top1, top1, done.int8_error)
