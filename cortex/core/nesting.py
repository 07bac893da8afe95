"""Decoding a request body as JSON, with its nesting checked cheaply. Pure.

Deep nesting costs recursion everywhere a body is walked (translation, templates,
re-encoding); a chat request never needs more than a handful of levels.
"""

from __future__ import annotations

import json
from typing import Any

from cortex.errors import BadRequest

MAX_JSON_DEPTH = 64


def too_deep(raw: bytes, value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (the parse of ``raw``) nests objects and arrays beyond ``limit``."""
    # Each level needs an opening bracket: a C-speed count rules out most bodies at once.
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


def decode_body(raw: bytes) -> Any:
    """Parse a request body; malformed or too deeply nested JSON is a ``BadRequest``."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:  # nested past the interpreter's own limit
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels") from None
    if too_deep(raw, value):
        raise BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels")
    return value
