"""``edgeopt eval``: reproducible quality figures on any wide latency table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from app.cli_common import clear_errors, console, progress_bar
from predictors.evaluation import evaluate_transfer
from predictors.metrics import QUALITY_KEYS
from predictors.tables import LatencyTable, read_tables
from search.spaces import SearchSpace, get_space

eval_cli = typer.Typer(
    help="Benchmark predictors and search on measured tables.", no_args_is_help=True
)


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"a device is listed twice in {text!r}")
    return names


def _load(
    latency: Path, archs: Path, space: str, train: str, test: str
) -> tuple[SearchSpace, LatencyTable, list[str], list[str]]:
    """The space, the validated table and the device lists (every one a column of it)."""
    search_space = get_space(space)
    table = read_tables(latency, archs, search_space)
    train_names, test_names = _names(train), _names(test)
    for name in train_names + test_names:
        table.column(name)
    return search_space, table, train_names, test_names


@eval_cli.command("transfer")
def eval_transfer(
    latency: Annotated[Path, typer.Option(help="wide CSV: arch_id, one column per device (ms)")],
    archs: Annotated[Path, typer.Option(help="CSV with arch_id and arch (the encoding)")],
    space: Annotated[str, typer.Option(help="nb201 or fbnet")],
    train: Annotated[str, typer.Option(help="comma-separated training (basis) devices")],
    test: Annotated[str, typer.Option(help="comma-separated unseen test devices")],
    shots: Annotated[int, typer.Option(help="measured designs per test device")] = 10,
    seeds: Annotated[int, typer.Option(help="repetitions with different shot choices")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Few-shot latency transfer to unseen devices, beside the ridge baseline."""
    with clear_errors():
        search_space, table, train_names, test_names = _load(latency, archs, space, train, test)
        cost = search_space.features(table.encodings)
        with progress_bar() as bar:
            task = bar.add_task("transfer", total=1.0, note="")
            result = evaluate_transfer(
                table,
                cost,
                train_names,
                test_names,
                shots,
                seeds,
                progress=lambda done, total: bar.update(task, completed=done / total),
                degenerate=search_space.degenerate(table.encodings),
                design_features=search_space.design_features(table.encodings),
            )
    out = Table("device", *QUALITY_KEYS, "baseline spearman", "coverage@90")
    rows = [*result["devices"].items(), ("mean", result["mean"])]
    for name, q in rows:
        base = result["baseline"]["devices"].get(name, result["baseline"]["mean"])
        cover = result["intervals"]["coverage"]
        cov = cover.get(name, sum(cover.values()) / len(cover))
        out.add_row(
            name,
            *(f"{q[k]:.4f}" if k != "mape" else f"{q[k]:.2f}%" for k in QUALITY_KEYS),
            f"{base['spearman']:.4f}",
            f"{cov:.3f}",
        )
    console.print(out)
    if json_out:
        baseline = {"devices": result["baseline"]["devices"], "mean": result["baseline"]["mean"]}
        doc = {**result, "baseline": baseline}
        json_out.write_text(json.dumps(doc, indent=2))
        console.print(f"wrote {json_out}")


@eval_cli.command("suite")
def eval_suite(
    space: Annotated[str, typer.Option(help="nb201, fbnet or ofa_mbv3")],
    shots: Annotated[str, typer.Option(help="comma-separated shot counts")] = "5,10,20",
    seeds: Annotated[int, typer.Option(help="repetitions with different shot choices")] = 5,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Few-shot transfer across device classes: every split of the suite, baseline beside."""
    from devices.reference import load_reference
    from predictors.suite import evaluate_suite, suite_splits

    with clear_errors():
        try:
            counts = [int(n) for n in shots.split(",")]
        except ValueError:
            raise ValueError(f"--shots must be whole numbers, got {shots!r}") from None
        search_space = get_space(space)
        ref = load_reference(space)
        table = LatencyTable(
            ref.arch_ids, ref.encodings, [d.column for d in ref.devices], ref.latency_ms, {}
        )
        splits = suite_splits(ref.devices)
        with progress_bar() as bar:
            task = bar.add_task(f"suite ({space})", total=1.0, note="")
            result = evaluate_suite(
                table,
                search_space.features(ref.encodings),
                splits,
                counts,
                seeds,
                progress=lambda done, total: bar.update(task, completed=done / total),
                degenerate=search_space.degenerate(ref.encodings),
                design_features=search_space.design_features(ref.encodings),
            )
    out = Table("split", "shots", "test devices", "Spearman", "ridge baseline", "coverage@90")
    for run in result["runs"]:
        out.add_row(
            run["split"],
            str(run["setup"]["shots"]),
            str(len(run["setup"]["test"])),
            f"{run['mean']['spearman']:.4f}",
            f"{run['baseline']['mean']['spearman']:.4f}",
            f"{run['intervals']['mean_coverage']:.3f}",
        )
    console.print(out)
    for n, figures in result["summary"].items():
        console.print(
            f"{n} shots: geometric mean Spearman {figures['geomean_spearman']:.4f} "
            f"(ridge baseline {figures['baseline_geomean_spearman']:.4f}), "
            f"{figures['devices_below_baseline']} devices below the baseline - 0.01"
        )
    if json_out:
        json_out.write_text(json.dumps({"space": space, **result}, indent=2))
        console.print(f"wrote {json_out}")


@eval_cli.command("optimize")
def eval_optimize(
    latency: Annotated[Path, typer.Option(help="wide CSV: arch_id, one column per device (ms)")],
    archs: Annotated[Path, typer.Option(help="CSV with arch_id, arch and the accuracy column")],
    space: Annotated[str, typer.Option(help="nb201 or fbnet")],
    train: Annotated[str, typer.Option(help="comma-separated registered (basis) devices")],
    test: Annotated[str, typer.Option(help="comma-separated new devices")],
    accuracy_column: Annotated[
        str, typer.Option(help="accuracy column of --archs")
    ] = "acc_cifar10",
    budgets: Annotated[str, typer.Option(help="latency budgets as percentiles")] = "10,25,50,75",
    max_measurements: Annotated[
        int,
        typer.Option(
            help="designs measured per device; 0 answers from the fingerprint's measurements "
            "alone, as a profile-only POST /optimize does"
        ),
    ] = 20,
    seeds: Annotated[int, typer.Option()] = 5,
    method: Annotated[str, typer.Option(help="proxy, search, auto or neural")] = "auto",
    confidence: Annotated[
        float, typer.Option(help="probability of meeting the budget asked for, as in /optimize")
    ] = 0.9,
    model: Annotated[
        Path | None,
        typer.Option(help="neural: a learned optimizer artifact; default: train one on --train"),
    ] = None,
    synthetic: Annotated[
        int, typer.Option(help="neural: synthetic devices drawn from --train to learn from")
    ] = 4000,
    model_out: Annotated[
        Path | None, typer.Option(help="neural: write the trained optimizer's artifact here")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the figures here")] = None,
) -> None:
    """Regret and budget violations of /optimize's methods on unseen devices.

    ``--method neural`` answers every query with the learned optimizer and with search, so
    the table shows the gap between them and both times per answer.
    """
    from devices.fingerprint import fingerprint
    from search.evaluation import evaluate_optimize

    with clear_errors():
        search_space, table, train_names, test_names = _load(latency, archs, space, train, test)
        if accuracy_column not in table.columns:
            raise ValueError(f"{archs} has no accuracy column {accuracy_column!r}")
        try:
            percentiles = [float(b) for b in budgets.split(",")]
        except ValueError:
            raise ValueError(f"--budgets must be numbers, got {budgets!r}") from None
        learned = None
        if method == "neural":
            learned = _learned(model, table, search_space, accuracy_column, train_names, synthetic)
        with progress_bar() as bar:
            task = bar.add_task(f"optimize ({method})", total=1.0, note="")
            result = evaluate_optimize(
                table,
                table.columns[accuracy_column],
                search_space.features(table.encodings),
                train_names,
                test_names,
                percentiles,
                max_measurements,
                seeds,
                method,
                fingerprint=fingerprint(space) if max_measurements == 0 else (),
                confidence=confidence,
                progress=lambda done, total: bar.update(task, completed=done / total),
                degenerate=search_space.degenerate(table.encodings),
                learned=learned,
                options=search_space.decisions(table.encodings) if learned else None,
                design_features=search_space.design_features(table.encodings),
            )
        if learned is not None:
            result["learned"] = learned.spec.quality
            if model_out is not None and model is None:
                learned.save(model_out)
    out = Table(
        "device", "regret", "violations", "no answer", "s / query",
        "baseline regret", "baseline violations",
    )  # fmt: skip
    base = result["baseline"]
    for name, q in [*result["devices"].items(), ("mean", result["mean"])]:
        b = base["devices"].get(name, base["mean"])
        out.add_row(
            name,
            f"{q['regret']:.3f}",
            f"{q['violation_rate']:.1%}",
            f"{q['no_answer_rate']:.1%}",
            f"{q['seconds_per_query']:.3f}",
            f"{b['regret']:.3f}",
            f"{b['violation_rate']:.1%}",
        )
    console.print(out)
    if method == "neural":
        m = result["mean"]
        console.print(
            f"neural vs search: accuracy gap {m['gap_to_search']:.3f} points; violations "
            f"{m['violation_rate']:.1%} vs {m['search_violation_rate']:.1%}; search answered "
            f"{m['fallback_rate']:.1%} of queries; median "
            f"{1000 * m['median_seconds_per_query']:.1f} ms vs "
            f"{1000 * m['search_median_seconds_per_query']:.1f} ms per answer; a 20-budget "
            f"front {1000 * m['front_seconds']:.1f} ms"
        )
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
        console.print(f"wrote {json_out}")


def _learned(
    model: Path | None,
    table: LatencyTable,
    search_space: SearchSpace,
    accuracy_column: str,
    train: list[str],
    synthetic: int,
):
    """The learned optimizer to evaluate: the given artifact, or one trained on ``train``."""
    from search.learned import LearnedOptimizer, fit_on_table

    if model is not None:
        if not model.is_file():
            raise ValueError(f"no learned optimizer artifact at {model}")
        return LearnedOptimizer.load(model)
    with progress_bar() as bar:
        task = bar.add_task("learned optimizer (training)", total=1.0, note="")
        return fit_on_table(
            table,
            table.columns[accuracy_column],
            search_space,
            accuracy_column.removeprefix("acc_"),
            train,
            synthetic=synthetic,
            progress=lambda f, note: bar.update(task, completed=f, note=note),
        )
