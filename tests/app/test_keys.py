"""API keys: stored hashed, scoped (read < write < admin), revocable, agent keys bound to
their devices; the EDGEOPT_API_KEYS bootstrap keys still work; ``edgeopt keys`` manages them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from app.cli import cli
from app.db import get_engine, session_factory, unit_of_work
from app.keys import create_key
from app.main import create_app
from app.models import ApiKey, MeasurementTask
from app.settings import Settings, get_settings

DEVICE = {"name": "d", "kind": "cpu"}


def new_key(settings: Settings, scope: str, devices: tuple[str, ...] = ()) -> tuple[int, str]:
    """A stored key made as the CLI and POST /keys make it: (id, token)."""
    with unit_of_work(session_factory(settings.database_url)) as s:
        key, token = create_key(s, f"{scope} key", scope, devices)
        return key.id, token


def as_key(token: str) -> dict[str, str]:
    return {"X-API-Key": token}


def test_a_key_is_shown_once_and_stored_only_as_its_hash(
    writer: TestClient, settings: Settings
) -> None:
    created = writer.post("/keys", json={"name": "ci", "scope": "write"})
    assert created.status_code == 201, created.text
    body = created.json()
    token = body["token"]
    assert token.startswith("eok_") and len(token) > 40
    assert body["prefix"] == token[:12] and body["scopes"] == ["read", "write"]

    # the database holds the token's SHA-256 and its prefix, never the token itself
    with get_engine(settings.database_url).connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).all()
    assert len(rows) == 1
    assert token not in repr(tuple(rows[0]))
    assert rows[0]._mapping["key_hash"] == hashlib.sha256(token.encode()).hexdigest()

    listed = writer.get("/keys")
    assert listed.status_code == 200
    assert token not in listed.text and "token" not in listed.json()[0]
    assert listed.json()[0]["prefix"] == token[:12]

    # the new key writes; its token is no longer anywhere to be read
    assert writer.post("/devices", json=DEVICE, headers=as_key(token)).status_code == 201


def test_missing_unknown_and_revoked_keys_are_401(writer: TestClient, settings: Settings) -> None:
    key_id, token = new_key(settings, "write")
    anonymous = TestClient(writer.app)
    assert anonymous.post("/devices", json=DEVICE).status_code == 401
    forged = "eok_" + "A" * 43
    assert anonymous.post("/devices", json=DEVICE, headers=as_key(forged)).status_code == 401
    # same prefix, different secret
    near = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert anonymous.post("/devices", json=DEVICE, headers=as_key(near)).status_code == 401

    assert anonymous.post("/devices", json=DEVICE, headers=as_key(token)).status_code == 201
    revoked = writer.delete(f"/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    refused = anonymous.patch("/devices/1", json={}, headers=as_key(token))
    assert refused.status_code == 401
    assert "revoked" in refused.json()["error"]["message"]
    assert writer.delete("/keys/999").status_code == 404


def test_each_scope_implies_the_ones_below_it(settings: Settings) -> None:
    read_id, read = new_key(settings, "read")
    _, write = new_key(settings, "write")
    _, admin = new_key(settings, "admin")
    closed = settings.model_copy(update={"reads_require_key": True})
    with TestClient(create_app(closed)) as client:
        assert client.get("/devices").status_code == 401
        for token in (read, write, admin):
            assert client.get("/devices", headers=as_key(token)).status_code == 200

        too_weak = client.post("/devices", json=DEVICE, headers=as_key(read))
        assert too_weak.status_code == 403
        assert too_weak.json()["error"] == {
            "status": 403,
            "code": "forbidden",
            "message": f"the key 'read key' ({read_id}) has scope read; this endpoint needs write",
            "details": [],
        }
        device = client.post("/devices", json=DEVICE, headers=as_key(write))
        assert device.status_code == 201
        assert client.get("/keys", headers=as_key(write)).status_code == 403
        assert client.post("/keys", json={"name": "x"}, headers=as_key(write)).status_code == 403

        # admin manages keys and writes too
        assert client.get("/keys", headers=as_key(admin)).status_code == 200
        made = client.post("/keys", json={"name": "x", "scope": "read"}, headers=as_key(admin))
        assert made.status_code == 201 and made.json()["scopes"] == ["read"]
        deleted = client.delete(f"/devices/{device.json()['id']}", headers=as_key(admin))
        assert deleted.status_code == 204


def test_the_environment_keys_are_bootstrap_admin_keys(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEOPT_API_KEYS", "first-admin-secret")
    from_env = Settings(database_url=settings.database_url, artifacts_dir=settings.artifacts_dir)
    with TestClient(create_app(from_env)) as client:
        made = client.post(
            "/keys", json={"name": "team", "scope": "admin"}, headers=as_key("first-admin-secret")
        )
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        assert client.get("/keys", headers=as_key(token)).status_code == 200
        assert client.get("/keys", headers=as_key("first-admin-secre")).status_code == 401


@pytest.fixture
def two_agents(writer: TestClient) -> dict[str, int]:
    """Two agent devices, registered with the bootstrap key (each gets its fingerprint tasks)."""
    ids = {}
    for name in ("pi-a", "pi-b"):
        response = writer.put(f"/agents/{name}", json={"kind": "cpu"})
        assert response.status_code == 200, response.text
        ids[name] = response.json()["id"]
    return ids


def test_an_agent_key_serves_only_its_devices(
    writer: TestClient, settings: Settings, two_agents: dict[str, int]
) -> None:
    _, token = new_key(settings, "write", ("pi-a",))
    agent = TestClient(writer.app, headers=as_key(token))
    a, b = two_agents["pi-a"], two_agents["pi-b"]

    assert agent.put("/agents/pi-a", json={"kind": "cpu", "threads": 2}).status_code == 200
    refused = agent.put("/agents/pi-b", json={"kind": "cpu"})
    assert refused.status_code == 403
    assert "may not serve device 'pi-b'" in refused.json()["error"]["message"]
    assert agent.post(f"/devices/{b}/tasks/lease", json={"agent": "x"}).status_code == 403

    mine = agent.post(f"/devices/{a}/tasks/lease", json={"agent": "x"}).json()
    assert len(mine) == 1
    result = {"agent": "x", "median_ms": 2.0}
    assert agent.post(f"/tasks/{mine[0]['id']}/result", json=result).status_code == 200

    # a task of the other device, leased by an unbound key: not this agent's to post
    theirs = writer.post(f"/devices/{b}/tasks/lease", json={"agent": "x"}).json()
    assert agent.post(f"/tasks/{theirs[0]['id']}/result", json=result).status_code == 403

    # an agent key does nothing but serve its devices
    assert agent.post("/devices", json=DEVICE).status_code == 403
    queued = agent.post(f"/devices/{a}/tasks", json={"space": "nb201", "designs": []})
    assert queued.status_code == 403
    assert agent.get(f"/devices/{a}/tasks").status_code == 200  # reads stay open


def test_only_the_key_that_leased_a_task_posts_its_result(
    writer: TestClient, settings: Settings, two_agents: dict[str, int]
) -> None:
    first_id, first = new_key(settings, "write", ("pi-a",))
    _, second = new_key(settings, "write")
    one = TestClient(writer.app, headers=as_key(first))
    two = TestClient(writer.app, headers=as_key(second))
    device = two_agents["pi-a"]

    leased = one.post(f"/devices/{device}/tasks/lease", json={"agent": "board"}).json()
    task = leased[0]["id"]
    with session_factory(settings.database_url)() as s:
        row = s.get(MeasurementTask, task)
        assert row is not None and row.lease_key_id == first_id

    # the same agent name with another key takes over neither the lease nor the result
    relet = two.post(f"/devices/{device}/tasks/lease", json={"agent": "board"}).json()
    assert task not in [t["id"] for t in relet]
    result = {"agent": "board", "median_ms": 2.0}
    stolen = two.post(f"/tasks/{task}/result", json=result)
    assert stolen.status_code == 409
    assert "another API key" in stolen.json()["error"]["message"]

    stored = one.post(f"/tasks/{task}/result", json=result)
    assert stored.status_code == 200 and stored.json()["duplicate"] is False


# -- edgeopt keys ------------------------------------------------------------------------


@pytest.fixture
def keys_cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    """The CLI on the test database, invoked in this process."""
    monkeypatch.setenv("EDGEOPT_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("EDGEOPT_ARTIFACTS_DIR", str(settings.artifacts_dir))
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def test_cli_creates_lists_and_revokes_keys(keys_cli: CliRunner, settings: Settings) -> None:
    created = keys_cli.invoke(
        cli, ["keys", "create", "--name", "raspi agent", "--scope", "write", "--device", "pi-a"]
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("eok_") and "\n" not in token  # the token alone on stdout
    assert "not be shown again" in created.stderr

    listed = keys_cli.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0
    assert token not in listed.stdout
    for shown in ("raspi agent", token[:12], "read,write", "pi-a", "1 keys, 1 active"):
        assert shown in listed.stdout

    with TestClient(create_app(settings)) as client:
        assert client.put("/agents/pi-a", json={}, headers=as_key(token)).status_code == 200
        with session_factory(settings.database_url)() as s:
            key_id = s.scalars(select(ApiKey.id)).one()
        revoked = keys_cli.invoke(cli, ["keys", "revoke", str(key_id)])
        assert revoked.exit_code == 0 and "revoked" in revoked.stdout
        assert client.put("/agents/pi-a", json={}, headers=as_key(token)).status_code == 401
    assert "0 active" in keys_cli.invoke(cli, ["keys", "list"]).stdout
    with session_factory(settings.database_url)() as s:
        assert s.scalars(select(ApiKey.revoked_at)).one() is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--name", "x", "--scope", "root"], "scope 'root' is not one of"),
        (["create", "--name", "x", "--scope", "admin", "--device", "d"], "scope is write"),
        (["create", "--name", "x", "--device", "bad name"], "is not a device name"),
        (["create", "--name", " "], "name must have 1 to 120 characters"),
        (["revoke", "999"], "no API key with id 999"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(
    keys_cli: CliRunner, args: list[str], message: str
) -> None:
    result = keys_cli.invoke(cli, ["keys", *args])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert result.stdout == ""
