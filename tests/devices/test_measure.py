import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devices.measure import (
    Protocol,
    foreign_load,
    hardware_id,
    hardware_identity,
    host_device_name,
    host_specs,
    measure,
    pin_cpus,
    pinned,
    session,
)
from search.export import export_design

SMALL = "|skip_connect~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|none~2|"
CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_design("nb201", CELL, "fp32", tmp_path_factory.mktemp("m") / "m.onnx").path


def test_measure_reports_median_dispersion_and_protocol(model: Path) -> None:
    result = measure(str(model), Protocol(threads=1, round_size=5, budget_s=2))
    assert result.median_ms > 0
    assert result.repeats >= 15 and result.repeats % 5 == 0
    # the CV across its 3 sessions: never exactly 0 for real timings, and they agree
    assert 0 < result.dispersion < 0.5
    assert result.protocol["threads"] == 1 and result.protocol["runtime"] == "onnxruntime"
    # the same bytes measure too (what an agent downloads)
    again = measure(model.read_bytes(), Protocol(threads=1, round_size=5, budget_s=2))
    assert again.median_ms == pytest.approx(result.median_ms, rel=0.5)
    # one session: nothing to vary across, so no dispersion (it is not the spread of runs)
    single = measure(str(model), Protocol(threads=1, sessions=1, round_size=5, budget_s=1))
    assert single.dispersion == 0.0 and single.median_ms > 0


def test_a_reference_is_timed_in_the_same_rounds(model: Path, tmp_path: Path) -> None:
    small = export_design("nb201", SMALL, "fp32", tmp_path / "small.onnx").path
    result = measure(str(small), Protocol(threads=1, round_size=5, budget_s=3), str(model))
    assert result.reference_ms is not None and result.median_ms > 0
    assert result.reference_ms > 1.5 * result.median_ms  # the reference is the bigger model
    assert measure(str(small), Protocol(threads=1, round_size=5, budget_s=3)).reference_ms is None


def _thread_cpus() -> dict[int, str]:
    """Each thread of this process and the CPUs it may run on (Linux)."""
    out = {}
    for status in Path("/proc/self/task").glob("*/status"):
        fields = dict(
            line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
        )
        out[int(status.parent.name)] = fields["Cpus_allowed_list"].strip()
    return out


@pytest.mark.skipif(pin_cpus(2) is None, reason="needs 2 CPUs and thread affinity (Linux)")
def test_each_thread_of_a_measurement_runs_on_its_own_cpu(model: Path) -> None:
    cpus = pin_cpus(2)
    assert cpus is not None and len(set(cpus)) == 2
    before = os.sched_getaffinity(0)
    threads_before = set(_thread_cpus())
    with pinned(cpus[0]):
        assert os.sched_getaffinity(0) == {cpus[0]}
        sess = session(str(model), 2, cpus=cpus)
        new = {tid: allowed for tid, allowed in _thread_cpus().items() if tid not in threads_before}
        # ONNX Runtime's pool thread (the session's only one with 2 threads) on the second
        assert str(cpus[1]) in new.values(), new
        del sess
    assert os.sched_getaffinity(0) == before  # the caller is given back its CPUs
    result = measure(str(model), Protocol(threads=2, round_size=5, budget_s=2, pinned=True))
    assert result.protocol["cpus"] == cpus and result.protocol["pinned"]
    assert os.sched_getaffinity(0) == before
    unpinned = measure(str(model), Protocol(threads=2, round_size=5, budget_s=2))
    assert unpinned.protocol["cpus"] is None and unpinned.median_ms > 0


def test_host_specs_are_read_from_the_machine() -> None:
    specs = host_specs()
    assert specs["cores"] >= 1 and specs["onnxruntime"]
    assert host_device_name(2) == "host-ort-cpu-2t"


def test_foreign_load_counts_other_processes_cpu_not_our_own() -> None:
    # machine busy 3.0 s over 2 s, this process 1.0 s of it: one other core was busy
    assert foreign_load((10.0, 4.0), (13.0, 5.0), 2.0) == pytest.approx(1.0)
    assert foreign_load((10.0, 4.0), (11.0, 5.0), 2.0) == 0.0
    assert foreign_load(None, (1.0, 1.0), 2.0) is None


def test_a_busy_neighbour_flags_the_measurement_unstable(model: Path) -> None:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)
        result = measure(str(model), Protocol(threads=1, round_size=5, budget_s=1))
    finally:
        hog.kill()
        hog.wait()
    assert result.foreign_load is not None and result.foreign_load > 0.5
    assert result.contended and not result.stable
    assert result.protocol["foreign_load"] == pytest.approx(result.foreign_load, abs=1e-3)


def test_the_hardware_id_names_what_decides_speed() -> None:
    identity = hardware_identity()
    assert identity["cores"] == host_specs()["hardware"]["cores"]
    assert host_specs()["hardware_id"] == hardware_id(identity)  # stable between calls
    other = {**identity, "isa": [*identity["isa"], "amx_fp8"]}
    assert hardware_id(other) != hardware_id(identity)
    assert host_device_name(1, "lab") == "lab-ort-cpu-1t"
