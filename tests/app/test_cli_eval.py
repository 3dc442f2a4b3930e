"""``edgeopt eval transfer`` on a table it has never seen, as an outside script would run it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from devices.reference import load_reference
from predictors.metrics import QUALITY_KEYS
from tests.processes import edgeopt

TRAIN = ["1080ti_1", "silver_4114", "pixel3", "samsung_a50"]
TEST = ["eyeriss", "gold_6226"]


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """1,500 NB201 designs, six devices renamed as a user's own, with holes."""
    ref = load_reference("nb201")
    folder = tmp_path_factory.mktemp("tables")
    index = [d.column for d in ref.devices]
    rows = np.random.default_rng(0).choice(len(ref.arch_ids), 1500, replace=False)
    with (folder / "lat.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_id", *[f"my_{d}" for d in TRAIN + TEST]])
        for k, i in enumerate(rows):
            cells = [ref.latency_ms[i, index.index(d)] for d in TRAIN + TEST]
            w.writerow(
                [ref.arch_ids[i], *["" if (k + j) % 13 == 0 else c for j, c in enumerate(cells)]]
            )
    with (folder / "archs.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_id", "arch"])
        w.writerows([ref.arch_ids[i], ref.encodings[i]] for i in rows)
    return folder / "lat.csv", folder / "archs.csv"


def run(tables: tuple[Path, Path], *extra: str, train=TRAIN, test=TEST):
    return edgeopt(
        "eval", "transfer",
        "--latency", str(tables[0]), "--archs", str(tables[1]), "--space", "nb201",
        "--train", ",".join(f"my_{d}" for d in train), "--test", ",".join(f"my_{d}" for d in test),
        *extra,
        env={},
    )  # fmt: skip


def test_writes_the_documented_json(tables: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    result = run(tables, "--shots", "10", "--seeds", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads(out.read_text())
    assert set(doc["devices"]) == {"my_eyeriss", "my_gold_6226"}
    for block in (*doc["devices"].values(), doc["mean"], *doc["baseline"]["devices"].values()):
        assert set(block) == set(QUALITY_KEYS)
    assert set(doc["baseline"]) == {"devices", "mean"}
    assert (
        doc["devices"]["my_eyeriss"]["spearman"]
        > doc["baseline"]["devices"]["my_eyeriss"]["spearman"]
    )
    assert "my_eyeriss" in result.stdout and "mean" in result.stdout


@pytest.mark.parametrize(
    ("extra", "train", "test", "needle"),
    [
        (("--shots", "2"), TRAIN, TEST, "--shots must be at least 3"),
        ((), TRAIN, ["nowhere"], "'my_nowhere' is not a column"),
        ((), TRAIN, ["pixel3"], "both in --train and --test"),
    ],
)
def test_bad_arguments_exit_1_with_a_message(tables, extra, train, test, needle) -> None:
    result = run(tables, *extra, train=train, test=test)
    assert result.returncode == 1
    assert needle in result.stderr


def test_a_non_numeric_cell_is_named(tables: tuple[Path, Path], tmp_path: Path) -> None:
    text = tables[0].read_text().splitlines()
    cells = text[5].split(",")
    cells[2] = "n/a"
    text[5] = ",".join(cells)
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(text) + "\n")
    result = run((broken, tables[1]))
    assert result.returncode == 1
    assert "row 6 column 'my_silver_4114': 'n/a' is not a number" in result.stderr


def test_the_suite_writes_each_split_beside_the_baseline(tmp_path: Path) -> None:
    out = tmp_path / "suite.json"
    done = edgeopt(
        "eval", "suite", "--space", "ofa_mbv3", "--shots", "5", "--seeds", "1",
        "--json", str(out), env={},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(out.read_text())
    assert doc["space"] == "ofa_mbv3"
    splits = {run["split"] for run in doc["runs"]}
    assert {"batch1-to-large", "leave-out-v100"} <= splits
    for run in doc["runs"]:
        assert set(run["devices"]) == set(run["baseline"]["devices"]) == set(run["setup"]["test"])
    assert "geometric mean Spearman" in done.stdout


def test_the_suite_refuses_bad_arguments_with_a_message() -> None:
    bad = edgeopt("eval", "suite", "--space", "nb201", "--shots", "ten", env={})
    assert bad.returncode != 0 and "--shots must be whole numbers" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
    unknown = edgeopt("eval", "suite", "--space", "darts", env={})
    assert unknown.returncode != 0 and "darts" in unknown.stderr + unknown.stdout
    assert "Traceback" not in unknown.stderr
