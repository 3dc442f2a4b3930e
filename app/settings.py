"""One settings class, read from ``EDGEOPT_*`` environment variables.

Defaults work offline on a laptop: a SQLite file and an artifacts folder under
``./.edgeopt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from devices.normaliser import BUSY_WAIT_S

DEFAULT_HOME = Path(".edgeopt")
HIDDEN = "***"
_SECRET_PARAMS = {"password", "passwd", "pwd", "sslpassword", "secret", "token"}


def redact_url(url: str) -> str:
    """``url`` as it may be printed or logged: its password (in the user part or a query
    parameter such as ``password=``) replaced by ``***``, everything else as given.

    Database and queue URLs carry credentials; an error message or a start line that
    shows them puts the password in every log they reach.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not a URL this can take apart: hide whatever precedes an '@'
        return re.sub(r"://[^/@]*@", f"://{HIDDEN}@", url)
    netloc = parts.netloc
    user, at, host = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.split(':', 1)[0]}:{HIDDEN}@{host}"
    query = "&".join(
        f"{key}={HIDDEN}" if sep and key.lower() in _SECRET_PARAMS else f"{key}{sep}{value}"
        for key, sep, value in (p.partition("=") for p in parts.query.split("&"))
    )
    # put back into the text as given (urlunsplit would rewrite sqlite:/// as sqlite:/)
    if netloc != parts.netloc:
        url = url.replace(f"//{parts.netloc}", f"//{netloc}", 1)
    if query != parts.query:
        url = url.replace(f"?{parts.query}", f"?{query}", 1)
    return url


@dataclass(frozen=True)
class DbTimeouts:
    """How long a request waits on the database before it answers 503.

    Without them a database that accepts connections but never answers held every request
    (probes included) for minutes; with them the service says it is unavailable in seconds.
    """

    connect_s: float = 5.0  # to open a connection (PostgreSQL's connect_timeout, at least 2)
    statement_s: float = 30.0  # one statement on PostgreSQL (statement_timeout); 0: none
    pool_s: float = 10.0  # for a free connection of the pool when all are in use
    busy_s: float = 30.0  # SQLite: for another connection's write lock (busy_timeout)


class Settings(BaseSettings):
    """Service configuration; every field maps to ``EDGEOPT_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="EDGEOPT_", extra="ignore")

    database_url: str = Field(
        default=f"sqlite:///{DEFAULT_HOME / 'edgeopt.db'}",
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host:5432/db",
    )
    artifacts_dir: Path = Field(default=DEFAULT_HOME / "artifacts")
    artifact_store: Literal["local", "database"] = Field(
        default="local",
        description="Where predictors, learned optimizers and exported models live: local "
        "(the artifacts folder only, shared by every process) or database (their bytes also "
        "in the registry; each process's artifacts folder is then a cache of it, so workers "
        "on other machines need no shared folder)",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated keys accepted in the X-API-Key header for writes",
    )
    reads_require_key: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    max_request_bytes: int = 32 * 1024 * 1024
    max_upload_rows: int = 200_000
    measure_budget_s: float = Field(
        default=20.0,
        gt=0,
        le=600,
        description="Seconds of timing per design when a job measures on this host "
        "(verification, measure-and-refine)",
    )
    busy_wait_s: float = Field(
        default=BUSY_WAIT_S,
        ge=0,
        le=3600,
        description="Seconds a host measurement waits for other processes to leave the CPU "
        "before it gives up timing a new device's reference baseline (edgeopt measure "
        "--busy-wait)",
    )
    job_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Jobs run at once: worker processes edgeopt serve starts (process mode), "
        "threads of the API process (thread mode)",
    )
    job_workers_mode: Literal["process", "thread", "external"] = Field(
        default="process",
        description="Who runs jobs: process (edgeopt serve starts edgeopt worker processes), "
        "external (workers started separately, on any machine), thread (the API process "
        "itself, on a private in-memory queue: for tests and development)",
    )
    db_connect_timeout_s: float = Field(
        default=DbTimeouts.connect_s,
        ge=1,
        le=300,
        description="Seconds to open a database connection before the request answers 503",
    )
    db_statement_timeout_s: float = Field(
        default=DbTimeouts.statement_s,
        ge=0,
        le=86400,
        description="Seconds one statement may run on PostgreSQL before it is cancelled and "
        "the request answers 503 (0: no limit)",
    )
    db_pool_timeout_s: float = Field(
        default=DbTimeouts.pool_s,
        gt=0,
        le=300,
        description="Seconds a request waits for a free pooled connection before it answers 503",
    )
    sqlite_busy_timeout_s: float = Field(
        default=DbTimeouts.busy_s,
        ge=0,
        le=3600,
        description="Seconds a SQLite writer waits for another's write lock before the request "
        "answers 503 with Retry-After",
    )
    artifacts_min_free_mb: float = Field(
        default=64.0,
        ge=0,
        description="Free space below which /readyz says the artifacts folder is full",
    )
    queue_url: str | None = Field(
        default=None,
        description="The job queue: redis://host:6379/0 or sqlite:///path; default a SQLite "
        "file next to a SQLite registry (else in the artifacts folder)",
    )
    job_heartbeat_s: float = 2.0
    job_stale_after_s: float = 15.0
    job_max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Starts a job gets when the workers running it die; then it is interrupted",
    )
    optuna_storage: str = Field(
        default=f"sqlite:///{DEFAULT_HOME / 'optuna.db'}",
        description="Optuna RDB storage shared by search workers; its own database or schema "
        "(Optuna keeps its own alembic_version table)",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="Service logs: one JSON object per line, or plain text lines",
    )
    suite_results_dir: Path = Field(
        default=Path("benchmarks/results/reference"),
        description="Folder of the cross-class transfer suite's results "
        "(transfer_suite_<space>.json, written by benchmarks/transfer_suite.py) that "
        "/ui/predictors shows; relative to the working directory",
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @property
    def db_timeouts(self) -> DbTimeouts:
        """The database timeouts, as ``app.db.get_engine`` takes them."""
        return DbTimeouts(
            connect_s=self.db_connect_timeout_s,
            statement_s=self.db_statement_timeout_s,
            pool_s=self.db_pool_timeout_s,
            busy_s=self.sqlite_busy_timeout_s,
        )

    @property
    def job_queue_url(self) -> str:
        """The queue's URL: ``queue_url``, or a SQLite file beside the registry."""
        if self.queue_url:
            return self.queue_url
        if self.database_url.startswith("sqlite:///"):
            db_path = Path(self.database_url.removeprefix("sqlite:///").split("?")[0])
            if str(db_path) not in ("", ":memory:"):
                return f"sqlite:///{db_path.with_name(db_path.stem + '-queue.db')}"
        return f"sqlite:///{self.artifacts_dir / 'queue.db'}"

    def as_environment(self) -> dict[str, str]:
        """These settings as ``EDGEOPT_*`` variables, for a child process to read the same."""
        env = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            if isinstance(value, list):
                value = ",".join(value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[f"EDGEOPT_{name.upper()}"] = str(value)
        env["EDGEOPT_QUEUE_URL"] = self.job_queue_url
        return env

    def ensure_dirs(self) -> None:
        """Create the local folders the defaults point at (SQLite file, artifacts)."""
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        for url in (self.database_url, self.optuna_storage):
            if url.startswith("sqlite:///"):
                db_path = Path(url.removeprefix("sqlite:///"))
                if str(db_path) not in ("", ":memory:"):
                    db_path.parent.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings; tests call ``get_settings.cache_clear()`` to re-read."""
    return Settings()
