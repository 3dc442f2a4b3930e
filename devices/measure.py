"""Latency of an ONNX model with ONNX Runtime: the protocol every EdgeOpt measurement follows.

Each session runs the device's number of intra-op threads (inter-op = 1, sequential
execution); with ``pinned``, each thread on its own CPU (not the default yet: see the
field). ``sessions`` sessions of the model each run a warm-up, then rounds of timed runs,
interleaved, until the medians of the last three rounds agree within ``target_cv`` (stable)
or the time budget runs out (flagged unstable). The median of the sessions' medians is the
value; the dispersion is the coefficient of variation across sessions. The CPU time other
processes (and the hypervisor, as steal) took while timing is recorded as ``foreign_load``
in cores: on a 2-core machine a measurement taken beside other busy work says little about
the design, so a contended one is flagged unstable rather than trusted
(``benchmarks/measurement_noise.py`` shows what moves a measurement here). A reference model
can be timed in the same rounds (since ``edgeopt-ort/4``): the host job divides by it to
cancel the machine's speed level, which moves over minutes with no load to show for it
(``benchmarks/host_retest.py``), and measures again in a slow spell
(``devices.normaliser.Normaliser``). The protocol is returned with the figure so it is
stored beside every measurement.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort


@dataclass(frozen=True)
class Protocol:
    threads: int = 1
    sessions: int = 3
    warmup: int = 10
    round_size: int = 10
    min_rounds: int = 3
    max_rounds: int = 15
    target_cv: float = 0.03
    budget_s: float = 20.0
    batch: int = 1
    max_foreign_load: float = 0.25  # cores other processes may use before it is contended
    # Idle intra-op threads sleep: spinning ones made 2-thread sessions differ more on a
    # 2-vCPU VM (benchmarks/measurement_noise.py: 8.5% against 1.9% between sessions).
    spinning: bool = False
    # One CPU per thread, the caller's included. Off: on a 2-vCPU VM pinned 2-thread repeats
    # agreed within +-10% a little more often (0.975 vs 0.95 and 0.925 in two runs of
    # benchmarks/measurement_statistic.py; 0.9625 vs 0.95 re-measuring a table) and needed
    # fewer re-measures, but predictors on a pinned table scored lower (0.906 vs 0.930).
    pinned: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "version": "edgeopt-ort/4",
            "runtime": "onnxruntime",
            "runtime_version": ort.__version__,
            "provider": "CPUExecutionProvider",
            "graph_optimization": "ORT_ENABLE_ALL",
            "statistic": "median of session medians; dispersion = CV across sessions",
        }


@dataclass(frozen=True)
class Result:
    median_ms: float
    dispersion: float
    repeats: int
    stable: bool
    protocol: dict[str, Any]
    foreign_load: float | None = None
    reference_ms: float | None = None  # the reference model, timed interleaved with this one

    @property
    def contended(self) -> bool:
        """Other work took more CPU than the protocol allows while this was timed."""
        limit = self.protocol.get("max_foreign_load")
        return self.foreign_load is not None and limit is not None and self.foreign_load > limit


def _cpu_times() -> tuple[float, float] | None:
    """(busy seconds of the whole machine, CPU seconds of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    # user nice system idle iowait irq softirq steal: everything but idle and iowait is busy
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / hz, (int(own[11]) + int(own[12])) / hz


def foreign_load(
    before: tuple[float, float] | None, after: tuple[float, float] | None, elapsed_s: float
) -> float | None:
    """Mean number of cores busy with work other than this process between two readings."""
    if before is None or after is None or elapsed_s <= 0:
        return None
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, other / elapsed_s)


def pin_cpus(threads: int) -> list[int] | None:
    """The CPUs a measurement with ``threads`` threads pins them to, one each: the first
    ``threads`` this thread may run on; None where the system cannot pin or has too few."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return allowed[:threads] if len(allowed) >= threads else None


@contextmanager
def pinned(cpu: int | None) -> Iterator[None]:
    """Run the calling thread (only it: Linux affinity is per thread) on ``cpu`` meanwhile."""
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def session(
    model: bytes | str, threads: int, spinning: bool = False, cpus: list[int] | None = None
) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads, sequential execution. With ``cpus``
    (one per thread), the pool's threads run on ``cpus[1:]``; the caller runs the first
    share of each kernel itself and is pinned by :func:`pinned`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", str(int(spinning)))
    if cpus is not None and threads > 1:
        # ONNX Runtime numbers processors from 1, one entry per pool thread
        affinities = ";".join(str(cpu + 1) for cpu in cpus[1:threads])
        options.add_session_config_entry("session.intra_op_thread_affinities", affinities)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def measure(
    model: bytes | str, protocol: Protocol = Protocol(), reference: bytes | str | None = None
) -> Result:
    """Measure one model's latency (ms per batch) under ``protocol``.

    Several sessions of the same model are timed in interleaved rounds: on a shared or
    virtual machine a single session can settle 10-20% above or below another (placement,
    frequency), so the value is the median of the sessions' medians and the dispersion is
    their coefficient of variation, the figure a repeat measurement would actually see.

    With a ``reference`` model, each round also times the reference right after the model,
    in as many sessions: the machine's speed level moves by several percent over minutes
    (invisible to any load figure), and the model's time relative to the reference's
    cancels most of that (``benchmarks/host_retest.py``). ``reference_ms`` is returned.
    """
    cpus = pin_cpus(protocol.threads) if protocol.pinned else None
    with pinned(None if cpus is None else cpus[0]):
        return _measure(model, protocol, reference, cpus)


def _measure(
    model: bytes | str, protocol: Protocol, reference: bytes | str | None, cpus: list[int] | None
) -> Result:
    def open_sessions(path: bytes | str) -> list[ort.InferenceSession]:
        return [
            session(path, protocol.threads, protocol.spinning, cpus)
            for _ in range(protocol.sessions)
        ]

    sessions = open_sessions(model)
    refs = [] if reference is None else open_sessions(reference)
    inp = sessions[0].get_inputs()[0]
    shape = [protocol.batch if not isinstance(d, int) else d for d in inp.shape]
    feed = {inp.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    ref_feed = {}
    if refs:
        ref_inp = refs[0].get_inputs()[0]
        ref_shape = [protocol.batch if not isinstance(d, int) else d for d in ref_inp.shape]
        ref_input = np.random.default_rng(0).standard_normal(ref_shape).astype(np.float32)
        ref_feed = {ref_inp.name: ref_input}
    for sess, inputs in [*((s, feed) for s in sessions), *((r, ref_feed) for r in refs)]:
        for _ in range(protocol.warmup):
            sess.run(None, inputs)
    times: list[list[float]] = [[] for _ in sessions]
    ref_times: list[list[float]] = [[] for _ in refs]
    rounds: list[float] = []
    start = time.monotonic()
    cpu_before = _cpu_times()
    stable = False
    while len(rounds) < protocol.max_rounds:
        medians = []
        for k, sess in enumerate(sessions):
            batch = _timed(sess, feed, protocol.round_size)
            times[k] += batch
            if refs:
                ref_batch = _timed(refs[k], ref_feed, protocol.round_size)
                ref_times[k] += ref_batch
                # stability of the model relative to the reference: a level shift of the
                # whole machine moves both and is not instability
                medians.append(float(np.median(batch) / np.median(ref_batch)))
            else:
                medians.append(float(np.median(batch)))
        rounds.append(float(np.median(medians)))
        if len(rounds) >= protocol.min_rounds:
            last = np.array(rounds[-3:])
            if last.std() / last.mean() <= protocol.target_cv:
                stable = True
                break
        if time.monotonic() - start > protocol.budget_s:
            break
    load = foreign_load(cpu_before, _cpu_times(), time.monotonic() - start)
    per_session = np.array([np.median(t) for t in times])
    reference_ms = 1000 * float(np.median([np.median(t) for t in ref_times])) if ref_times else None
    result = Result(
        median_ms=1000 * float(np.median(per_session)),
        dispersion=float(per_session.std() / per_session.mean()),
        repeats=sum(len(t) for t in times),
        stable=stable,
        protocol={
            **protocol.as_dict(),
            "cpus": cpus,
            "foreign_load": None if load is None else round(load, 3),
        },
        foreign_load=load,
        reference_ms=reference_ms,
    )
    return replace(result, stable=stable and not result.contended)


# Instruction sets ONNX Runtime's kernels dispatch on: two hosts that differ in these run
# different code for the same model, so their latencies are different devices' latencies.
KERNEL_ISA = frozenset(
    [
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "f16c",
        "avx512f",
        "avx512bw",
        "avx512vl",
        "avx512_vnni",
        "avx_vnni",
        "avx512_bf16",
        "avx512_fp16",
        "amx_tile",
        "amx_int8",
        "amx_bf16",
        "asimd",
        "asimddp",
        "fphp",
        "sve",
        "sve2",
        "i8mm",
        "bf16",
    ]
)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty off Linux)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cache_sizes() -> dict[str, str]:
    """Cache sizes of CPU 0 by level and type, e.g. ``{"L2": "2048K", "L1d": "48K"}``."""
    sizes: dict[str, str] = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            size = (index / "size").read_text().strip()
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        sizes[f"L{level}{suffix}"] = size
    return sizes


def hardware_identity() -> dict[str, Any]:
    """What decides how fast a model runs here: CPU model, kernel ISA, caches, cores.

    A virtual machine named "Intel(R) Xeon(R) Processor" can be one CPU generation one day
    and another the next; measurements from both under one device name would mix two
    machines (seen here: the same designs 15-58% apart between two such hosts,
    benchmarks/host_retest.py).
    """
    info = _cpuinfo()
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "cpu": info.get("model name") or platform.processor() or "unknown",
        "family": info.get("cpu family") or info.get("CPU architecture"),
        "model": info.get("model") or info.get("CPU part"),
        "stepping": info.get("stepping") or info.get("CPU variant"),
        "isa": sorted(flags & KERNEL_ISA),
        "caches": _cache_sizes(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
    }


def hardware_id(identity: dict[str, Any]) -> str:
    """A short stable digest of :func:`hardware_identity` (equal machines, equal ids)."""
    text = json.dumps(identity, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _timed(sess: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int) -> list[float]:
    """Seconds of each of ``runs`` back-to-back runs of a session."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feed)
        out.append(time.perf_counter() - t0)
    return out


def host_specs() -> dict[str, Any]:
    """What this machine is, read from the machine (used to register it as devices)."""
    identity = hardware_identity()
    specs: dict[str, Any] = {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "cpu": identity["cpu"],
        "hardware": identity,
        "hardware_id": hardware_id(identity),
    }
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            specs["memory_gb"] = round(kb / 1024**2, 1)
    except (OSError, ValueError, IndexError):
        pass
    return specs


def host_device_name(threads: int, host: str = "host") -> str:
    """Registry name of this host as a measurement setting, e.g. ``host-ort-cpu-2t``."""
    return f"{host}-ort-cpu-{threads}t"
