"""The artifact store: where predictors, learned optimizers and exported models live.

Every artifact file is recorded in the registry's ``artifacts`` table when it is written:
its path relative to the artifacts folder, SHA-256 and size, and with
``EDGEOPT_ARTIFACT_STORE=database`` its bytes. Each process reads artifacts from its own
artifacts folder (``EDGEOPT_ARTIFACTS_DIR``) through :func:`local_path`, which makes sure
the files there are the recorded ones first: one missing is fetched from the store and
written into the folder (which is then a cache), and a file, local or fetched, whose bytes
differ from the recorded hash is refused (``UnusableArtifact``, 409) instead of loaded.
So workers on other machines need no shared folder, only the database and the queue.

``local`` (the default) records hashes only: the folder is the store, shared by every
process as before. Artifacts written before the table existed have no record and are read
as they are.

A process names its folder's store once, at start (:func:`attach`: the API's lifespan, the
CLI and ``edgeopt worker``); the services keep passing the folder. An artifact is checked
once per process: artifacts are never rewritten, and the loaders cache what they read.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.artifacts import write_file
from app.db import ConflictError, unit_of_work
from app.domain_errors import MissingArtifact, UnusableArtifact
from app.models import Artifact


@dataclass(frozen=True)
class Store:
    """The registry a folder's artifacts are recorded in, and whether it keeps their bytes."""

    factory: sessionmaker[Session]
    keeps_bytes: bool


_STORES: dict[Path, Store] = {}
_CHECKED: set[tuple[Path, str]] = set()  # (folder, artifact) found whole in this process


def _folder(folder: Path) -> Path:
    return folder.absolute()


def attach(folder: Path, factory: sessionmaker[Session], kind: str) -> None:
    """Make ``folder`` this process's copy of the store in the registry ``factory`` opens:
    ``database`` keeps the bytes of what is written, ``local`` only their hashes."""
    _STORES[_folder(folder)] = Store(factory, kind == "database")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(folder: Path, name: str) -> list[tuple[str, Path]]:
    """The files of artifact ``name``: itself, or every file in it when it is a folder."""
    path = folder / name
    if not path.is_dir():
        return [(name, path)]
    return [
        (f.relative_to(folder).as_posix(), f)
        for f in sorted(path.rglob("*"))
        if f.is_file() and not f.name.startswith(".")
    ]


def _write(path: Path, data: bytes) -> None:
    """``data`` into ``path``, whole or not at all (temporary file renamed into place)."""

    def put(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_file(path, put)


def record(session: Session, folder: Path, name: str) -> None:
    """Record artifact ``name`` (a file or a folder under ``folder``, just written) in the
    caller's transaction, which stores the row naming it: no row without its record."""
    store = _STORES.get(_folder(folder))
    keep = store is not None and store.keeps_bytes
    for key, path in _files(folder, name):
        data = path.read_bytes()
        digest = _sha256(data)
        session.add(
            Artifact(key=key, sha256=digest, size=len(data), content=data if keep else None)
        )


def local_path(folder: Path, name: str) -> Path:
    """``folder / name`` with every recorded file of the artifact there and whole: files
    missing are fetched from the store. Raises ``UnusableArtifact`` for a file whose bytes
    differ from its record, ``MissingArtifact`` for one the store has no copy of."""
    root = _folder(folder)
    path = folder / name
    store = _STORES.get(root)
    if store is None or (root, name) in _CHECKED:
        return path
    with store.factory() as s:
        files = s.execute(
            select(Artifact.key, Artifact.sha256).where(
                or_(Artifact.key == name, Artifact.key.startswith(f"{name}/", autoescape=True))
            )
        ).all()
        for key, digest in files:
            file = folder / key
            if file.is_file():
                if _sha256(file.read_bytes()) != digest:
                    raise UnusableArtifact(
                        f"artifact {key} in {folder} does not match the SHA-256 recorded when "
                        f"it was written ({digest[:12]}...): refused; "
                        + (
                            "remove the file to fetch the stored copy again"
                            if store.keeps_bytes
                            else "remove it and train it again (a model download exports again)"
                        )
                    )
                continue
            content = s.scalar(select(Artifact.content).where(Artifact.key == key))
            if content is None:
                raise MissingArtifact(
                    f"artifact {key} is not in this process's artifacts folder {folder}, and "
                    "the artifact store has no copy of it (it was written with "
                    "EDGEOPT_ARTIFACT_STORE=local): share that folder, or train it again with "
                    "EDGEOPT_ARTIFACT_STORE=database"
                )
            if _sha256(content) != digest:
                raise UnusableArtifact(
                    f"artifact {key}: the artifact store's copy does not match the SHA-256 "
                    f"recorded when it was written ({digest[:12]}...): refused; train it again"
                )
            _write(file, content)
    # Without a record (written before the table existed) it is read as it is, and asked
    # about once: a predictor or optimizer is recorded with its row, never after it.
    _CHECKED.add((root, name))
    return path


def share(folder: Path, name: str) -> None:
    """Record a file any process may write again by itself (an exported model), in its own
    transaction. The first record of a name wins: a copy written meanwhile on another
    machine is replaced here by the recorded bytes; where the store has none (``local``),
    the record takes this file (the folder's own copy was removed and written again)."""
    store = _STORES.get(_folder(folder))
    if store is None:
        return
    path = folder / name
    data = path.read_bytes()
    digest = _sha256(data)
    for _ in range(2):  # a record stored at the same moment by another process: read it
        try:
            with unit_of_work(store.factory) as s:
                row = s.get(Artifact, name)
                if row is None:
                    content = data if store.keeps_bytes else None
                    s.add(Artifact(key=name, sha256=digest, size=len(data), content=content))
                elif row.sha256 != digest:
                    if row.content is not None and _sha256(row.content) == row.sha256:
                        _write(path, row.content)
                    else:
                        row.sha256, row.size = digest, len(data)
                        row.content = data if store.keeps_bytes else None
            return
        except ConflictError:
            continue


def store_problem(session: Session, kind: str) -> str | None:
    """Why the artifact store cannot serve artifacts now, in words; None when it can."""
    if kind != "database":
        return None
    try:
        session.execute(select(Artifact.key).limit(1))
    except SQLAlchemyError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"artifact store (database) cannot be read: {first}"
    return None
