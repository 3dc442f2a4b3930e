"""Proxy-device reuse (the OneProxy idea): borrow a registered device's predictor.

Rank the candidate devices by how well their predictions order the target's measured designs
(Spearman), and map a proxy's predictions through a monotone calibration fitted on the shots
(a power law, log y = a + b log p with b > 0, which keeps the proxy's ranking intact). This
module gives the parts; whether a proxy answers is decided once, in
:func:`predictors.answer.answer`: its agreement must reach ``AGREEMENT`` *and* its
calibration must predict the shots (each left out in turn) with at most 1 / ``PROXY_MARGIN``
of few-shot transfer's error; otherwise transfer (:mod:`predictors.transfer`) answers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGREEMENT = 0.9  # Spearman on the shots above which a proxy is reused as is


@dataclass(frozen=True)
class ProxyChoice:
    index: int  # column of the candidate matrix
    spearman: float
    ranking: list[tuple[int, float]]  # (column, Spearman), best first


def rank_proxies(candidates_on_shots: np.ndarray, measured: np.ndarray) -> ProxyChoice:
    """Order candidate devices (columns) by rank agreement with the measured shots.

    Spearman of every column at once (Pearson of average ranks, as ``scipy.stats.spearmanr``
    computes it); a column with no spread agrees with nothing (-1).
    """
    from scipy.stats import rankdata  # scipy.stats costs ~1 s at import

    if candidates_on_shots.shape[0] != len(measured) or len(measured) < 3:
        raise ValueError("rank agreement needs at least 3 measured designs")
    ranks = rankdata(candidates_on_shots, axis=0)
    ranks = ranks - ranks.mean(axis=0)
    target = rankdata(measured)
    target = target - target.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ranks * target[:, None]).sum(axis=0) / np.sqrt(
            (ranks**2).sum(axis=0) * (target**2).sum()
        )
    scores = [(j, float(r) if np.isfinite(r) else -1.0) for j, r in enumerate(rho)]
    scores.sort(key=lambda t: -t[1])
    return ProxyChoice(scores[0][0], scores[0][1], scores)


@dataclass(frozen=True)
class MonotoneCalibration:
    """log y = a + b log p (b > 0), with a log-space interval half-width from LOO residuals."""

    a: float
    b: float
    half_width: float

    @classmethod
    def fit(cls, proxy_ms: np.ndarray, measured_ms: np.ndarray, z: float = 1.645):
        x, y = np.log(proxy_ms), np.log(measured_ms)
        a, b = cls._line(x, y)
        loo = []
        for k in range(len(x)):
            keep = np.arange(len(x)) != k
            ak, bk = cls._line(x[keep], y[keep])
            loo.append(ak + bk * x[k] - y[k])
        return cls(a, b, z * float(np.sqrt(np.mean(np.square(loo)))))

    @staticmethod
    def _line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        if np.ptp(x) == 0:
            return float(np.mean(y - x)), 1.0
        b, a = np.polyfit(x, y, 1)
        if b <= 0:  # not monotone increasing: fall back to a pure scale factor
            return float(np.mean(y - x)), 1.0
        return float(a), float(b)

    def apply(self, proxy_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        centre = self.a + self.b * np.log(proxy_ms)
        return np.exp(centre), np.exp(centre - self.half_width), np.exp(centre + self.half_width)


def pairwise_spearman(latency: np.ndarray, min_common: int = 10) -> np.ndarray:
    """Spearman between every two devices (columns) over the designs both measured; NaN
    where fewer than ``min_common`` designs are shared (a device with fewer measured has NaN
    even on the diagonal). Symmetric."""
    from scipy.stats import rankdata

    ranks = np.full(latency.shape, np.nan)
    for j in range(latency.shape[1]):
        finite = np.isfinite(latency[:, j])
        ranks[finite, j] = rankdata(latency[finite, j])
    n = latency.shape[1]
    rho = np.full((n, n), np.nan)
    for i in range(n):
        both = np.isfinite(ranks[:, i : i + 1]) & np.isfinite(ranks)
        for j in range(i, n):
            mask = both[:, j]
            if mask.sum() >= min_common:
                rho[i, j] = rho[j, i] = float(np.corrcoef(ranks[mask, i], ranks[mask, j])[0, 1])
    return rho


def cluster_order(rho: np.ndarray) -> list[int]:
    """The devices in the leaf order of average-linkage clustering on 1 - Spearman, so that
    devices that rank designs alike sit together in the agreement matrix."""
    if len(rho) < 3:
        return list(range(len(rho)))
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    distance = 1 - np.nan_to_num(rho, nan=0.0)
    np.fill_diagonal(distance, 0.0)
    distance = (distance + distance.T) / 2
    return [int(i) for i in leaves_list(linkage(squareform(distance, checks=False), "average"))]
