"""Per-scope predictors over a space's designs: latency/energy on one device, accuracy.

A gradient-boosted model (LightGBM) on the space's design encoding, fitted on log values so
errors are relative. A random fifth of the data is held out: its figures are the predictor's
quality, and its residuals set the interval (split conformal: the LEVEL quantile of the
held-out |log error|), so coverage is measured, not assumed. The final model is refitted on
everything with the same settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from predictors.metrics import coverage, quality

if TYPE_CHECKING:  # LightGBM pulls in scikit-learn: a second at import, so import it on use
    import lightgbm as lgb

LEVEL = 0.9
MIN_ROWS = 50
PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.1,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "num_threads": 2,
    "verbose": -1,
    "deterministic": True,
    "seed": 0,
}
ROUNDS = 200
HELD_OUT_POINTS = 2000


@dataclass
class DesignModel:
    """A fitted per-scope model: booster, log-space interval half-width, held-out quality."""

    booster: lgb.Booster
    half_width: float
    quality: dict[str, float]
    log_target: bool
    held_out: dict[str, list[float]] | None = None  # measured / predicted / low / high, sampled
    value_range: tuple[float, float] | None = None  # of the training targets

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prediction and LEVEL interval per row of encoded designs."""
        if x.shape[1] != self.booster.num_feature():
            raise ValueError(
                f"this model was trained on {self.booster.num_feature()} features, the space "
                f"now encodes {x.shape[1]}: retrain it (edgeopt predictors train)"
            )
        raw = np.asarray(self.booster.predict(x, num_threads=2), dtype=float)
        if self.value_range is not None:  # boosted sums can leave the range ever observed
            raw = np.clip(raw, *self.value_range)
        if self.log_target:
            return np.exp(raw), np.exp(raw - self.half_width), np.exp(raw + self.half_width)
        return raw, raw - self.half_width, raw + self.half_width

    def save(self, folder: Path) -> None:
        """LightGBM's own text format plus a JSON sidecar; nothing pickled."""
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / "model.txt"))
        meta = {
            "format": "edgeopt.design_model/1",
            "half_width": self.half_width,
            "log_target": self.log_target,
            "level": LEVEL,
            "quality": self.quality,
            "value_range": self.value_range,
        }
        (folder / "model.json").write_text(json.dumps(meta, indent=2))
        if self.held_out is not None:
            (folder / "held_out.json").write_text(json.dumps(self.held_out))

    @classmethod
    def load(cls, folder: Path) -> DesignModel:
        import lightgbm as lgb

        meta = json.loads((folder / "model.json").read_text())
        if meta.get("format") != "edgeopt.design_model/1":
            raise ValueError(f"{folder}: not an EdgeOpt design model")
        booster = lgb.Booster(model_file=str(folder / "model.txt"))
        held = folder / "held_out.json"
        pairs = json.loads(held.read_text()) if held.is_file() else None
        bounds = meta.get("value_range")
        return cls(
            booster,
            float(meta["half_width"]),
            meta["quality"],
            bool(meta["log_target"]),
            pairs,
            (float(bounds[0]), float(bounds[1])) if bounds else None,
        )


def fit_design_model(
    x: np.ndarray, y: np.ndarray, log_target: bool = True, seed: int = 0
) -> DesignModel:
    """Fit on 80%, measure on the held-out 20%, then refit on all rows."""
    import lightgbm as lgb

    if len(y) < MIN_ROWS:
        raise ValueError(f"a design model needs at least {MIN_ROWS} measured designs, got {len(y)}")
    if log_target and (y <= 0).any():
        raise ValueError("values must be positive to model them in log space")
    target = np.log(y) if log_target else y
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    cut = len(y) // 5
    held, fit = order[:cut], order[cut:]
    params = {**PARAMS, "seed": seed}
    booster = lgb.train(params, lgb.Dataset(x[fit], target[fit]), num_boost_round=ROUNDS)
    bounds = (float(target[fit].min()), float(target[fit].max()))
    guess = np.clip(np.asarray(booster.predict(x[held]), dtype=float), *bounds)
    half = float(np.quantile(np.abs(guess - target[held]), LEVEL))
    model = DesignModel(booster, half, {}, log_target, value_range=bounds)
    centre, low, high = model.predict(x[held])
    figures = quality(centre, y[held])
    if not log_target:  # accuracy: points, not milliseconds; percent error is meaningless
        figures = {
            "spearman": figures["spearman"],
            "kendall": figures["kendall"],
            "rmse": figures["rmse_ms"],
            "mae": float(np.mean(np.abs(centre - y[held]))),
        }
    figures["coverage"] = coverage(low, high, y[held])
    figures["held_out"] = int(cut)
    figures["trained_on"] = len(y)
    full = lgb.train(params, lgb.Dataset(x, target), num_boost_round=ROUNDS)
    keep = rng.permutation(len(held))[:HELD_OUT_POINTS]  # enough for a scatter plot
    pairs = {
        "measured": y[held][keep].tolist(),
        "predicted": centre[keep].tolist(),
        "low": low[keep].tolist(),
        "high": high[keep].tolist(),
    }
    full_bounds = (float(target.min()), float(target.max()))
    return DesignModel(full, half, figures, log_target, pairs, full_bounds)


def library_versions() -> dict[str, str]:
    """Versions recorded with every artifact (provenance)."""
    return {name: version(name) for name in ("lightgbm", "numpy", "scikit-learn", "edgeopt")}
