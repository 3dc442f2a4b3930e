"""API keys: tokens stored hashed, scopes that imply one another, agent keys bound to devices.

A token is ``eok_`` and 32 random bytes (URL-safe base64), shown once when the key is
created. The database keeps its SHA-256 and its first characters (``prefix``, not secret).
A fast hash is enough here, unlike for passwords: a token is random, so there is no
dictionary to try, and 256 bits are not guessed one hash at a time. A request's token is
found by its prefix and its hash compared in constant time.

Scopes are ordered, each implying the ones before it: ``read`` < ``write`` < ``admin``.
Writes need ``write``, key management ``admin``, reads ``read`` only when the service is
configured so. A key created with devices is an *agent key*: it registers, leases and posts
results for those devices only, and may do no other write.

The keys in ``EDGEOPT_API_KEYS`` keep working as bootstrap admin keys: they let the first
admin create stored keys over the API (the CLI needs no key: it works on the database).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.domain_errors import Forbidden, InvalidInput, NotFound, Unauthorized
from app.models import ApiKey, utcnow

TOKEN_PREFIX = "eok_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8  # "eok_" and the token's first 8 random characters
SCOPES = ("read", "write", "admin")  # each implies the ones before it
HEADER = "X-API-Key"
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]*$")  # as app.schemas.NAME_PATTERN
MAX_NAME = 120


@dataclass(frozen=True)
class Caller:
    """The key a request came with: a stored key (``key_id``) or a bootstrap key (None)."""

    key_id: int | None
    name: str
    scopes: frozenset[str]
    devices: tuple[str, ...] | None = None  # None: any device

    @property
    def is_agent(self) -> bool:
        return self.devices is not None

    @property
    def scope(self) -> str:
        """The highest scope held (the others are implied by it)."""
        return max(self.scopes & set(SCOPES), key=SCOPES.index, default="none")

    def serves(self, device: str) -> bool:
        return self.devices is None or device in self.devices

    def describe(self) -> str:
        """``key 'ci' (3)``, ``agent key 'raspi' (4) for raspi4-ort-2t``."""
        ident = f"{self.key_id}" if self.key_id is not None else "from EDGEOPT_API_KEYS"
        if self.devices is None:
            return f"key {self.name!r} ({ident})"
        return f"agent key {self.name!r} ({ident}) for {', '.join(self.devices)}"


BOOTSTRAP = "bootstrap"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_prefix(token: str) -> str:
    return token[:PREFIX_LENGTH]


def granted(scope: str) -> list[str]:
    """Every scope ``scope`` grants, itself included, in order."""
    if scope not in SCOPES:
        raise InvalidInput(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    return list(SCOPES[: SCOPES.index(scope) + 1])


def matches_any(given: str, keys: Iterable[str]) -> bool:
    """Whether ``given`` is one of ``keys``, compared with every one in constant time."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given.encode(), key.encode())
    return ok


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything stored here is UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _check_devices(scope: str, devices: Sequence[str]) -> list[str] | None:
    if not devices:
        return None
    if scope != "write":
        raise InvalidInput(
            f"devices are for agent keys, whose scope is write (not {scope}): an agent "
            "leases tasks and posts results"
        )
    for name in devices:
        if len(name) > MAX_NAME or not DEVICE_NAME.match(name):
            raise InvalidInput(
                f"device name {name!r} is not a device name (letters, digits and ._:+-, "
                f"at most {MAX_NAME} characters)"
            )
    return list(dict.fromkeys(devices))


def create_key(
    session: Session, name: str, scope: str, devices: Sequence[str] = ()
) -> tuple[ApiKey, str]:
    """Store a new key and return it with its token, which is not stored and not shown again."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        raise InvalidInput(f"a key's name must have 1 to {MAX_NAME} characters")
    scopes = granted(scope)
    token = new_token()
    key = ApiKey(
        name=name,
        prefix=token_prefix(token),
        key_hash=hash_token(token),
        scopes=scopes,
        devices=_check_devices(scope, devices),
        created_at=utcnow(),
    )
    session.add(key)
    session.flush()
    return key, token


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)).all())


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key from now on; revoking it again keeps the first revocation's time."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def _stored(session: Session, token: str) -> ApiKey | None:
    digest = hash_token(token)
    found = None
    for key in session.scalars(select(ApiKey).where(ApiKey.prefix == token_prefix(token))):
        if hmac.compare_digest(digest, key.key_hash):
            found = key
    return found


def authenticate(
    factory: sessionmaker[Session], token: str | None, bootstrap: Sequence[str]
) -> Caller:
    """The caller a token names; 401 when it names none (missing, unknown or revoked).

    Bootstrap keys are checked first and need no database; a stored key is read in a
    session of its own, so checking a key never holds the request's write lock.
    """
    if not token:
        raise Unauthorized(
            f"this endpoint needs an API key in the {HEADER} header (an admin creates one "
            "with `edgeopt keys create`; the server's EDGEOPT_API_KEYS are admin keys)",
        )
    if matches_any(token, bootstrap):
        return Caller(None, BOOTSTRAP, frozenset(SCOPES))
    key = None
    if token.startswith(TOKEN_PREFIX):
        with factory() as session:
            key = _stored(session, token)
    if key is None:
        raise Unauthorized("the API key is not valid")
    if key.revoked_at is not None:
        raise Unauthorized(f"the API key {key.prefix}... was revoked at {_aware(key.revoked_at)}")
    devices = tuple(key.devices) if key.devices is not None else None
    return Caller(key.id, key.name, frozenset(key.scopes), devices)


def require_scope(caller: Caller, scope: str, agent_route: bool = False) -> Caller:
    """403 unless the caller holds ``scope``; agent keys only on the routes agents use."""
    if scope not in caller.scopes:
        raise Forbidden(
            f"the {caller.describe()} has scope {caller.scope}; this endpoint needs {scope}",
        )
    if caller.is_agent and not agent_route and scope != "read":
        raise Forbidden(
            f"the {caller.describe()} may only register its devices, lease their tasks and "
            "post their results",
        )
    return caller


def require_device(caller: Caller, device: str) -> None:
    """403 unless the caller's key may serve ``device``."""
    if not caller.serves(device):
        raise Forbidden(f"the {caller.describe()} may not serve device {device!r}")
