"""``edgeopt keys``: create, list and revoke API keys, on the database directly.

The CLI needs no key of its own: whoever can reach the database administers the service.
A new key's token goes to stdout alone (``TOKEN=$(edgeopt keys create ...)``), once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from app.cli_common import clear_errors, console, err
from app.db import check_schema, session_factory, unit_of_work
from app.keys import SCOPES, create_key, list_keys, revoke_key
from app.settings import get_settings

keys_cli = typer.Typer(
    help="API keys: scopes read < write < admin; agent keys serve named devices only.",
    no_args_is_help=True,
)


def _factory():  # type: ignore[no-untyped-def]
    settings = get_settings()
    settings.ensure_dirs()
    check_schema(settings.database_url)
    return session_factory(settings.database_url)


def _when(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


@keys_cli.command("create")
def create(
    name: Annotated[str, typer.Option(help="what the key is for, e.g. 'raspi4 agent'")],
    scope: Annotated[str, typer.Option(help=f"one of {', '.join(SCOPES)}")] = "write",
    device: Annotated[
        list[str] | None,
        typer.Option(help="a device this agent key serves (repeatable; scope write)"),
    ] = None,
) -> None:
    """Create a key and print its token, the only time it is shown."""
    with clear_errors(), unit_of_work(_factory()) as s:
        key, token = create_key(s, name, scope, device or ())
        key_id, prefix, devices = key.id, key.prefix, key.devices
    what = f"agent key for {', '.join(devices)}" if devices else f"{scope} key"
    err.print(
        f"created {what} {key_id} ({prefix}...); the token below is not stored and will not "
        "be shown again",
        markup=False,
        highlight=False,
    )
    typer.echo(token)


@keys_cli.command("list")
def list_cmd() -> None:
    """Every key with its prefix, scopes and devices (never a token)."""
    with clear_errors(), _factory()() as s:
        keys = list_keys(s)
    table = Table("id", "name", "prefix", "scopes", "devices", "created", "revoked")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix,
            ",".join(k.scopes),
            ",".join(k.devices) if k.devices is not None else "any",
            _when(k.created_at),
            _when(k.revoked_at),
        )
    console.print(table)
    console.print(f"{len(keys)} keys, {sum(k.revoked_at is None for k in keys)} active")


@keys_cli.command("revoke")
def revoke(key_id: Annotated[int, typer.Argument(help="the key's id (edgeopt keys list)")]) -> None:
    """Revoke a key: requests with it get 401 from now on."""
    with clear_errors(), unit_of_work(_factory()) as s:
        key = revoke_key(s, key_id)
        name, revoked = key.name, key.revoked_at
    console.print(f"key {key_id} ({name}) revoked at {_when(revoked)}")
