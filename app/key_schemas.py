"""What the key-management endpoints (``/keys``) read and answer, typed for the schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.schemas import NAME_PATTERN, UtcDateTime

DeviceName = Annotated[str, Field(min_length=1, max_length=120, pattern=NAME_PATTERN)]


class KeyCreate(BaseModel):
    """A new key: ``devices`` makes it an agent key for those devices (scope ``write``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=120, examples=["raspi4 agent"])
    scope: Literal["read", "write", "admin"] = "write"
    devices: list[DeviceName] | None = Field(
        default=None, max_length=100, examples=[["raspi4-ort-2t"]]
    )


class KeyRead(BaseModel):
    """A stored key; never its token (only ``prefix``, its first characters)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    scopes: list[str]
    devices: list[str] | None
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None


class KeyCreated(KeyRead):
    """The new key with its token: shown once, never stored, not retrievable later."""

    token: str
