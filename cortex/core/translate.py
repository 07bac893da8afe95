"""Anthropic <-> OpenAI translation, the public face. Pure: dicts in, dicts out.

Requests live in ``translate_request``, responses in ``translate_response``, streams in
``stream``; this module names what the gateway shell calls.
"""

from __future__ import annotations

from cortex.core.translate_request import anthropic_count_tokens_request, anthropic_to_openai
from cortex.core.translate_response import new_message_id, openai_to_anthropic

__all__ = [
    "anthropic_count_tokens_request",
    "anthropic_to_openai",
    "new_message_id",
    "openai_to_anthropic",
]
