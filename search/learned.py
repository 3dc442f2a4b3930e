"""The learned optimizer: a device's features and the user's goals straight to a design.

**Input.** The device's latencies on the fingerprint designs (``devices.fingerprint``: the
fixed designs every device measures first), as log latency minus its mean, so that devices
of any speed look alike; and a goal vector: the latency budget as log(budget) minus that
same mean, the accuracy floor standardised over the dataset's designs, which of them are
set, and the objective (accuracy, or latency). **Output.** One categorical head per
architecture decision (NB201: the op of each of 6 edges) and one per quantization unit
(fp32 or int8).

**Teacher.** The optimizer (``search.optimize.choose``) on the exact latencies of devices
whose whole table is known: the registry's real devices and synthetic ones drawn from a
generator fitted to them (``search.synthetic``). The target is soft: every design within
``TOLERANCE`` points of the best within the budget, weighted by how close it is, so the
heads learn the region the optimum lies in, not one design.

**Decoding never trusts the network alone.** :meth:`LearnedOptimizer.propose` ranks the
candidate designs by the heads' joint log-probability at the goal and at ``TIGHTEN``-ed
budgets (a prediction's interval pushes the served choice below the budget), and
:func:`front` (and the service, for one goal) checks the proposals with the predictors
at the requested confidence (``choose``) and answers the best that holds. When none
does, the caller falls back to search over every design and says so.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from predictors.tables import LatencyTable
from search.optimize import Candidates, Choice, Goals, choose
from search.spaces import SearchSpace
from search.synthetic import one_hot

FORMAT = 1  # of the artifact: a file written by an older format is refused, not misread
GOAL_COLUMNS = ("log_budget", "has_budget", "accuracy_floor", "has_floor", "objective_latency")
PRECISIONS = ("fp32", "int8")
TOLERANCE = 0.3  # points of accuracy below the best that still teach the heads
SPEED_TOLERANCE = 0.05  # relative latency above the fastest, for the latency objective
# Budgets decoded per answer: the budget and tighter ones, down to exp(-0.8) = 0.45 of it.
TIGHTEN = np.exp(-np.linspace(0.0, 0.8, 8))
# Proposals per decoded goal (at most len(TIGHTEN) x PER_GOAL are checked). On the standard
# NB201 split from the fingerprint, the mean accuracy gap to search over every design with
# the same predictions: 16 -> 0.30 points, 32 -> 0.19, 64 -> 0.12, 128 -> 0.06.
PER_GOAL = 64
FEATURE_NOISE = 0.03  # log-space noise on training fingerprints: measurements are not exact


@dataclass(frozen=True)
class Spec:
    """What a trained optimizer is for and how its inputs are built (the JSON sidecar)."""

    space: str
    dataset: str
    fingerprint: list[str]
    choices: list[int]
    units: list[str]
    accuracy_mean: float
    accuracy_std: float
    hidden: int = 256
    policies_learned: list[str] = field(default_factory=lambda: ["fp32"])
    quality: dict[str, object] = field(default_factory=dict)
    format: int = FORMAT

    @property
    def arch_width(self) -> int:
        return int(sum(self.choices))

    @property
    def width(self) -> int:
        return self.arch_width + len(PRECISIONS) * len(self.units)


def new_spec(
    space: SearchSpace, dataset: str, fingerprint: list[str], accuracy: np.ndarray
) -> Spec:
    """The spec of an optimizer for a space and dataset (``accuracy`` over its designs)."""
    from search.policy import units

    if not space.choices():
        raise ValueError(f"the learned optimizer has no decisions to choose in {space.name}")
    known = accuracy[np.isfinite(accuracy)]
    if len(known) < 2:
        raise ValueError(f"no {dataset} accuracy to learn from in {space.name}")
    return Spec(
        space.name, dataset, list(fingerprint), space.choices(), units(space.name),
        float(known.mean()), float(known.std()) or 1.0,
    )  # fmt: skip


def device_features(fingerprint_ms: np.ndarray) -> np.ndarray:
    """Log latency minus its mean: the device's shape, whatever its speed."""
    logs = np.log(np.asarray(fingerprint_ms, dtype=float))
    if not np.isfinite(logs).all():
        raise ValueError("fingerprint latencies must be positive numbers")
    return logs - logs.mean()


def goal_vector(goals: Goals, fingerprint_ms: np.ndarray, spec: Spec) -> np.ndarray:
    """The goals as the network reads them (see ``GOAL_COLUMNS``)."""
    level = float(np.log(np.asarray(fingerprint_ms, dtype=float)).mean())
    budget = goals.max_latency_ms
    floor = goals.min_accuracy
    return np.array(
        [
            0.0 if budget is None else float(np.log(budget)) - level,
            0.0 if budget is None else 1.0,
            0.0 if floor is None else (floor - spec.accuracy_mean) / spec.accuracy_std,
            0.0 if floor is None else 1.0,
            1.0 if goals.objective == "latency" else 0.0,
        ]
    )


def tightened(goals: Goals) -> list[Goals]:
    """The goal at each of ``TIGHTEN``'s budgets (one goal when there is no budget)."""
    if goals.max_latency_ms is None:
        return [goals]
    return [
        Goals(goals.max_latency_ms * float(t), goals.max_energy_mj, goals.min_accuracy,
              goals.objective, goals.weights)
        for t in TIGHTEN
    ]  # fmt: skip


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class LearnedOptimizer:
    """A trained network, evaluated in numpy (a forward pass is a few small matrix products,
    well under a millisecond; torch is only needed to train and to read the state dict)."""

    def __init__(self, spec: Spec, weights: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.spec = spec
        self.weights = weights
        self._onehot: dict[int, np.ndarray] = {}

    def head_logprobs(self, inputs: np.ndarray) -> list[np.ndarray]:
        """Log-probabilities of every head for each input row (architecture heads first)."""
        h = np.asarray(inputs, dtype=np.float32)
        for k, (w, b) in enumerate(self.weights):
            h = h @ w.T + b
            if k < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        out, start = [], 0
        for size in [*self.spec.choices, *[len(PRECISIONS)] * len(self.spec.units)]:
            out.append(_log_softmax(h[:, start : start + size]))
            start += size
        return out

    def inputs(self, fingerprint_ms: np.ndarray, goals: Sequence[Goals]) -> np.ndarray:
        features = device_features(fingerprint_ms)
        return np.stack([np.r_[features, goal_vector(g, fingerprint_ms, self.spec)] for g in goals])

    def propose(self, fingerprint_ms: np.ndarray, goals: Goals, options: np.ndarray) -> np.ndarray:
        """Rows of ``options`` (designs x decisions) worth checking, best first."""
        return self.propose_front(fingerprint_ms, [goals], options)[0]

    def propose_front(
        self, fingerprint_ms: np.ndarray, goals: Sequence[Goals], options: np.ndarray
    ) -> list[np.ndarray]:
        """Proposals for several goals at once (one forward pass for all of them)."""
        decoded = [g for goal in goals for g in tightened(goal)]
        heads = self.head_logprobs(self.inputs(fingerprint_ms, decoded))
        arch = np.concatenate(heads[: len(self.spec.choices)], axis=1)  # goals x arch_width
        scores = self._onehot_of(options) @ arch.T  # designs x goals: joint log-probability
        k = min(PER_GOAL, len(options))
        top = np.argpartition(-scores, k - 1, axis=0)[:k]  # k x goals
        out, start = [], 0
        for goal in goals:
            n = len(tightened(goal))
            block = top[:, start : start + n]
            ranked = np.take_along_axis(scores[:, start : start + n], block, axis=0)
            order = block.T[np.arange(n)[:, None], np.argsort(-ranked.T, axis=1)]
            out.append(np.array(list(dict.fromkeys(order.ravel().tolist())), dtype=int))
            start += n
        return out

    def preferred_policy(self, fingerprint_ms: np.ndarray, goals: Goals) -> str:
        """The quantization the unit heads prefer at the goal ("fp32", "int8" or per unit)."""
        heads = self.head_logprobs(self.inputs(fingerprint_ms, [goals]))
        picks = [PRECISIONS[int(np.argmax(h[0]))] for h in heads[len(self.spec.choices) :]]
        return picks[0] if len(set(picks)) == 1 else ",".join(picks)

    def _onehot_of(self, options: np.ndarray) -> np.ndarray:
        """The designs' one-hot decisions, kept for the last design list asked about (a
        service asks about the same space's designs again and again)."""
        key = hash(np.ascontiguousarray(options).tobytes())
        if key not in self._onehot:
            self._onehot = {key: one_hot(options, self.spec.choices)}
        return self._onehot[key]

    def save(self, path: Path) -> None:
        """``path`` (a torch state dict) and ``path.json`` (the spec, with quality figures)."""
        import torch

        state = {}
        for k, (w, b) in enumerate(self.weights):
            state[f"layers.{k}.weight"] = torch.from_numpy(np.ascontiguousarray(w))
            state[f"layers.{k}.bias"] = torch.from_numpy(np.ascontiguousarray(b))
        # Both files under temporary names first, then renamed into place: a full or
        # read-only disk leaves neither a partial tensor file nor one without its sidecar.
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_state, tmp_spec = (p.with_name(f".{p.name}.tmp") for p in (path, sidecar(path)))
        try:
            buffer = io.BytesIO()  # torch's own file writer says "iostream error" when full
            torch.save(state, buffer)
            tmp_state.write_bytes(buffer.getvalue())
            tmp_spec.write_text(json.dumps(asdict(self.spec), indent=2))
            os.replace(tmp_state, path)
            os.replace(tmp_spec, sidecar(path))
        except BaseException:
            for tmp in (tmp_state, tmp_spec, path):
                tmp.unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: Path) -> LearnedOptimizer:
        """Read an artifact written by :meth:`save` (tensors only: nothing is unpickled)."""
        import torch

        doc = json.loads(sidecar(path).read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(
                f"{path.name} is in format {doc.get('format')}, this code reads {FORMAT}"
            )
        spec = Spec(**doc)
        state = torch.load(path, map_location="cpu", weights_only=True)
        layers = sorted({int(k.split(".")[1]) for k in state})
        weights = [
            (state[f"layers.{k}.weight"].numpy(), state[f"layers.{k}.bias"].numpy()) for k in layers
        ]
        if weights[0][0].shape[1] != len(spec.fingerprint) + len(GOAL_COLUMNS):
            raise ValueError(f"{path.name} does not match its sidecar's fingerprint")
        if weights[-1][0].shape[0] != spec.width:
            raise ValueError(f"{path.name} does not match its sidecar's heads")
        return cls(spec, weights)


def sidecar(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".json")


def front(
    proposed: Sequence[np.ndarray],
    candidates: Candidates,
    goals: Sequence[Goals],
    confidence: float,
) -> list[tuple[Choice, np.ndarray]]:
    """One choice per goal, each among its own proposals, with the candidates it chose from.

    ``candidates`` are the union of every goal's proposals, predicted once (a candidate's
    ``design`` is its proposal's row of the caller's designs). Each goal's choice indexes
    its own candidates (``candidates.take(rows)``, ``rows`` returned beside it); it has no
    index when none of its proposals met the goal at the confidence, and then the caller
    answers that goal by search.
    """
    out = []
    for proposal, goal in zip(proposed, goals, strict=True):
        rows = np.flatnonzero(np.isin(candidates.design, proposal))
        out.append((choose(candidates.take(rows), goal, confidence, 0, 0), rows))
    return out


# --- training -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Examples:
    """Network inputs and soft targets of the architecture heads (one row per goal)."""

    inputs: np.ndarray  # examples x (fingerprint + goal columns)
    targets: np.ndarray  # examples x arch_width, each head's block sums to 1


def examples(
    latency_ms: np.ndarray,
    accuracy: np.ndarray,
    options: np.ndarray,
    fingerprint_rows: np.ndarray,
    spec: Spec,
    per_device: int,
    rng: np.random.Generator,
) -> Examples:
    """Goals sampled across each device's feasible range, with the teacher's soft targets.

    Args:
        latency_ms: designs x devices, every device measured on every row with an accuracy.
        accuracy: per design (points); NaN where the dataset has none (never a target).
        options: designs x decisions.
        fingerprint_rows: rows of the fingerprint designs.
    """
    onehot = one_hot(options, spec.choices).astype(float)
    known = np.isfinite(accuracy)
    inputs, targets = [], []
    for j in range(latency_ms.shape[1]):
        lat = latency_ms[:, j]
        rows = np.flatnonzero(known & np.isfinite(lat))
        prints = lat[fingerprint_rows]
        if len(rows) < 2 or not np.isfinite(prints).all():
            continue
        order = rows[np.argsort(lat[rows], kind="stable")]
        sorted_acc = accuracy[order]
        best_upto = np.maximum.accumulate(sorted_acc)
        for _ in range(per_device):
            noisy = prints * np.exp(rng.normal(0.0, FEATURE_NOISE, len(prints)))
            if rng.random() < 0.75:  # most accuracy within a latency budget
                k = int(rng.integers(1, len(order) + 1))
                budget = float(lat[order[k - 1]]) * float(np.exp(rng.uniform(0, 0.01)))
                best = best_upto[k - 1]
                near = order[:k][sorted_acc[:k] >= best - TOLERANCE]
                weight = np.exp((accuracy[near] - best) / (TOLERANCE / 3))
                goals = Goals(max_latency_ms=budget)
            else:  # the fastest design above an accuracy floor
                floor = float(np.quantile(accuracy[rows], rng.uniform(0.05, 0.995)))
                ok = rows[accuracy[rows] >= floor]
                fastest = float(lat[ok].min())
                near = ok[lat[ok] <= fastest * (1 + SPEED_TOLERANCE)]
                weight = np.exp(-(np.log(lat[near]) - np.log(fastest)) / (SPEED_TOLERANCE / 3))
                goals = Goals(min_accuracy=floor, objective="latency")
            target = (weight @ onehot[near]) / weight.sum()
            inputs.append(np.r_[device_features(noisy), goal_vector(goals, noisy, spec)])
            targets.append(target)
    if not inputs:
        raise ValueError("no device has its fingerprint designs and accuracy to learn from")
    return Examples(np.array(inputs, dtype=np.float32), np.array(targets, dtype=np.float32))


def train(
    data: Examples,
    spec: Spec,
    epochs: int = 40,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    lr: float = 2e-3,
    batch: int = 512,
) -> tuple[LearnedOptimizer, dict[str, float]]:
    """Fit the network on the examples (soft cross-entropy per head); returns the model
    and its training figures (final loss and the teacher's own loss floor: the entropy)."""
    import torch

    torch.manual_seed(seed)
    width_in = data.inputs.shape[1]
    net = torch.nn.Sequential(
        torch.nn.Linear(width_in, spec.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(spec.hidden, spec.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(spec.hidden, spec.hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(spec.hidden, spec.width),
    )
    x = torch.from_numpy(data.inputs)
    y = torch.from_numpy(data.targets)
    fp32 = torch.zeros(len(PRECISIONS))
    fp32[PRECISIONS.index("fp32")] = 1.0
    bounds = np.r_[0, np.cumsum(spec.choices)]
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    steps = epochs * int(np.ceil(len(x) / batch))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)

    def loss_of(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(())
        for a, b in itertools.pairwise(bounds):
            logp = torch.log_softmax(out[:, a:b], dim=1)
            total = total - (target[:, a:b] * logp).sum(1).mean()
        for u in range(len(spec.units)):  # the policies the teacher had: fp32 only so far
            a = spec.arch_width + u * len(PRECISIONS)
            logp = torch.log_softmax(out[:, a : a + len(PRECISIONS)], dim=1)
            total = total - (fp32 * logp).sum(1).mean()
        return total

    loss = torch.zeros(())
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), batch):
            idx = perm[start : start + batch]
            optimizer.zero_grad()
            loss = loss_of(net(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
        if progress:
            progress((epoch + 1) / epochs, f"epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}")
    with torch.no_grad():
        final = float(loss_of(net(x), y))
    t = np.clip(data.targets, 1e-12, 1)
    entropy = float(-(data.targets * np.log(t)).sum(1).mean())
    linear = [m for m in net if isinstance(m, torch.nn.Linear)]
    weights = [(m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()) for m in linear]
    return LearnedOptimizer(spec, weights), {
        "loss": final,
        "target_entropy": entropy,
        "examples": float(len(x)),
    }


SYNTHETIC = 4000  # synthetic devices drawn per training
PER_DEVICE = 16  # goals per synthetic device
PER_REAL = 300  # goals per real device (few of them, each worth more)
CHUNK = 500  # synthetic devices drawn at once (a 15,625-design table each)
HELD_OUT = 100  # fresh synthetic devices the trained network is judged on


def fit_learned(
    latency_ms: np.ndarray,
    names: list[str],
    accuracy: np.ndarray,
    options: np.ndarray,
    fingerprint_rows: np.ndarray,
    spec: Spec,
    synthetic: int = SYNTHETIC,
    epochs: int = 40,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
    measured: np.ndarray | None = None,
) -> LearnedOptimizer:
    """Train the learned optimizer on real devices and synthetic ones drawn from them.

    ``latency_ms``: designs x real devices; the generator is fitted on the devices that
    measured every design (the others still teach, on the rows they measured), and of them
    only on those ``measured`` marks (default: all) where the table is a model's
    predictions: a model extrapolating far from what its device measured would teach the
    generator rankings no device has. The model's
    spec carries its figures: training loss, example counts, time, and the synthetic
    devices' realism against the real ones.
    """
    from search.synthetic import DeviceGenerator, realism

    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    full = np.isfinite(latency_ms).all(axis=0)
    if measured is not None:
        full &= np.asarray(measured, dtype=bool)
    say = progress or (lambda fraction, note: None)
    parts = [examples(latency_ms, accuracy, options, fingerprint_rows, spec, PER_REAL, rng)]
    drawn = np.zeros((len(latency_ms), 0))
    figures: dict[str, object] = {"real_devices": names}
    if synthetic and full.sum() >= 2:
        generator = DeviceGenerator.fit(
            one_hot(options, spec.choices),
            latency_ms[:, full],
            [n for n, f in zip(names, full, strict=True) if f],
        )
        for start in range(0, synthetic, CHUNK):
            table = generator.sample(min(CHUNK, synthetic - start), rng)
            if start == 0:
                drawn = table[:, :200]
            parts.append(
                examples(table, accuracy, options, fingerprint_rows, spec, PER_DEVICE, rng)
            )
            say(0.3 * (start + CHUNK) / synthetic, f"{start + CHUNK} synthetic devices drawn")
        figures["realism"] = realism(latency_ms[:, full], drawn)
        unseen = generator.sample(HELD_OUT, np.random.default_rng(seed + 1))
    figures["synthetic_devices"] = synthetic if drawn.shape[1] else 0
    data = Examples(
        np.concatenate([p.inputs for p in parts]), np.concatenate([p.targets for p in parts])
    )
    model, fit = train(data, spec, epochs, seed, lambda f, note: say(0.3 + 0.7 * f, note))
    figures |= {"training": fit, "train_seconds": time.perf_counter() - started}
    if drawn.shape[1]:
        figures["unseen_synthetic"] = proposal_quality(
            model, unseen, accuracy, options, fingerprint_rows
        )
    model.spec.quality.update(figures)
    return model


def proposal_quality(
    model: LearnedOptimizer,
    latency_ms: np.ndarray,
    accuracy: np.ndarray,
    options: np.ndarray,
    fingerprint_rows: np.ndarray,
    percentiles: Sequence[float] = (10, 25, 50, 75),
) -> dict[str, float]:
    """How good the network's proposals are on devices whose whole table is known.

    For each device and budget (percentiles of its latencies): the best design's accuracy
    minus the best proposal's that truly fits (``regret``, points) and how often a proposal
    is within ``TOLERANCE`` of the best (``hit_rate``). This judges the network alone, as if
    the predictors that check its proposals were exact.
    """
    regrets, hits = [], []
    known = np.isfinite(accuracy)
    for j in range(latency_ms.shape[1]):
        lat = latency_ms[:, j]
        rows = np.flatnonzero(known & np.isfinite(lat))
        if not np.isfinite(lat[fingerprint_rows]).all():
            continue
        for pct in percentiles:
            budget = float(np.percentile(lat[rows], pct))
            best = float(accuracy[rows][lat[rows] <= budget].max())
            picks = rows[model.propose(lat[fingerprint_rows], Goals(budget), options[rows])]
            fits = picks[lat[picks] <= budget]
            got = float(accuracy[fits].max()) if len(fits) else float(accuracy[rows].min())
            regrets.append(best - got)
            hits.append(float(best - got <= TOLERANCE))
    return {
        "devices": float(latency_ms.shape[1]),
        "regret": float(np.mean(regrets)) if regrets else float("nan"),
        "hit_rate": float(np.mean(hits)) if hits else float("nan"),
    }


def fit_on_table(
    table: LatencyTable,
    accuracy: np.ndarray,
    space: SearchSpace,
    dataset: str,
    train: Sequence[str],
    synthetic: int = SYNTHETIC,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> LearnedOptimizer:
    """The learned optimizer of ``edgeopt eval optimize --method neural``: trained on the
    table's ``train`` columns (and synthetic devices drawn from them), never on the rest."""
    from devices.fingerprint import fingerprint

    position = {e: i for i, e in enumerate(table.encodings)}
    prints = fingerprint(space.name)
    missing = [e for e in prints if e not in position]
    if missing:
        raise ValueError(f"the fingerprint design {missing[0]} is not a row of the table")
    return fit_learned(
        np.stack([table.column(d) for d in train], axis=1),
        list(train),
        accuracy,
        space.decisions(table.encodings),
        np.array([position[e] for e in prints], dtype=int),
        new_spec(space, dataset, prints, accuracy),
        synthetic=synthetic,
        seed=seed,
        progress=progress,
    )
