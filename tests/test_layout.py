"""The house rules a reader relies on: ML packages never import the web layer, and the
compute packages depend one way only: app -> search -> predictors -> devices."""

from __future__ import annotations

import ast
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ml_packages_do_not_import_the_service() -> None:
    for package in ("devices", "predictors", "search"):
        for path in (ROOT / package).rglob("*.py"):
            assert "app" not in imported_modules(path), path


# The project's own top-level packages, and which of them each may import (itself included).
# Anything else imported is a third-party library and not this test's business.
FIRST_PARTY = {"app", "search", "predictors", "devices", "benchmarks", "tests"}
MAY_IMPORT = {
    "devices": {"devices"},
    "predictors": {"predictors", "devices"},
    "search": {"search", "predictors", "devices"},
    "app": {"app", "search", "predictors", "devices"},
    "benchmarks": {"benchmarks", "app", "search", "predictors", "devices"},
}


def test_every_import_follows_an_allowed_arrow() -> None:
    """Every .py file of a package, imports inside functions included (``ast.walk``)."""
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted((imported_modules(path) & FIRST_PARTY) - allowed):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_arrow_table_covers_every_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "migrations"}
    assert packages <= set(MAY_IMPORT), packages - set(MAY_IMPORT)


def test_every_operation_declares_the_error_body(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            ref = operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/ErrorBody"), (method, path)
    assert client.get("/docs").status_code == 200


def test_compose_runs_the_api_on_postgres_with_health_checks() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"postgres", "api"}
    api = services["api"]
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert api["environment"]["EDGEOPT_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert "healthcheck" in services["postgres"] and "healthcheck" in api
    assert (
        'CMD ["edgeopt", "up"]' in (ROOT / "Dockerfile").read_text()
    )  # upgrade, import, train, serve


def _typed(schema: dict) -> bool:
    if "$ref" in schema:
        return True
    if schema.get("type") == "array":
        return _typed(schema.get("items", {}))
    if "anyOf" in schema:
        return all(_typed(s) or s.get("type") == "null" for s in schema["anyOf"])
    return False


def test_every_json_answer_has_a_declared_model(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    untyped = []
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for code, response in operation["responses"].items():
                body = response.get("content", {}).get("application/json")
                if code.startswith("2") and body is not None and not _typed(body["schema"]):
                    untyped.append(f"{method.upper()} {path} {code}")
    assert not untyped, untyped
