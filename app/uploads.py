"""Parse and validate a bulk measurement upload (JSON or CSV), all rows before any write."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any

from pydantic import ValidationError

from app.domain_errors import InvalidInput, TooLarge, UnsupportedMediaType
from app.schemas import MeasurementIn
from search.policy import NETWORK_SPACES, UnsupportedPolicy, unit_precisions
from search.spaces import InvalidEncoding, get_space

CSV_COLUMNS = ("space", "arch", "policy", "metric", "value", "repeats", "dispersion", "protocol")
_MAX_ERRORS = 20


def _rows_from_json(body: bytes) -> list[Any]:
    try:
        # NaN and Infinity parse; validation refuses them naming the row and field
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidInput("body is nested too deeply to be a measurement upload") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise InvalidInput(f"body has a value that cannot be read: {exc}") from None
    if isinstance(data, dict) and "measurements" in data:
        data = data["measurements"]
    if not isinstance(data, list):
        raise InvalidInput('JSON body must be a list of measurements or {"measurements": [...]}')
    return data


def _rows_from_csv(body: bytes) -> list[Any]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"CSV body is not UTF-8: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
        unknown = [c for c in header if c not in CSV_COLUMNS]
        missing = [c for c in ("space", "arch", "metric", "value") if c not in header]
        if unknown or missing:
            raise InvalidInput(
                f"CSV header must use the columns {list(CSV_COLUMNS)}"
                f"{f'; unknown: {unknown}' if unknown else ''}"
                f"{f'; missing: {missing}' if missing else ''}",
            )
        rows: list[Any] = []
        for raw in reader:
            if None in raw:
                raise InvalidInput(
                    f"CSV row {len(rows) + 1} has more cells than the header",
                    [{"row": len(rows) + 1, "message": "too many cells"}],
                )
            row: dict[str, Any] = {k: v for k, v in raw.items() if v not in (None, "")}
            for key in ("value", "dispersion", "repeats"):  # CSV cells are text; JSON is typed
                with contextlib.suppress(KeyError, ValueError):
                    number = float(row[key])
                    row[key] = int(number) if key == "repeats" and number.is_integer() else number
            if "protocol" in row:
                # Text that is not JSON stays text; validation then names the field.
                with contextlib.suppress(json.JSONDecodeError):
                    row["protocol"] = json.loads(row["protocol"])
            rows.append(row)
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV at line {reader.line_num}: {exc}") from exc
    return rows


def parse_upload(body: bytes, content_type: str, max_rows: int) -> list[MeasurementIn]:
    """Validate every row; raise one 422 naming each bad row and field (up to 20)."""
    if content_type.startswith("text/csv"):
        raw_rows = _rows_from_csv(body)
    elif content_type.startswith("application/json") or not content_type:
        raw_rows = _rows_from_json(body)
    else:
        raise UnsupportedMediaType(
            f"unsupported content type {content_type!r}: send application/json or text/csv"
        )
    if not raw_rows:
        raise InvalidInput("the upload has no rows")
    if len(raw_rows) > max_rows:
        raise TooLarge(f"the upload has {len(raw_rows)} rows; the limit is {max_rows}")
    rows: list[MeasurementIn] = []
    errors: list[dict[str, object]] = []
    for i, raw in enumerate(raw_rows, start=1):
        try:
            row = MeasurementIn.model_validate(raw)
            space = get_space(row.space)
        except ValidationError as exc:
            errors += [
                {"row": i, "field": ".".join(str(p) for p in e["loc"]) or None, "message": e["msg"]}
                for e in exc.errors()
            ]
        except ValueError as exc:
            errors.append({"row": i, "field": "space", "message": str(exc)})
        else:
            try:
                row.arch = space.canonical(row.arch)
            except InvalidEncoding as exc:
                errors.append({"row": i, "field": "arch", "message": str(exc)})
            if row.space in NETWORK_SPACES:  # spaces whose networks have quantization units
                try:
                    unit_precisions(row.space, row.policy)
                except UnsupportedPolicy as exc:
                    errors.append({"row": i, "field": "policy", "message": str(exc)})
            rows.append(row)
        if len(errors) >= _MAX_ERRORS:
            break
    if errors:
        first = errors[0]
        raise InvalidInput(
            f"row {first['row']}, field {first['field']}: {first['message']}; nothing was stored",
            errors,
        )
    seen: dict[tuple[str, str, str, str], int] = {}
    for i, row in enumerate(rows, start=1):
        key = (row.space, row.arch, row.policy, row.metric.value)
        if key in seen:
            raise InvalidInput(
                f"row {i} repeats the design and metric of row {seen[key]}; nothing was stored",
                [{"row": i, "field": "arch", "message": "duplicate row"}],
            )
        seen[key] = i
    return rows
