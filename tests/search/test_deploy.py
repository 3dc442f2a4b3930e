"""Training, saving and quantizing a chosen design on the user's own arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from search.deploy import (
    PROBE,
    WEIGHTS_KEY,
    DataError,
    from_arrays,
    label,
    load_data,
    load_digits,
    load_npz,
    load_trained,
    metadata,
    quantize_trained,
    save_trained,
    train_model,
)
from search.model import build
from search.policy import units

CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)


def toy(n: int = 64, classes: int = 3, side: int = 8) -> dict[str, np.ndarray]:
    """Images whose class is the brightness of one quadrant: learnable in a few steps."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, classes, n)
    x = rng.normal(0, 0.1, (n, 1, side, side)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, : side // 2, : side // 2] += 2.0 * c
    k = n * 3 // 4
    return {"x_train": x[:k], "y_train": y[:k], "x_val": x[k:], "y_val": y[k:]}


def test_build_sizes_the_network_for_the_data() -> None:
    net = build("nb201", CELL, num_classes=3, input_shape=(1, 8, 8), size="small")
    assert net.training and [n for n, _ in net.named_children()] == units("nb201")
    assert net(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    fb = build("fbnet", "-".join(["k3_e1"] * 22), 4, (3, 16, 16), "small")
    assert fb(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    for bad, message in [
        ({"num_classes": 1}, "at least 2"),
        ({"input_shape": (3, 2, 2)}, "at least 4x4"),
        ({"size": "huge"}, "unknown size"),
    ]:
        with pytest.raises(ValueError, match=message):
            build("nb201", CELL, **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no network builder"):
        build("ofa_mbv3", CELL)


def test_arrays_are_checked_with_what_is_wrong(tmp_path: Path) -> None:
    arrays = toy()
    data = from_arrays("toy", arrays)
    assert data.num_classes == 3 and data.input_shape == (1, 8, 8)
    assert data.fingerprint() == from_arrays("again", toy()).fingerprint()
    bad = [
        ({k: v for k, v in arrays.items() if k != "y_val"}, "lacks y_val"),
        ({**arrays, "x_train": arrays["x_train"][:, 0, 0]}, "must be images"),
        ({**arrays, "y_train": arrays["y_train"][:5]}, "one per image"),
        ({**arrays, "y_train": arrays["y_train"].astype(float)}, "integer class labels"),
        ({**arrays, "x_val": arrays["x_val"][:, :, :4]}, "x_val"),
    ]
    for given, message in bad:
        with pytest.raises(DataError, match=message):
            from_arrays("toy", given)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{**arrays, "x_train": np.array([object()] * 3)})
    with pytest.raises(DataError, match="nothing is unpickled"):
        load_npz(objects)  # never unpickled
    (tmp_path / "text.npz").write_text("not numpy")
    with pytest.raises(DataError, match="not a NumPy"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(DataError, match="no data file"):
        load_data(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="folder"):
        load_data(str(tmp_path))


def test_train_save_load_and_quantize_per_unit(tmp_path: Path) -> None:
    data = from_arrays("toy", toy(96))
    torch.manual_seed(0)
    net = build("nb201", CELL, data.num_classes, data.input_shape, "small")
    seen: list[float] = []
    trained = train_model(net, data, epochs=6, progress=lambda f, _: seen.append(f))
    assert seen[-1] == 1.0 and trained.losses[-1] < trained.losses[0]
    assert trained.val_accuracy > 60  # chance is 33%

    meta = {"space": "nb201", "design": CELL, "num_classes": 3, "input_shape": [1, 8, 8],
            "size": "small"}  # fmt: skip
    save_trained(tmp_path / "m.pt", trained.net, meta)
    again, read = load_trained(tmp_path / "m.pt")
    assert read["design"] == CELL
    x = torch.from_numpy(data.x_val)
    with torch.no_grad():
        assert torch.allclose(again(x), trained.net(x))

    policy = "fp32,int8,int8,fp32,fp32"
    out = quantize_trained(again, "nb201", CELL, policy, data, tmp_path / "m.onnx", "toy")
    assert out.policy == policy.split(",")
    assert abs(out.fp32_accuracy - trained.val_accuracy) < 1e-6
    assert abs(out.change) <= 15
    assert metadata(out.path)[WEIGHTS_KEY].startswith("trained (toy; validation top-1")


def test_a_state_dict_of_another_design_is_refused(tmp_path: Path) -> None:
    other = build("nb201", CELL.replace("nor_conv_3x3~0", "none~0"), 3, (1, 8, 8), "small")
    meta = {"space": "nb201", "design": CELL, "num_classes": 3, "input_shape": [1, 8, 8],
            "size": "small"}  # fmt: skip
    save_trained(tmp_path / "m.pt", other, meta)
    with pytest.raises(DataError, match="not the state dict of this design"):
        load_trained(tmp_path / "m.pt")
    (tmp_path / "m.pt.json").write_text("{}")
    with pytest.raises(DataError, match="not an EdgeOpt model description"):
        load_trained(tmp_path / "m.pt")


def test_digits_load_at_any_size_and_labels_replace(tmp_path: Path) -> None:
    data = load_digits(16)
    assert data.x_train.shape[1:] == (3, 16, 16) and len(data.x_val) == 540
    path = tmp_path / "m.onnx"
    import onnx

    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(path))
    label(path, {WEIGHTS_KEY: PROBE})
    label(path, {WEIGHTS_KEY: "trained", "edgeopt.space": "nb201"})
    assert metadata(path) == {WEIGHTS_KEY: "trained", "edgeopt.space": "nb201"}
