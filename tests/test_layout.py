"""The house rules of docs/architecture.md, checked: ML packages never import the web layer
or its libraries, the packages depend one way only (app -> search -> predictors -> devices;
migrations read app's models), no module-level import cycles, and ceilings on module and
function size that only go down."""

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
FIRST_PARTY = {"app", "search", "predictors", "devices", "benchmarks", "tests", "migrations"}
MAY_IMPORT = {
    "devices": {"devices"},
    "predictors": {"predictors", "devices"},
    "search": {"search", "predictors", "devices"},
    "app": {"app", "search", "predictors", "devices", "migrations"},  # db.py finds the scripts
    "benchmarks": {"benchmarks", "app", "search", "predictors", "devices"},
    "migrations": {"migrations", "app"},  # env.py reads the models' metadata, nothing else
}
COMPUTE = ("devices", "predictors", "search")
# Libraries of the web, the database and the queue: the service's, never a compute package's.
SERVICE_LIBRARIES = {"sqlalchemy", "alembic", "fastapi", "starlette", "pydantic", "huey", "redis"}
# Ceilings the code meets today, lowered as the big modules are split: a new feature that
# needs more goes into a new module or function instead.
MAX_MODULE_LINES = 640
MAX_FUNCTION_LINES = 175
MAX_PARAMETERS = 16


def test_every_import_follows_an_allowed_arrow() -> None:
    """Every .py file of a package, imports inside functions included (``ast.walk``)."""
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            for name in sorted((imported_modules(path) & FIRST_PARTY) - allowed):
                wrong.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_arrow_table_covers_every_package() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages | {"migrations"} <= set(MAY_IMPORT), packages - set(MAY_IMPORT)


def test_compute_packages_know_no_web_database_or_queue() -> None:
    """Arrays and values in, arrays and values out: the service does the loading."""
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for package in COMPUTE
        for path in sorted((ROOT / package).rglob("*.py"))
        for name in sorted(imported_modules(path) & SERVICE_LIBRARIES)
    ]
    assert not wrong, "\n".join(wrong)


# The HTTP and storage edges of the service hold no numerics: they check, load and shape.
EDGES = ("app/routers", "app/schemas.py", "app/optimize_schemas.py", "app/dashboard_schemas.py",
         "app/key_schemas.py", "app/repository.py", "app/queries.py")  # fmt: skip
NUMERICS = {"numpy", "scipy", "lightgbm", "torch", "sklearn"}


def test_routers_schemas_and_queries_hold_no_numerics() -> None:
    paths = [
        path
        for edge in (ROOT / e for e in EDGES)
        for path in (sorted(edge.rglob("*.py")) if edge.is_dir() else [edge])
    ]
    assert all(path.is_file() for path in paths) and len(paths) > len(EDGES)
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(imported_modules(path) & NUMERICS)
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_error_module_speaks_http_status() -> None:
    """Services and routers raise the project's errors (``app/domain_errors.py``); one table
    in ``app/errors.py`` maps them to status codes, one in ``app/cli_common.py`` to exits."""
    wrong = []
    for path in sorted((ROOT / "app").rglob("*.py")):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                call = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = getattr(call, "id", getattr(call, "attr", ""))
                if name in ("HTTPException", "ApiError"):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} raises {name}")
    assert not wrong, "\n".join(wrong)


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("app", *COMPUTE):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _top_level_imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """First-party modules a file imports when it is loaded (not inside functions, not for
    type checking only)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names & set(modules)


def test_no_import_cycles_between_modules() -> None:
    """A cycle makes the load order matter and two rooms one; break it where it forms."""
    modules = _modules()
    graph = {m: _top_level_imports(p, modules) - {m} for m, p in modules.items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if module in done:
            return
        for nxt in sorted(graph[module]):
            visit(nxt, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_modules_and_functions_stay_within_their_ceilings() -> None:
    wrong = []
    for name, path in sorted(_modules().items()):
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            wrong.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            a = node.args
            count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs)
            count += (a.vararg is not None) + (a.kwarg is not None)
            count -= bool(a.args) and a.args[0].arg in ("self", "cls")
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if count > MAX_PARAMETERS or length > MAX_FUNCTION_LINES:
                wrong.append(f"{name}.{node.name}: {count} parameters, {length} lines")
    assert not wrong, "\n".join(wrong)


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
