"""Shared fixtures: captured structlog events, the README's examples run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import structlog
from structlog.testing import capture_logs

from service_flow import _log

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


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


def _first_code_block(heading: str) -> str:
    readme = (Path(__file__).parent.parent / "README.rst").read_text(encoding="utf-8")
    section = readme.split(f"\n{heading}\n", 1)[1]
    lines = section.split(".. code-block:: python\n\n", 1)[1].splitlines()
    block = []
    for line in lines:
        if line and not line.startswith("    "):  # the block ends at the first unindented line
            break
        block.append(line[4:])
    return "\n".join(block)


@pytest.fixture
def run_readme_example() -> Callable[[str], None]:
    """Runs the first code block of the README section under a heading."""

    def run(heading: str) -> None:
        exec(compile(_first_code_block(heading), "README.rst", "exec"), {})  # noqa: S102 - the README's own code

    return run


@pytest.fixture
def readme_code() -> Callable[[str], str]:
    """The first code block of the README section under a heading, as source (to run it another way)."""
    return _first_code_block
