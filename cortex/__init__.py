"""cortex: one API in front of a fleet of local LLM hosts."""

__version__ = "0.1.0"
