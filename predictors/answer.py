"""The one proxy-or-transfer decision: which model answers a device's metric, and why.

Every caller (``/predict``, ``/optimize``, the measure-and-refine job, ``edgeopt eval
optimize`` and the rank-agreement dashboard) asks this module, so a device gets the same
answer whichever door it came through:

1. the device's own model, when it has one for the metric and policy;
2. otherwise, from its measured designs (the shots, at least ``MIN_SHOTS``): the registered
   device whose ranking agrees best with them, reused through a monotone calibration when
   that agreement reaches ``AGREEMENT`` (OneProxy) and the calibration predicts the shots,
   each left out in turn, with at most 1 / ``PROXY_MARGIN`` of transfer's error;
3. otherwise few-shot transfer over every registered (basis) device;
4. otherwise no number, and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from predictors.intervals import LEVEL, Z90
from predictors.proxy import AGREEMENT, MonotoneCalibration, rank_proxies
from predictors.transfer import MIN_SHOTS, TransferBasis, TransferModel

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]
# A proxy is reused only where its calibration predicts the shots (each left out in turn)
# with at most 1 / PROXY_MARGIN of transfer's error. At 1 (as good as transfer), /optimize
# from the fingerprint reused proxies that broke 31% of budgets on unseen server CPUs where
# search broke 6% (benchmarks/transfer_suite.py); at 2 auto is never the worse of the two
# on any NB201 split there.
PROXY_MARGIN = 2.0
CALIBRATION_ROWS = 3000  # designs sampled to calibrate a basis' interval scale
CALIBRATION_SHOTS = 50
ADVICE = (
    "the device's shots are {} explained (leave-one-out): it is unlike the registered devices "
    "or measured noisily, so treat predictions as rough; measure the designs "
    "GET /devices/{{device}}/next-measurements suggests, or optimize with max_measurements "
    "(measure-and-refine) for a design verified on the device"
)


@dataclass(frozen=True)
class Answer:
    """Predictions (median, 90% interval) for the wanted designs and how they were made.

    ``method`` is ``device-model``, ``proxy``, ``transfer`` or None (no answer: ``reason``).
    """

    method: str | None
    estimates: Arrays | None
    shots: int = 0
    proxy: str | None = None
    proxy_spearman: float | None = None
    reason: str = ""
    expected_spearman: float | None = None  # transfer: what held-out devices reached
    evidence: dict[str, object] | None = None  # transfer: how well the shots are explained

    def info(self) -> dict[str, object]:
        """The JSON the service reports as ``answered_by``."""
        out: dict[str, object] = {"method": self.method, "shots": self.shots}
        if self.method == "transfer" and self.expected_spearman is not None:
            out["expected_spearman"] = round(self.expected_spearman, 4)
        if self.evidence is not None:
            out["evidence"] = self.evidence
            if self.evidence.get("explained") in ("partly", "poorly"):
                out["advice"] = ADVICE.format(self.evidence["explained"])
        if self.proxy is not None:
            out |= {"proxy": self.proxy, "proxy_spearman": self.proxy_spearman}
        out["decision" if self.method else "reason"] = self.reason
        return out


def _calibration_shots(shots: int, designs: int) -> int:
    """Shots per held-out device when calibrating: as many as the target has, up to
    ``CALIBRATION_SHOTS`` (intervals change little past it) and half the designs sampled."""
    return max(MIN_SHOTS, min(shots, CALIBRATION_SHOTS, designs // 2))


def calibrated_scale(basis: TransferBasis, shots: int, rows: int = CALIBRATION_ROWS) -> float:
    """The transfer's interval multiplier for this basis and shot count (seeded, so stable)."""
    return transfer_calibration(basis, shots, rows)[0]


def transfer_calibration(
    basis: TransferBasis, shots: int, rows: int = CALIBRATION_ROWS
) -> tuple[float, float | None]:
    """The transfer's interval multiplier and expected Spearman for a basis and shot count.

    A property of the basis devices alone: calibrated by holding each out in turn, on at most
    ``rows`` sampled designs so that it costs the same for a large space as for a small one.
    """
    sample = np.random.default_rng(0).permutation(basis.n_designs)[:rows]
    small = basis.rows(sample)
    model = TransferModel(small)
    scale = model.calibrate(_calibration_shots(shots, small.n_designs))
    return scale, model.expected_spearman


def calibrated_proxy_scale(basis: TransferBasis, shots: int, rows: int = CALIBRATION_ROWS) -> float:
    """The multiplier that makes a reused proxy's 90% interval cover 90% (seeded, so stable).

    A monotone calibration's interval comes from its leave-one-out residuals on a few shots,
    which understate its tail. Each basis device is held out in turn, its best-agreeing peer
    reused from ``shots`` D-optimal designs as ``answer`` would (only where the agreement
    reaches ``AGREEMENT``), and the LEVEL quantile of |error| / half-width over the rest of
    its designs is the multiplier; 1 where no basis device would reuse a proxy.
    """
    rng = np.random.default_rng(0)
    sample = rng.permutation(basis.n_designs)[:rows]
    latency = basis.latency_ms[sample]
    features = None if basis.design_features is None else basis.features().rows(sample)
    ratios = []
    for j in range(latency.shape[1]):
        if latency.shape[1] < 2:
            break
        truth = latency[:, j]
        available = np.flatnonzero(np.isfinite(truth))
        names = [n for k, n in enumerate(basis.names) if k != j]
        peers = TransferBasis(
            basis.cost[sample], np.delete(latency, j, axis=1), names, basis.dead[sample], features
        )
        n = _calibration_shots(shots, len(available))
        idx = TransferModel(peers).choose_shots(n, rng, available)
        choice = rank_proxies(np.exp(peers.log_latency[idx]), truth[idx])
        if choice.spearman < AGREEMENT:
            continue
        column = np.exp(peers.log_latency[:, choice.index])
        calibration = MonotoneCalibration.fit(column[idx], truth[idx])
        rest = np.setdiff1d(available, idx)
        centre, low, _ = calibration.apply(column[rest])
        half = max(float(np.log(centre[0]) - np.log(low[0])), 1e-9)
        ratios.append(np.abs(np.log(truth[rest]) - np.log(centre)) / half)
    if not ratios:
        return 1.0
    return float(np.quantile(np.concatenate(ratios), LEVEL))


def answer(
    basis: TransferBasis | None,
    shots: np.ndarray,
    measured: np.ndarray,
    rows: np.ndarray | None = None,
    *,
    own: Arrays | None = None,
    allow_proxy: bool = True,
    proxy_evidence: bool = True,
    interval_scale: float | None = None,
    proxy_scale: float = 1.0,
    label: str = "model for the device",
    expected_spearman: float | None = None,
) -> Answer:
    """Own model, else proxy, else transfer, else no answer: for ``rows`` of the basis.

    Args:
        basis: the registered devices' latencies (or predictions) and cost features over the
            designs in question; None when no other device has a model.
        shots: indices into the basis' designs that the device measured; ``measured`` their
            values (same units as the basis).
        rows: the designs to predict (default: all of the basis').
        own: the device's own model's predictions for ``rows``, when it has one.
        allow_proxy: False goes straight to transfer (``method: search``).
        proxy_evidence: False reuses an agreeing proxy on rank agreement alone, as OneProxy
            does (``method: proxy``); True also asks its calibration to predict the shots
            better than transfer (``method: auto``, and ``/predict``).
        interval_scale: the transfer's calibrated multiplier (``calibrated_scale``).
        expected_spearman: the rank quality held-out devices reached from as many shots
            (``transfer_calibration``), reported with a transfer answer.
        proxy_scale: a reused proxy's calibrated multiplier (``calibrated_proxy_scale``).
    """
    shots = np.asarray(shots, dtype=int)
    measured = np.asarray(measured, dtype=float)
    if own is not None:
        return Answer("device-model", own, len(shots), reason="the device's own model")
    n_basis = 0 if basis is None else basis.latency_ms.shape[1]
    if len(shots) < MIN_SHOTS or basis is None:
        return Answer(
            None,
            None,
            len(shots),
            reason=(
                f"no {label}: it has {len(shots)} measured designs (needs "
                f"{MIN_SHOTS} to adapt) and {n_basis} other devices have a model to adapt from"
            ),
        )
    want = np.arange(basis.n_designs) if rows is None else np.asarray(rows, dtype=int)
    # rank agreement and a proxy's calibration on the designs that compute something: a
    # degenerate cell's latency says how a runtime treats dead work (see TransferBasis)
    live = ~basis.dead[shots]
    if live.sum() < MIN_SHOTS:
        live[:] = True
    choice = rank_proxies(np.exp(basis.log_latency[shots[live]]), measured[live])
    name = basis.names[choice.index]
    adapted = TransferModel(basis, interval_scale=interval_scale).adapt(shots, measured)
    if allow_proxy and choice.spearman >= AGREEMENT:
        column = np.exp(basis.log_latency[:, choice.index])
        calibration = MonotoneCalibration.fit(column[shots[live]], measured[live])
        # reuse the proxy only where it also predicts the shots (each left out in turn) at
        # least as well as transfer does: agreement in rank is not agreement in scale
        proxy_error = calibration.half_width / Z90
        if not proxy_evidence or proxy_error * PROXY_MARGIN <= adapted.sigma:
            widened = replace(calibration, half_width=calibration.half_width * proxy_scale)
            estimates = widened.apply(column[want])
            return Answer(
                "proxy",
                estimates,
                len(shots),
                name,
                choice.spearman,
                f"reused {name}: rank agreement {choice.spearman:.3f} >= {AGREEMENT}, "
                f"leave-one-out error {proxy_error:.3f} <= 1/{PROXY_MARGIN:g} of transfer's "
                f"{adapted.sigma:.3f}",
            )
        why = (
            f" >= {AGREEMENT} but its leave-one-out error {proxy_error:.3f} > 1/{PROXY_MARGIN:g} "
            f"of transfer's {adapted.sigma:.3f}"
        )
    else:
        why = f" < {AGREEMENT}" if allow_proxy else " (proxy reuse not requested)"
    return Answer(
        "transfer",
        adapted.predict(want),
        len(shots),
        name,
        choice.spearman,
        f"adapted: best proxy {name} agrees {choice.spearman:.3f}{why}; "
        f"few-shot transfer over {n_basis} devices",
        expected_spearman,
        adapted.evidence(),
    )


def best_proxies(
    latency: np.ndarray, min_common: int = 10
) -> list[tuple[int | None, float | None]]:
    """For each device (column), the other device that ``answer`` would consider its proxy.

    Agreement is Spearman on the designs both measured (NaN elsewhere), as ``answer``
    measures it on a device's shots; fewer than ``min_common`` common designs give no proxy.
    """
    from scipy.stats import rankdata

    n = latency.shape[1]
    if n < 2:  # a lone device has no other to reuse
        return [(None, None)] * n
    finite = np.isfinite(latency)
    rho = np.full((n, n), np.nan)
    if finite.all() and len(latency) >= max(min_common, MIN_SHOTS):  # one matrix product
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = np.corrcoef(rankdata(latency, axis=0), rowvar=False)
    else:
        for j in range(n):
            for k in range(j + 1, n):
                both = finite[:, j] & finite[:, k]
                if both.sum() >= max(min_common, MIN_SHOTS):
                    pair = latency[both][:, [k]]
                    rho[j, k] = rho[k, j] = rank_proxies(pair, latency[both, j]).spearman
    np.fill_diagonal(rho, np.nan)
    out: list[tuple[int | None, float | None]] = []
    for j in range(n):
        row = np.where(np.isfinite(rho[j]), rho[j], -np.inf)
        k = int(np.argmax(row)) if n > 1 else 0
        out.append((k, float(row[k])) if n > 1 and np.isfinite(row[k]) else (None, None))
    return out
