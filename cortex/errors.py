"""The one exception tree of cortex.

    CortexError                 anything cortex raises on purpose
    ├── ConfigError             a config file is wrong (exit 2; names file, key, reason)
    └── ApiError                a request fails with an HTTP status (envelopes.py renders it)
        ├── BadRequest          400: names the field
        ├── Unauthorized        401
        ├── Forbidden           403
        ├── NotFound            404: an unknown model or route
        ├── Conflict            409
        ├── PayloadTooLarge     413
        ├── QueueFull           429 + Retry-After
        ├── UpstreamFailed      502: the neuron failed
        │   └── UpstreamUnreachable  502: refused or reset before any byte (retry once)
        ├── Unavailable         503 + Retry-After: nothing healthy can serve it now
        ├── UpstreamTimeout     504: the neuron went silent
        └── InsufficientMemory  507 (neuron): the model does not fit

Each ``ApiError`` carries the status, an OpenAI-style ``type`` and ``code``;
``cortex.core.envelopes`` turns it into a body in the client's dialect.
"""

from __future__ import annotations

from collections.abc import Sequence


class CortexError(Exception):
    """Anything cortex raises on purpose."""


class ConfigError(CortexError):
    """A configuration file is invalid; ``lines`` say where and why."""

    def __init__(self, source: str, lines: Sequence[str]) -> None:
        self.source = source
        self.lines = list(lines)
        super().__init__(f"{source}: " + "; ".join(self.lines))


class ApiError(CortexError):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after_s: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after_s = retry_after_s
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status, type, code = 400, "invalid_request_error", "invalid_request"


class Unauthorized(ApiError):
    status, type, code = 401, "authentication_error", "invalid_api_key"


class Forbidden(ApiError):
    status, type, code = 403, "permission_error", "forbidden"


class NotFound(ApiError):
    status, type, code = 404, "not_found_error", "not_found"


class Conflict(ApiError):
    status, type, code = 409, "invalid_request_error", "conflict"


class PayloadTooLarge(ApiError):
    status, type, code = 413, "invalid_request_error", "request_too_large"


class QueueFull(ApiError):
    status, type, code = 429, "rate_limit_error", "queue_full"


class UpstreamFailed(ApiError):
    status, type, code = 502, "api_error", "upstream_failed"


class UpstreamUnreachable(UpstreamFailed):
    """The connection was refused or dropped before any response byte: nothing was
    generated, so the request may be sent to another node once."""


class Unavailable(ApiError):
    status, type, code = 503, "overloaded_error", "unavailable"


class UpstreamTimeout(ApiError):
    status, type, code = 504, "timeout_error", "upstream_timeout"


class InsufficientMemory(ApiError):
    status, type, code = 507, "insufficient_storage", "insufficient_memory"


# ApiError subclasses by status, for code that learns a status from the wire.
BY_STATUS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        QueueFull,
        UpstreamFailed,
        Unavailable,
        UpstreamTimeout,
        InsufficientMemory,
    )
}
