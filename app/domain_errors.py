"""Errors the services raise, in the domain's words; one handler maps them to HTTP.

Services (optimize, predict, measure, tasks, uploads) know nothing of HTTP: they raise these,
``app/errors.py`` turns each into its status code and error body, and the CLI turns them into
a one-line message and a non-zero exit.
"""

from __future__ import annotations

from typing import ClassVar


class DomainError(Exception):
    """A foreseeable failure the caller can act on; ``details`` name fields or rows."""

    status: ClassVar[int] = 422

    def __init__(self, message: str, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidInput(DomainError):
    """The request names something malformed (an encoding, a policy, a value)."""

    status = 422


class NotFound(DomainError):
    """A device, job, optimization or predictor that does not exist."""

    status = 404


class UnknownDevice(NotFound):
    """No registered device has this name or id."""


class Conflict(DomainError):
    """The request contradicts stored state (a duplicate, a job in the wrong state)."""

    status = 409


class NoModel(DomainError):
    """No predictor (own, proxy or transfer) can answer for this metric and device."""

    status = 422


class UnusableArtifact(Conflict):
    """A recorded artifact (predictor, learned optimizer, exported model) whose bytes, in
    this process's artifacts folder or in the artifact store, differ from the SHA-256
    recorded when it was written: refused rather than used."""


class MissingArtifact(UnusableArtifact):
    """A recorded artifact in neither this process's artifacts folder nor the artifact
    store (written with the local store on a machine whose folder this one does not share)."""


class NotMeasurable(Conflict):
    """The device cannot run a measurement from here (a reference device, other hardware)."""


class Unauthorized(DomainError):
    """No API key, or one that is not valid (unknown or revoked)."""

    status = 401


class Forbidden(DomainError):
    """The caller's key may not do this."""

    status = 403


class TooLarge(DomainError):
    """A body or a request bigger than the service accepts."""

    status = 413


class UnsupportedMediaType(DomainError):
    """A body in a format the service does not read (an upload neither JSON nor CSV)."""

    status = 415


class Unavailable(DomainError):
    """A part the service needs (the database, the job queue, the artifact store or folder)
    does not answer: 503, naming the part."""

    status = 503


class HostBusy(DomainError):
    """Other work kept this machine's CPU busy for longer than a host measurement may wait.

    A passing condition, not a fault of the request: 503, measure again once it is quiet.
    """

    status = 503
