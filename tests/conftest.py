"""Shared fixtures: captured structlog events."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import structlog
from structlog.testing import capture_logs

from service_flow import _log

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    """Every structlog event emitted inside the test, as dicts (debug level included)."""
    with capture_logs() as captured:
        yield captured


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts and ends with structlog's defaults and no logger cached by us."""
    structlog.reset_defaults()
    _log.cached = _log.debug_check = _log.debug_fixed = None
    yield
    structlog.reset_defaults()
    _log.cached = _log.debug_check = _log.debug_fixed = None
