"""The errors wr raises, each with a status hint so the core never imports a web framework.

The REST layer turns any `WrError` into a response with `status`; the CLI turns it into a
message and an exit code. Library code only raises.

Hierarchy::

    WrError (500)
    ├── BadRequest (400)
    ├── Unauthorized (401)
    ├── NotFound (404)
    ├── PayloadTooLarge (413)
    ├── StorageUnavailable (503)
    └── ConfigError (500)
"""

from __future__ import annotations


class WrError(Exception):
    """Base of every error wr raises on purpose."""

    status: int = 500
    """The HTTP status that best describes this error to a REST client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        """The human-readable explanation, as given when raised."""
        return str(self.args[0]) if self.args else ""


class BadRequest(WrError):
    """The caller sent something malformed or invalid."""

    status = 400


class Unauthorized(WrError):
    """A missing or wrong token."""

    status = 401


class NotFound(WrError):
    """The job, group or resource asked about does not exist."""

    status = 404


class PayloadTooLarge(WrError):
    """A request body beyond the configured `maxbodysize`."""

    status = 413


class StorageUnavailable(WrError):
    """The database cannot take writes right now, so nothing was accepted."""

    status = 503


class ConfigError(WrError):
    """A setting, config file, certificate or token that cannot be used as it is."""
