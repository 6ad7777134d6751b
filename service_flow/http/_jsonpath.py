"""JSONPath expressions, compiled once and cached, on top of ``jsonpath-ng``.

The extended parser is used, so filters (``$.jobs[?(@.state == "done")]``) work.  A
malformed expression raises `ConfigurationError` naming it when whatever uses it is
built (a condition, a capture), never in the middle of a run.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse

from service_flow.exceptions import ConfigurationError

__all__ = ["compile_path", "find"]

# The parser (ply) keeps state while it parses: one parse at a time.
_PARSE_LOCK = threading.Lock()


def compile_path(expression: str) -> Any:
    """The compiled form of ``expression``, parsed once per distinct expression.

    >>> compile_path("$.data.id").find({"data": {"id": 7}})[0].value
    7
    >>> compile_path("$.data[")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    service_flow.exceptions.ConfigurationError: malformed JSONPath expression '$.data[': Parse error ...
    """
    if not isinstance(expression, str) or not expression.strip():
        msg = f"a JSONPath expression must be a non-empty string, got {expression!r}"
        raise ConfigurationError(msg)
    return _compile(expression)


@functools.lru_cache(maxsize=512)
def _compile(expression: str) -> Any:
    try:
        with _PARSE_LOCK:
            return parse(expression)
    except (JSONPathError, TypeError, ValueError, AttributeError) as error:
        # ply reports some malformed inputs as plain TypeError/AttributeError.
        msg = f"malformed JSONPath expression {expression!r}: {error}"
        raise ConfigurationError(msg) from None


def find(expression: str, data: Any) -> list[Any]:
    """Every value ``expression`` selects in ``data`` (an empty list when none).

    >>> find("$.items[*].id", {"items": [{"id": 1}, {"id": 2}]})
    [1, 2]
    """
    return [match.value for match in compile_path(expression).find(data)]
