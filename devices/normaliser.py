"""Host measurements on one scale: the design timed beside a fixed reference network.

The machine's speed level moves over minutes with no load to show for it
(``benchmarks/host_retest.py``); timing a reference in the same rounds and dividing by it
cancels a uniform slowdown. The value stored is ``measured x baseline / reference``, where the
baseline is the reference's time on this device, measured once and then kept, so every later
job (and verification) lands on the same scale.

This is measurement science only: where baselines are kept (the registry's device specs, an
agent's own file) and how the reference becomes an ONNX file (the exporter lives in
``search``) are passed in, so the service and an agent can share it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:  # onnxruntime loads when something is measured, not on import
    from devices.measure import Protocol as MeasureProtocol
    from devices.measure import Result

# Timed beside every host measurement (protocol edgeopt-ort/4) to cancel the machine's speed
# level moving over minutes: a mid-sized NB201 cell with every kind of kernel.
REFERENCE_DESIGN = "|avg_pool_3x3~0|+|nor_conv_1x1~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|"
REFERENCE_SPACE = "nb201"
# A reference slower than its baseline by more than this: the machine is in a slow spell,
# which the reference does not cancel; measure again, up to ATTEMPTS times in all.
SLOW_SPELL = 0.05
ATTEMPTS = 3
# A baseline is the median of the uncontended runs among BASELINE_RUNS reference runs. While
# every run so far was contended, the normaliser leaves the CPU to the other work (pauses
# doubling from FIRST_PAUSE_S up to MAX_PAUSE_S) and times again, for up to BUSY_WAIT_S
# (EDGEOPT_BUSY_WAIT_S in the service); the first uncontended run after a wait is the baseline.
BASELINE_RUNS = 3
FIRST_PAUSE_S, MAX_PAUSE_S = 0.5, 5.0
BUSY_WAIT_S = 120.0

Measure = Callable[..., "Result"]
"""``devices.measure.measure``: ``(model, protocol, reference=None) -> Result``."""
ReferenceModel = Callable[[str], str]
"""The path of the reference design's ONNX model in a policy (exported once, by the caller)."""
Waiting = Callable[[float, "float | None"], None]
"""Told, about every second while the baseline waits for a quiet CPU: ``(seconds waited,
cores the other processes used in the last reference run)``. It may raise to stop waiting
(a cancelled job)."""


class MachineBusy(RuntimeError):
    """Other processes kept the CPU busy for the whole wait: no baseline could be timed."""

    def __init__(self, waited_s: float, load: float | None, runs: int) -> None:
        cores = "" if load is None else f" ({load:.1f} cores)"
        super().__init__(
            f"other processes kept the CPU busy{cores} for {waited_s:.0f} s while the reference "
            f"baseline was timed ({runs} runs, all contended)"
        )
        self.waited_s, self.load, self.runs = waited_s, load, runs


class Baselines(Protocol):
    """Where each device's reference time per policy is kept once measured."""

    def get(self, device: int, policy: str) -> float | None:
        """The stored baseline, or None when this device has none for the policy yet."""
        ...

    def put(self, device: int, policy: str, value: float) -> None:
        """Keep a newly measured baseline."""
        ...


class MemoryBaselines:
    """Baselines in a dict: for one process (an agent run, a benchmark, a test)."""

    def __init__(self, values: dict[tuple[int, str], float] | None = None) -> None:
        self.values = dict(values or {})

    def get(self, device: int, policy: str) -> float | None:
        return self.values.get((device, policy))

    def put(self, device: int, policy: str, value: float) -> None:
        self.values[(device, policy)] = value


def reference_policy(precisions: list[str]) -> str:
    """The NB201 policy the reference runs in: the same kind of kernels as the design."""
    if all(p == "fp32" for p in precisions):
        return "fp32"
    if all(p == "int8" for p in precisions):
        return "int8"
    return "fp32,int8,int8,int8,fp32"


class Normaliser:
    """Host measurements relative to the reference, scaled to the reference's baseline.

    ``busy_wait_s``: how long a first baseline may wait for a quiet CPU before it gives up
    (:class:`MachineBusy`); ``waiting`` is told while it waits.
    """

    def __init__(
        self,
        measure: Measure,
        reference: ReferenceModel,
        baselines: Baselines,
        busy_wait_s: float = BUSY_WAIT_S,
        waiting: Waiting | None = None,
    ) -> None:
        self.measure, self.reference, self.baselines = measure, reference, baselines
        self.busy_wait_s, self.waiting = busy_wait_s, waiting

    def baseline(self, device: int, policy: str, protocol: MeasureProtocol) -> float:
        """The device's reference time in ``policy``, measured (uncontended) the first time.

        It is the scale every later value of the device lands on, so it is taken only from
        uncontended runs: while every run was contended, wait and time again, up to
        ``busy_wait_s``, then raise :class:`MachineBusy`. A quiet machine never waits.
        """
        known = self.baselines.get(device, policy)
        if known:
            return float(known)
        started = time.monotonic()
        clean: list[float] = []
        runs, pause = 0, FIRST_PAUSE_S
        while not (clean and runs >= BASELINE_RUNS):
            result = self.measure(self.reference(policy), protocol)
            runs += 1
            if not result.contended:
                clean.append(result.median_ms)
                continue
            if clean:  # one of the first runs, beside a quiet one: dropped, as before
                continue
            waited = time.monotonic() - started
            if waited >= self.busy_wait_s:
                raise MachineBusy(waited, result.foreign_load, runs)
            self._pause(min(pause, self.busy_wait_s - waited), started, result.foreign_load)
            pause = min(2 * pause, MAX_PAUSE_S)
        value = float(np.median(clean))
        self.baselines.put(device, policy, value)
        return value

    def _pause(self, seconds: float, started: float, load: float | None) -> None:
        """Leave the CPU to the other work for ``seconds``, telling ``waiting`` every second."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.waiting is not None:
                self.waiting(time.monotonic() - started, load)
            time.sleep(min(1.0, left))

    def __call__(
        self, model: str, device: int, precisions: list[str], protocol: MeasureProtocol
    ) -> Result:
        """Measure ``model`` with the reference interleaved; the normalised result.

        Up to ``ATTEMPTS`` measurements, until one is uncontended and its reference ran
        within ``SLOW_SPELL`` of the baseline; else the one whose reference ran closest,
        flagged unstable. Dividing by the reference cancels a uniform slowdown only: in a
        slow spell of a 2-vCPU VM the designs slowed more than the reference (2-thread
        repeats within +-10%: 0.925 of 40 designs in all, 1.000 of the 21 whose references
        ran within 5% of the quiet level both times, ``benchmarks/measurement_statistic.py``).
        """
        policy = reference_policy(precisions)
        base = self.baseline(device, policy, protocol)

        def quick(result: Result) -> bool:
            return bool(_reference_ms(result) <= base * (1 + SLOW_SPELL))

        attempts = []
        for _ in range(ATTEMPTS):
            raw = self.measure(model, protocol, reference=self.reference(policy))
            attempts.append(raw)
            if not raw.contended and quick(raw):
                break
        raw = min(attempts, key=lambda r: (r.contended, _reference_ms(r)))
        reference: dict[str, Any] = {
            "design": REFERENCE_DESIGN,
            "policy": policy,
            "median_ms": raw.reference_ms,
            "baseline_ms": base,
            "slow_spell": SLOW_SPELL,
        }
        return replace(
            raw,
            median_ms=raw.median_ms * base / _reference_ms(raw),
            stable=raw.stable and quick(raw),
            protocol={
                **raw.protocol,
                "raw_median_ms": raw.median_ms,
                "attempts": len(attempts),
                "reference": reference,
            },
        )


def _reference_ms(result: Result) -> float:
    if result.reference_ms is None:
        raise ValueError("the measurement did not time the reference beside the model")
    return result.reference_ms
