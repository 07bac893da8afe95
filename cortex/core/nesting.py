"""How deeply a parsed JSON body nests, checked cheaply. Pure.

Deep nesting costs recursion everywhere a body is walked (translation, templates,
re-encoding); a chat request never needs more than a handful of levels.
"""

from __future__ import annotations

from typing import Any

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
