"""``edgeopt devices``, ``jobs``, ``predictors`` and ``optimizer``: list and show what the
registry holds, and train its predictors and learned optimizer (as jobs)."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import func, select

from app.cli_common import JobProgress, clear_errors, console
from app.cli_jobs import ready_factory, run_job
from app.db import unit_of_work
from app.domain_errors import Conflict
from app.jobs import ACTIVE, mark_stale_jobs
from app.models import Device, Job, Measurement, Predictor
from app.queries import find_device, get_job, measurement_counts
from app.settings import get_settings

devices_cli = typer.Typer(help="The device registry.", no_args_is_help=True)
jobs_cli = typer.Typer(help="Long-running jobs.", no_args_is_help=True)
predictors_cli = typer.Typer(help="Latency, energy and accuracy predictors.", no_args_is_help=True)
optimizer_cli = typer.Typer(
    help="The learned optimizer: device features plus goals to a design.", no_args_is_help=True
)


@predictors_cli.command("train")
def predictors_train(
    space: Annotated[list[str] | None, typer.Option(help="space (repeatable); default all")] = None,
    target: Annotated[
        list[str] | None, typer.Option(help="latency_ms, energy_mj or accuracy (repeatable)")
    ] = None,
    min_rows: Annotated[int, typer.Option(help="fewest designs to fit a model")] = 200,
    min_accuracy_rows: Annotated[
        int | None, typer.Option(help="fewest designs for an accuracy model (default min-rows)")
    ] = None,
    missing_only: Annotated[bool, typer.Option(help="only scopes with no predictor yet")] = False,
) -> None:
    """Train a new version of every predictor the registry has enough data for."""
    params: dict[str, Any] = {
        "min_rows": min_rows,
        "min_accuracy_rows": min_accuracy_rows,
        "missing_only": missing_only,
    }
    if space:
        params["spaces"] = space
    if target:
        params["targets"] = target
    with clear_errors():
        job = run_job("train-predictors", params)
    console.print(f"job {job.id} trained {(job.result or {}).get('count', 0)} predictors")


@predictors_cli.command("list")
def predictors_list(space: Annotated[str | None, typer.Option()] = None) -> None:
    """Predictors with their held-out quality (newest first); ``stable +-10%`` only where some
    of a device's measurements stayed flagged unstable (scored over the others)."""
    with clear_errors():
        factory = ready_factory()
        with factory() as s:
            query = select(Predictor, Device.name).outerjoin(Device).order_by(Predictor.id.desc())
            if space:
                query = query.where(Predictor.space == space)
            rows = s.execute(query).all()
    table = Table(
        "id",
        "target",
        "space",
        "device / dataset",
        "policy",
        "v",
        "spearman",
        "+-10%",
        "stable +-10%",
        "coverage",
    )

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.3f}"

    for p, device in rows:
        q = p.quality
        table.add_row(
            str(p.id),
            p.target,
            p.space,
            device or p.dataset or "",
            p.policy,
            str(p.version),
            f"{q.get('spearman', float('nan')):.4f}",
            share(q.get("within_10pct")),
            share(q.get("within_10pct_reliable")),
            f"{q.get('coverage', float('nan')):.3f}",
        )
    console.print(table)


@optimizer_cli.command("train")
def optimizer_train(
    space: Annotated[str, typer.Option(help="nb201 (or fbnet, where accuracy exists)")] = "nb201",
    dataset: Annotated[str, typer.Option(help="the accuracy it maximises")] = "cifar10",
    synthetic: Annotated[int, typer.Option(help="synthetic devices to learn from")] = 4000,
    epochs: Annotated[int, typer.Option()] = 40,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Train the learned optimizer on the registry's devices and synthetic ones (a job)."""
    from app.learned_service import TrainOptimizerParams, check_trainable

    with clear_errors():
        params = TrainOptimizerParams(
            space=space, dataset=dataset, synthetic=synthetic, epochs=epochs, seed=seed
        )
        check_trainable(params)
        job = run_job("train-optimizer", params.model_dump())
    result = job.result or {}
    console.print(
        f"learned optimizer {result.get('optimizer_id')} ({space}, {dataset}) version "
        f"{result.get('version')}: {result.get('artifact')}"
    )


@optimizer_cli.command("list")
def optimizer_list() -> None:
    """Trained learned optimizers with their figures (newest first)."""
    from app.models import LearnedOptimizer

    with clear_errors():
        factory = ready_factory()
        with factory() as s:
            rows = s.scalars(select(LearnedOptimizer).order_by(LearnedOptimizer.id.desc())).all()
    table = Table(
        "id", "space", "dataset", "v", "real devices", "synthetic", "realism distance",
        "unseen regret", "unseen hit rate", "train s",
    )  # fmt: skip
    for r in rows:
        q = r.quality
        unseen = q.get("unseen_synthetic") or {}
        realism = q.get("realism") or {}
        table.add_row(
            str(r.id),
            r.space,
            r.dataset,
            str(r.version),
            str(len(r.devices)),
            str(q.get("synthetic_devices", 0)),
            f"{realism.get('distance_synthetic', float('nan')):.3f}",
            f"{unseen.get('regret', float('nan')):.3f}",
            f"{unseen.get('hit_rate', float('nan')):.3f}",
            f"{q.get('train_seconds', float('nan')):.0f}",
        )
    console.print(table)


@devices_cli.command("list")
def devices_list(
    kind: Annotated[str | None, typer.Option(help="cpu, gpu, npu, dsp, fpga, asic, mcu")] = None,
    q: Annotated[str | None, typer.Option(help="name contains")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 500,
) -> None:
    """List registered devices with their measurement counts."""
    with clear_errors():
        factory = ready_factory()
        with factory() as s:
            query = select(Device).order_by(Device.name)
            if kind:
                query = query.where(Device.kind == kind)
            if q:
                query = query.where(Device.name.contains(q, autoescape=True))
            devices = s.scalars(query.limit(limit)).all()
            grouped = s.execute(
                select(Measurement.device_id, func.count()).group_by(Measurement.device_id)
            )
            counts = {device_id: n for device_id, n in grouped}
    table = Table("id", "name", "kind", "hardware", "runtime", "batch", "measurements")
    for d in devices:
        table.add_row(
            str(d.id),
            d.name,
            d.kind,
            d.hardware or "",
            d.runtime or "",
            str(d.batch_size or ""),
            str(counts.get(d.id, 0)),
        )
    console.print(table)
    console.print(f"{len(devices)} devices")


@devices_cli.command("show")
def devices_show(name: Annotated[str, typer.Argument(help="device name or id")]) -> None:
    """A device's profile and its measurement counts."""
    with clear_errors():
        factory = ready_factory()
        with factory() as s:
            d = find_device(s, name)
            counts = measurement_counts(s, d.id)
    for field in (
        "id",
        "name",
        "kind",
        "hardware",
        "runtime",
        "runtime_version",
        "precision",
        "batch_size",
        "threads",
        "source",
        "description",
        "specs",
    ):
        console.print(f"[bold]{field}[/]: {getattr(d, field)}")
    for c in counts:
        console.print(f"[bold]measurements[/]: {c.space} {c.policy} {c.metric}: {c.count}")


@jobs_cli.command("list")
def jobs_list(limit: Annotated[int, typer.Option(min=1)] = 20) -> None:
    with clear_errors():
        factory = ready_factory()
        mark_stale_jobs(factory, get_settings().job_stale_after_s, get_settings().job_max_attempts)
        with factory() as s:
            jobs = s.scalars(select(Job).order_by(Job.id.desc()).limit(limit)).all()
    table = Table("id", "kind", "status", "progress", "message", "created")
    for j in jobs:
        table.add_row(
            str(j.id),
            j.kind,
            j.status,
            f"{j.progress:.0%}",
            j.message or "",
            str(j.created_at)[:19],
        )
    console.print(table)


def _load_job(job_id: int) -> Job:
    factory = ready_factory()
    mark_stale_jobs(factory, get_settings().job_stale_after_s, get_settings().job_max_attempts)
    with factory() as s:
        job = get_job(s, job_id)
        _ = job.logs
        return job


@jobs_cli.command("show")
def jobs_show(job_id: int) -> None:
    """A job's status, result and log."""
    with clear_errors():
        job = _load_job(job_id)
    console.print(
        f"job {job.id} {job.kind}: [bold]{job.status}[/] {job.progress:.0%} {job.message or ''}"
    )
    if job.error:
        console.print(f"error: {job.error}")
    if job.result:
        console.print(job.result)
    for line in job.logs:
        console.print(f"  {str(line.created_at)[:19]} {line.level}: {line.line}")


@jobs_cli.command("watch")
def jobs_watch(job_id: int, interval: float = 0.5) -> None:
    """Follow a job's progress until it ends; exit code 1 unless it succeeded."""
    with clear_errors():
        job = _load_job(job_id)
        with JobProgress(f"job {job.id} {job.kind}") as shown:
            while True:
                shown.update(job.progress, job.message or job.status)
                if job.status not in ACTIVE:
                    break
                time.sleep(interval)
                job = _load_job(job_id)
    console.print(f"job {job.id} {job.status}" + (f": {job.error}" if job.error else ""))
    if job.status != "succeeded":
        raise typer.Exit(1)


@jobs_cli.command("cancel")
def jobs_cancel(job_id: int) -> None:
    with clear_errors():
        factory = ready_factory()
        with unit_of_work(factory) as s:
            job = get_job(s, job_id)
            if job.status not in ACTIVE:
                raise Conflict(f"job {job_id} already ended ({job.status})")
            job.cancel_requested = True
    console.print(f"cancel requested for job {job_id}")
