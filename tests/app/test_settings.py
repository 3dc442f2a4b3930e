"""Settings helpers."""

from __future__ import annotations

import pytest

from app.settings import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://edgeopt:s3cret@db:5432/reg?options=-csearch_path%3Dx",
            "postgresql+psycopg://edgeopt:***@db:5432/reg?options=-csearch_path%3Dx",
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://default:s3%40cret@cache/1", "rediss://default:***@cache/1"),
        (
            "postgresql://u@db/reg?password=s3cret&sslmode=require",
            "postgresql://u@db/reg?password=***&sslmode=require",
        ),
        ("sqlite:///.edgeopt/edgeopt.db", "sqlite:///.edgeopt/edgeopt.db"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("postgresql://u:s3cret@[::1/reg", "postgresql://***@[::1/reg"),  # not parseable
    ],
)
def test_a_url_is_shown_without_its_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown
