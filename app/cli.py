"""The ``edgeopt`` command line: serve, migrate, import, inspect devices and jobs."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import app.learned_service
import app.measure_service
import app.optimize_service
import app.predictor_service
import app.reference_import
import app.refine_service
import app.training_service
import app.verify_service  # noqa: F401  (registers the verify-optimization job kind)
from app.cli_common import clear_errors, console, fail
from app.cli_deploy import register as register_deploy
from app.cli_eval import eval_cli
from app.cli_jobs import ready_factory, run_job
from app.cli_keys import keys_cli
from app.cli_registry import devices_cli, jobs_cli, optimizer_cli, predictors_cli, predictors_train
from app.db import (
    current_revision,
    head_revision,
    unit_of_work,
    upgrade,
)
from app.jobs import JobRunner
from app.models import Device, Optimization
from app.predictor_service import stale_predictors
from app.settings import get_settings, redact_url
from app.training_service import TrainParams, missing_scopes
from devices.reference import REFERENCE_TABLES

cli = typer.Typer(
    help="EdgeOpt: the best network design for an edge device.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(devices_cli, name="devices")
cli.add_typer(jobs_cli, name="jobs")
cli.add_typer(eval_cli, name="eval")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(predictors_cli, name="predictors")
cli.add_typer(optimizer_cli, name="optimizer")
register_deploy(cli)  # train, quantize, verify-model, export-code


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    settings = get_settings()
    settings.ensure_dirs()
    with clear_errors():
        upgrade(settings.database_url, revision)
        console.print(f"database at revision {current_revision(settings.database_url)}")


@db_cli.command("current")
def db_current() -> None:
    """Show the database's revision and the one this code needs."""
    url = get_settings().database_url
    with clear_errors():
        console.print(f"database: {current_revision(url)}  code: {head_revision(url)}")


@cli.command("import-reference")
def import_reference_cmd(
    space: Annotated[
        list[str] | None,
        typer.Option(
            help=f"table to import (repeatable; default all): {', '.join(REFERENCE_TABLES)}"
        ),
    ] = None,
) -> None:
    """Load the shipped reference devices and measurements; running it twice changes nothing."""
    spaces = space or list(REFERENCE_TABLES)
    bad = [s for s in spaces if s not in REFERENCE_TABLES]
    if bad:
        raise fail(f"unknown space {bad[0]!r}; choose from {', '.join(REFERENCE_TABLES)}")
    with clear_errors():
        job = run_job("import-reference", {"spaces": spaces})
    table = Table("space", "devices created", "unchanged", "measurements added", "accuracy added")
    for name, st in (job.result or {}).items():
        table.add_row(
            name,
            str(st["devices_created"]),
            str(st["devices_unchanged"]),
            str(st["measurements_inserted"]),
            str(st["accuracy_records_inserted"]),
        )
    console.print(table)
    console.print(f"job {job.id} succeeded")


@cli.command("serve")
def serve(
    host: Annotated[str | None, typer.Option(help="default: EDGEOPT_HOST")] = None,
    port: Annotated[int | None, typer.Option(help="default: EDGEOPT_PORT")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="API processes")] = 1,
) -> None:
    """Start the API (docs at /docs). Refuses a database whose schema is behind.

    With EDGEOPT_JOB_WORKERS_MODE=process (the default) each API process also starts
    EDGEOPT_JOB_WORKERS `edgeopt worker` processes, and stops them when it stops.
    """
    import uvicorn

    settings = get_settings()
    with clear_errors():
        ready_factory()
    console.print(
        f"EdgeOpt on http://{host or settings.host}:{port or settings.port} (API docs at /docs)"
    )
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        workers=workers,
    )


@cli.command("up")
def up(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """The main job: migrate the database, import the reference data, start the service."""
    db_upgrade("head")
    import_reference_cmd(None)
    first = TrainParams.model_validate(
        {"min_rows": 200, "min_accuracy_rows": FIRST_START_ACCURACY_ROWS}
    )
    with clear_errors(), ready_factory()() as s:
        stale = len(stale_predictors(s))
        missing = missing_scopes(s, first)
    if stale:
        typer.echo(f"{stale} predictors were trained on an older design encoding: retraining")
        predictors_train(None, None, first.min_rows, first.min_accuracy_rows)
    elif missing:  # a first start, or one stopped while it trained
        typer.echo(f"{missing} predictors to train before serving")
        predictors_train(None, None, first.min_rows, first.min_accuracy_rows, missing_only=True)
    serve(host, port)


@cli.command("measure")
def measure_cmd(
    space: Annotated[str, typer.Option(help="nb201 or fbnet")] = "nb201",
    count: Annotated[int, typer.Option(help="designs to sample")] = 10,
    design: Annotated[list[str] | None, typer.Option(help="a design encoding (repeatable)")] = None,
    policy: Annotated[
        list[str] | None, typer.Option(help="fp32, int8 or one per unit (repeatable)")
    ] = None,
    threads: Annotated[list[int] | None, typer.Option(help="ORT threads (repeatable)")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    replace: Annotated[bool, typer.Option(help="measure again what is stored")] = False,
    host: Annotated[str, typer.Option(help="device name prefix: HOST-ort-cpu-{threads}t")] = "host",
    pin_threads: Annotated[bool, typer.Option(help="each ORT thread on its own CPU")] = False,
    busy_wait: Annotated[
        float | None,
        typer.Option(
            min=0,
            max=3600,
            help="seconds to wait for other processes to leave the CPU before a new baseline "
            "gives up (default: EDGEOPT_BUSY_WAIT_S, 120)",
        ),
    ] = None,
) -> None:
    """Export and measure designs on this host with ONNX Runtime (a job, progress bar)."""
    import logging
    import sys

    from app.domain_errors import DomainError

    params: dict[str, Any] = {
        "space": space,
        "count": count,
        "seed": seed,
        "replace": replace,
        "host": host,
        "pin_threads": pin_threads,
        "policies": policy or ["fp32"],
        "threads": threads or [1],
        "busy_wait_s": busy_wait,
    }
    if design:
        params["designs"] = design

    # A foreseeable failure (a busy machine, a device of other hardware) is the job's one-line
    # error printed below; the traceback the job runner logs for a service's operators would
    # bury it. Unforeseen errors keep their traceback.
    def unforeseen(record: logging.LogRecord) -> bool:
        return not isinstance(sys.exc_info()[1], DomainError)

    runner_log = logging.getLogger("app.jobs")
    runner_log.addFilter(unforeseen)
    try:
        with clear_errors():
            job = run_job("measure-host", params)
    finally:
        runner_log.removeFilter(unforeseen)
    r = job.result or {}
    console.print(
        f"job {job.id}: {r.get('measurements')} measurements on {', '.join(r.get('devices', {}))}"
        f" ({r.get('skipped')} already stored, {r.get('unstable')} unstable,"
        f" {r.get('designs_per_minute')} designs/min)"
    )


@cli.command("optimize")
def optimize_cmd(
    device: Annotated[str, typer.Option(help="registered device name or id")],
    space: Annotated[str, typer.Option(help="nb201 or fbnet")] = "nb201",
    max_latency_ms: Annotated[float | None, typer.Option(help="latency budget (ms)")] = None,
    max_energy_mj: Annotated[float | None, typer.Option(help="energy budget (mJ)")] = None,
    min_accuracy: Annotated[float | None, typer.Option(help="accuracy floor (%)")] = None,
    objective: Annotated[
        str, typer.Option(help="accuracy, latency, energy, weighted")
    ] = "accuracy",
    method: Annotated[
        str,
        typer.Option(
            help="proxy, search, neural (the learned optimizer, checked by the predictors; "
            "search answers when its proposals miss) or auto (neural where a learned "
            "optimizer exists, else proxy-or-transfer search)"
        ),
    ] = "auto",
    dataset: Annotated[
        str | None, typer.Option(help="default cifar10 (nb201), digits (fbnet)")
    ] = None,
    policy: Annotated[
        list[str] | None,
        typer.Option(help='policies to consider (repeatable); "per-unit": every per-unit one'),
    ] = None,
    confidence: Annotated[float, typer.Option(help="P(goals met) asked for")] = 0.9,
    max_measurements: Annotated[
        int,
        typer.Option(
            help="designs the device may measure first (measure-and-refine: this host or an "
            "agent's device); 0 answers from predictions"
        ),
    ] = 0,
    out: Annotated[Path | None, typer.Option(help="write the design's ONNX model here")] = None,
    verify: Annotated[bool, typer.Option(help="measure it on this host (host devices)")] = False,
    include_degenerate: Annotated[
        bool,
        typer.Option(
            help="also consider degenerate cells (output disconnected; left out by default)"
        ),
    ] = False,
) -> None:
    """The best design for a device within its goals; prints it and writes the ONNX model."""
    from app.optimize_service import optimization_view, optimize
    from app.schemas import OptimizeRequest
    from app.task_service import model_file
    from app.verify_service import where_measured

    with clear_errors():
        request = OptimizeRequest.model_validate(
            {
                "device": device,
                "space": space,
                **({"dataset": dataset} if dataset else {}),
                "method": method,
                "policies": policy or ["fp32", "int8"],
                "confidence": confidence,
                "max_measurements": max_measurements,
                "include_degenerate": include_degenerate,
                "goals": {
                    "max_latency_ms": max_latency_ms,
                    "max_energy_mj": max_energy_mj,
                    "min_accuracy": min_accuracy,
                    "objective": objective,
                },
            }
        )
        settings = get_settings()
        factory = ready_factory()
        if max_measurements:
            from app.refine_service import refine_job

            with factory() as s:  # the API's checks, before the job: one answer at both doors
                kind, params = refine_job(s, request, settings.measure_budget_s)
            job = run_job(kind, params)
            optimization_id = int((job.result or {})["optimization_id"])
            with factory() as s:
                record = s.get(Optimization, optimization_id)
                assert record is not None
                view = optimization_view(record)
        else:
            with unit_of_work(factory) as s:
                record = optimize(s, settings.artifacts_dir, request, settings.optuna_storage)
                view = optimization_view(record)
    console.print(f"optimization {view['id']}: {view['message']}")
    d = view["design"]
    if d is None:
        console.print("no design chosen; the closest:")
        for c in view["closest"]:
            accuracy = f"{c['accuracy']['value']:.2f}%" if c["accuracy"] else "no accuracy model"
            console.print(
                f"  {c['arch']}  policy {c['policy']}  {accuracy}  "
                f"{c['latency_ms']['value']:.3g} ms  P(goals met) = {c['probabilities']['all']:.3f}"
            )
        raise typer.Exit(2)
    console.print(f"design: {d['arch']}  policy: {d['policy']}")
    for key in ("accuracy", "latency_ms", "energy_mj"):
        e = d[key]
        if e is not None:
            console.print(
                f"  {key}: {e['value']:.3f} (90% interval {e['low']:.3f} .. {e['high']:.3f})"
            )
    if d.get("measured_latency_ms") is not None:
        console.print(f"  measured latency: {d['measured_latency_ms']:.3f} ms on the device")
    if (view.get("verification") or {}).get("bound_ms") is not None:
        bound = view["verification"]["bound_ms"]
        console.print(f"  with its measured spread: under {bound:.3f} ms at P = {confidence:g}")
    console.print(f"  P(goals met) = {d['probabilities']['all']:.3f}; {view['elapsed_s']:.2f} s")
    optimizer = view["answered_by"].get("optimizer") or {}
    if optimizer.get("method") == "neural":
        console.print(f"  answered by the learned optimizer {optimizer['optimizer_id']} "
                      f"(version {optimizer['version']})")  # fmt: skip
    elif optimizer.get("decision"):
        console.print(f"  answered by search: {optimizer['decision']}")
    if view.get("measurements"):
        console.print(f"  {view['measurements']} designs measured on the device")
    for note in view["notes"]:
        console.print(f"  note: {note}")
    if out:
        with clear_errors():
            out.write_bytes(
                model_file(settings.artifacts_dir, space, d["arch"], d["policy"]).read_bytes()
            )
        console.print(
            f"wrote {out}: untrained weights, a latency probe; train it with "
            f"`edgeopt train --optimization {view['id']}`, then `edgeopt quantize`"
        )
    if verify:
        with clear_errors(), factory() as s:
            owner = s.get(Device, view["device_id"]) if view["device_id"] else None
            if owner is None or where_measured(s, owner) != "host":
                raise ValueError(
                    "--verify measures on this host; this device is not this machine measured"
                    " by edgeopt measure (an agent's device: POST /optimizations/ID/verify)"
                )
        job = run_job(
            "verify-optimization",
            {"optimization_id": view["id"], "budget_s": settings.measure_budget_s},
        )
        v = job.result or {}
        console.print(
            f"verified: measured {v['measured_latency_ms']:.3f} ms vs predicted "
            f"{v['predicted_latency_ms']:.3f} ms ({v['error_pct']:+.1f}%), "
            f"within interval: {v['within_interval']}, meets budget: {v['meets_budget']}"
        )
        if v.get("meets_budget") is False:
            console.print(
                f"[bold red]missed the latency budget[/]: {v['measured_latency_ms']:.3f} ms > "
                f"{max_latency_ms:g} ms; this design is not within its budget on the device"
            )


@cli.command("worker")
def worker_cmd(
    study: Annotated[
        str | None,
        typer.Option(help="add trials to this Optuna study (created by /optimize) instead"),
    ] = None,
    trials: Annotated[int, typer.Option(help="trials this worker adds (with --study)")] = 100,
    threads: Annotated[
        int | None, typer.Option(min=1, max=64, help="jobs run at once (default 1)")
    ] = None,
    parent_pid: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Run queued jobs (EDGEOPT_QUEUE_URL), as many workers as wanted, on any machine that
    reaches the database and the queue; with --study, add trials to a shared Optuna study
    (EDGEOPT_OPTUNA_STORAGE) instead. Stops on SIGTERM / Ctrl-C, handing its running jobs
    back to the queue."""
    if study is None:
        with clear_errors():
            _run_worker(threads or 1, parent_pid)
        return
    from app.schemas import OptimizeRequest
    from app.study_service import study_evaluator, study_policies
    from search.optuna_search import open_study, run_trials, study_request

    with clear_errors():
        settings = get_settings()
        factory = ready_factory()
        shared = open_study(settings.optuna_storage, study)
        if "request" not in shared.user_attrs:
            raise ValueError(f"study {study!r} was not created by /optimize (no request stored)")
        request = OptimizeRequest.model_validate(study_request(shared))
        with factory() as s:
            score = study_evaluator(s, settings.artifacts_dir, request)
            policies, per_unit = study_policies(request)
            worker = f"worker-{os.getpid()}"
            run_trials(
                shared, request.space, policies, score, trials, request.confidence, worker,
                per_unit,
            )  # fmt: skip
    console.print(f"{worker} added {trials} trials to study {study}")


def _run_worker(threads: int, parent_pid: int | None) -> None:
    """Consume the job queue until SIGTERM / SIGINT, or until ``parent_pid`` is gone."""
    import signal

    from app.observability import setup_logging
    from app.queue import JobQueue

    settings = get_settings()
    setup_logging(settings.log_format)
    with clear_errors():
        factory = ready_factory()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    runner = JobRunner(
        factory,
        threads,
        settings.job_heartbeat_s,
        settings.artifacts_dir,
        queue=JobQueue(settings.job_queue_url),
        stale_after_s=settings.job_stale_after_s,
        max_attempts=settings.job_max_attempts,
    )
    queue_url = redact_url(settings.job_queue_url)
    console.print(f"worker {runner.owner}: {threads} thread(s) on {queue_url}")
    while not stop.wait(0.5):
        if parent_pid is not None and os.getppid() != parent_pid:  # the server died
            break
    runner.shutdown(timeout_s=60)
    console.print(f"worker {runner.owner} stopped")


@cli.command("agent")
def agent_cmd(
    server: Annotated[str, typer.Option(help="EdgeOpt server URL")],
    device: Annotated[str, typer.Option(help="this device's registry name")],
    api_key: Annotated[str, typer.Option(envvar="EDGEOPT_API_KEY", help="a write key")],
    threads: Annotated[int, typer.Option(help="ONNX Runtime threads")] = 1,
    journal: Annotated[
        Path | None,
        typer.Option(
            help="where unacknowledged results wait (default: a journal of this agent's own "
            "under ~/.edgeopt, one per agent running on this machine)"
        ),
    ] = None,
    share_journal: Annotated[
        bool,
        typer.Option(help="share --journal, and with it one agent identity, with other agents"),
    ] = False,
    until_empty: Annotated[bool, typer.Option(help="exit when the queue is empty")] = False,
    poll_s: Annotated[float, typer.Option(help="seconds between polls when idle")] = 2.0,
    round_size: Annotated[int, typer.Option(help="timed runs per round and session")] = 10,
    budget_s: Annotated[float, typer.Option(help="most seconds per design")] = 20.0,
) -> None:
    """Measure this machine for a server: lease tasks, measure with ONNX Runtime, post results."""
    from devices.agent import Agent, AgentError, Journal
    from devices.measure import Protocol

    if share_journal and journal is None:
        raise fail("--share-journal needs --journal: the journal the agents share")
    protocol = Protocol(threads=threads, round_size=round_size, budget_s=budget_s)
    try:
        held = (
            Journal(journal, share=share_journal)
            if journal is not None
            else Journal.own(Path.home() / ".edgeopt", device)
        )
        worker = Agent(
            server, device, api_key, held, protocol, poll_s=poll_s, on_event=console.print
        )
        done = worker.run(until_empty=until_empty)
    except AgentError as exc:
        raise fail(str(exc)) from exc
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    console.print(f"measured {done} designs")


@cli.command("measure-accuracy")
def measure_accuracy_cmd(
    space: Annotated[str, typer.Option(help="nb201 or fbnet")] = "nb201",
    count: Annotated[int, typer.Option(help="designs to sample")] = 5,
    design: Annotated[list[str] | None, typer.Option(help="a design encoding (repeatable)")] = None,
    policy: Annotated[list[str] | None, typer.Option(help="precision(s) (repeatable)")] = None,
    epochs: Annotated[int, typer.Option()] = 4,
    seed: Annotated[int, typer.Option()] = 0,
    mixed: Annotated[bool, typer.Option(help="also the named mixed policies")] = False,
    random_policies: Annotated[
        int, typer.Option(help="further mixed policies drawn per design")
    ] = 0,
) -> None:
    """Train designs on scikit-learn's digits; store fp32 and quantized ONNX accuracy."""
    params: dict[str, Any] = {
        "space": space,
        "count": count,
        "seed": seed,
        "epochs": epochs,
        "policies": policy or ["fp32", "int8"],
        "mixed": mixed,
        "random_policies": random_policies,
    }
    if design:
        params["designs"] = design
    with clear_errors():
        job = run_job("measure-accuracy", params)
    r = job.result or {}
    console.print(f"job {job.id}: {r.get('records')} accuracy records ({r.get('skipped')} kept)")


# The shipped FBNet digits accuracies are 150 designs: each took a training run to measure.
FIRST_START_ACCURACY_ROWS = 100


def main() -> None:
    cli()
