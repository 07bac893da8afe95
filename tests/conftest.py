"""Shared test set-up: coroutine tests run under asyncio.run, no plugin needed."""

from __future__ import annotations

import asyncio
import inspect
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# Timings on a shared 2-core machine are noisy: no per-example deadline. CI runs
# derandomised so a red run can be replayed exactly; local runs keep exploring.
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run ``async def`` tests in a fresh event loop."""
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {name: pyfuncitem.funcargs[name] for name in names}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**kwargs), timeout=120))
    return True
