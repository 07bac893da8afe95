"""The one place an error becomes a response body, per client dialect. Pure.

OpenAI: ``{"error": {"message", "type", "code", "param"}}``; Anthropic:
``{"type": "error", "error": {"type", "message"}}``. Statuses are the HTTP ones the
SDKs map to their exception classes (400, 401, 404, 429, 5xx).
"""

from __future__ import annotations

import json
from typing import Any

from cortex.errors import ApiError

OPENAI, ANTHROPIC = "openai", "anthropic"

# Anthropic's own error types by status; its SDK reads the status, Claude Code the type.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
}


def error_body(error: ApiError, dialect: str) -> dict[str, Any]:
    if dialect == ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(error.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": error.message}}
    return {
        "error": {
            "message": error.message,
            "type": error.type,
            "code": error.code,
            "param": error.param,
        }
    }


def error_headers(error: ApiError) -> dict[str, str]:
    if error.retry_after_s is None:
        return {}
    seconds = max(1, round(error.retry_after_s))
    return {"Retry-After": str(seconds), "retry-after-ms": str(int(error.retry_after_s * 1000))}


def stream_error_frame(error: ApiError, dialect: str) -> bytes:
    """The last frame of a stream that failed after it started (no [DONE] follows)."""
    body = json.dumps(error_body(error, dialect), separators=(",", ":"), ensure_ascii=False)
    if dialect == ANTHROPIC:
        return f"event: error\ndata: {body}\n\n".encode()
    return f"data: {body}\n\n".encode()
