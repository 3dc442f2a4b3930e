"""API keys over REST, for admins: create (the token is answered once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter

from app.db import commit
from app.deps import AdminAccess, ResourceId, SessionDep
from app.errors import ERROR_RESPONSES
from app.key_schemas import KeyCreate, KeyCreated, KeyRead
from app.keys import create_key, list_keys, revoke_key

router = APIRouter(prefix="/keys", tags=["keys"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=KeyCreated, dependencies=[AdminAccess])
def create(body: KeyCreate, session: SessionDep) -> KeyCreated:
    """Create a key; the answer's ``token`` is the only time the token is shown."""
    key, token = create_key(session, body.name, body.scope, body.devices or ())
    commit(session)
    return KeyCreated(**KeyRead.model_validate(key).model_dump(), token=token)


@router.get("", response_model=list[KeyRead], dependencies=[AdminAccess])
def list_all(session: SessionDep) -> list[KeyRead]:
    """Every key, revoked ones included, oldest first."""
    return [KeyRead.model_validate(k) for k in list_keys(session)]


@router.delete("/{key_id}", response_model=KeyRead, dependencies=[AdminAccess])
def revoke(key_id: ResourceId, session: SessionDep) -> KeyRead:
    """Revoke a key at once; it stays listed with its ``revoked_at``."""
    key = revoke_key(session, key_id)
    commit(session)
    return KeyRead.model_validate(key)
