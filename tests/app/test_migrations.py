"""Alembic is the schema's only author; the service refuses a database that is behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import inspect

from app.db import (
    SchemaBehindError,
    alembic_config,
    check_schema,
    current_revision,
    get_engine,
    head_revision,
    upgrade,
)
from app.main import create_app
from app.models import Base
from app.settings import Settings
from tests.conftest import BACKENDS, fresh_database


@pytest.fixture(params=BACKENDS)
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    gen = fresh_database(request.param, tmp_path)
    url = next(gen)
    yield url
    get_engine(url).dispose()
    next(gen, None)


def test_upgrade_creates_every_table_and_downgrade_removes_them(empty_url: str) -> None:
    assert current_revision(empty_url) is None
    upgrade(empty_url)
    assert current_revision(empty_url) == head_revision(empty_url)
    tables = set(inspect(get_engine(empty_url)).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables

    command.downgrade(alembic_config(empty_url), "base")
    get_engine(empty_url).dispose()
    assert set(inspect(get_engine(empty_url)).get_table_names()) <= {"alembic_version"}
    upgrade(empty_url)
    check_schema(empty_url)


def test_models_match_the_migrations(empty_url: str) -> None:
    upgrade(empty_url)
    command.check(alembic_config(empty_url))  # raises if a model changed without a migration


def test_service_refuses_a_database_that_is_behind(empty_url: str, tmp_path: Path) -> None:
    with pytest.raises(SchemaBehindError, match="edgeopt db upgrade"):
        check_schema(empty_url)
    settings = Settings(database_url=empty_url, artifacts_dir=tmp_path)
    with (
        pytest.raises(SchemaBehindError, match="edgeopt db upgrade"),
        TestClient(create_app(settings)),
    ):
        pass
