"""Typed engine errors. The API layer maps each to Docker's HTTP status in one place
(guest/api/server.py); the engine core raises these and never builds HTTP responses itself."""

from __future__ import annotations


class EngineError(Exception):
    """Base class: `status` is the HTTP status the Docker API uses for this kind of error."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidParameter(EngineError):
    status = 400


class Unauthorized(EngineError):
    status = 401


class Forbidden(EngineError):
    status = 403


class NotFound(EngineError):
    status = 404


class Conflict(EngineError):
    status = 409


class NotModified(EngineError):
    status = 304


class NotImplementedYet(EngineError):
    status = 501


class Unavailable(EngineError):
    status = 503


class SystemError_(EngineError):
    status = 500


def no_such_image(ref: str) -> NotFound:
    # docker-py's ImageNotFound and the CLI's pull-then-retry both key on this exact text.
    return NotFound(f"No such image: {ref}")


def no_such_container(ref: str) -> NotFound:
    return NotFound(f"No such container: {ref}")
