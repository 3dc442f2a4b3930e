"""Expensive reads remembered per version of the data they read.

The agreement chart and next-measurements read every device's measurements and fit models
over them: seconds to over a minute on a large PostgreSQL registry, for requests that need
no key. Their answers are kept (the last ``MAX_ENTRIES`` asked) under a stamp of the data:
a repeated request costs the stamp's query, and any write that could change the answer
(a measurement added, rewritten or removed, a device added, changed or removed, a predictor
trained or removed) changes the stamp, so nothing stale is served.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Device, Measurement, Predictor

MAX_ENTRIES = 64
T = TypeVar("T")
_LOCK = threading.Lock()
_ANSWERS: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def data_stamp(session: Session) -> tuple[Any, ...]:
    """What changes whenever measurements, devices or predictors change: the database, the
    newest id, count and sum of the measurements (a rewrite keeps the id, not the sum), the
    devices' count and last update, the predictors' newest id and count."""
    measurements = session.execute(
        select(func.max(Measurement.id), func.count(), func.sum(Measurement.value))
    ).one()
    devices = session.execute(select(func.count(), func.max(Device.updated_at))).one()
    predictors = session.execute(select(func.max(Predictor.id), func.count())).one()
    url = str(session.get_bind().engine.url)
    return (url, *measurements, *devices, *predictors)


def remember(key: tuple[Any, ...], compute: Callable[[], T]) -> T:
    """The answer stored under ``key``, else ``compute()``'s, stored (the oldest dropped past
    ``MAX_ENTRIES``). Answers are shared between requests: callers must not change them."""
    with _LOCK:
        if key in _ANSWERS:
            _ANSWERS.move_to_end(key)
            return _ANSWERS[key]  # type: ignore[no-any-return]
    answer = compute()
    with _LOCK:
        _ANSWERS[key] = answer
        while len(_ANSWERS) > MAX_ENTRIES:
            _ANSWERS.popitem(last=False)
    return answer


def next_measurements(
    session: Session,
    artifacts_dir: Path,
    device: Device,
    space: str,
    metric: str,
    policy: str,
    count: int,
) -> dict[str, Any]:
    """``app.predictor_service.next_measurements``, remembered per data stamp."""
    from app.predictor_service import next_measurements as suggest

    key = ("next", device.id, space, metric, policy, count, *data_stamp(session))
    return remember(
        key, lambda: suggest(session, artifacts_dir, device, space, metric, policy, count)
    )
