"""JSONPath expressions, compiled once and cached, on top of ``jsonpath-ng``.

The extended parser is used, so filters (``$.jobs[?(@.state == "done")]``) work.  A
malformed expression raises `ConfigurationError` naming it when whatever uses it is
built (a condition, a capture), never in the middle of a run.
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any, Callable

from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse

from service_flow.exceptions import ConfigurationError

__all__ = ["compile_path", "find", "finder"]

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
    return finder(expression)(data)


# `$`, then `.name`, `[3]`, `['name']` or `["name"]` steps: no wildcard, filter or slice.
_PLAIN = re.compile(r"""\$(?:\.[A-Za-z_]\w*|\[\d+\]|\['[^']*'\]|\["[^"]*"\])*\Z""")
_STEPS = re.compile(r"""\.([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")


def finder(expression: str) -> Callable[[Any], list[Any]]:
    """A function giving every value ``expression`` selects in a document, compiled once.

    A plain path (``$.data.items[0]``), the usual case, is walked directly, several
    times faster than jsonpath-ng's matcher objects; the rest goes to jsonpath-ng.

    >>> finder("$.data.items[1]")({"data": {"items": ["a", "b"]}}), finder("$.x")({"y": 1})
    (['b'], [])
    """
    compile_path(expression)  # validates, and caches the parse
    return _finder(expression)


@functools.lru_cache(maxsize=512)
def _finder(expression: str) -> Callable[[Any], list[Any]]:
    if not _PLAIN.match(expression):
        path = _compile(expression)
        return lambda data: [match.value for match in path.find(data)]
    steps = tuple(
        int(m[2]) if m[2] is not None else next(g for g in (m[1], m[3], m[4]) if g is not None)
        for m in _STEPS.finditer(expression)
    )

    def walk(data: Any) -> list[Any]:
        for step in steps:
            if isinstance(step, int):
                if not isinstance(data, list) or step >= len(data):
                    return []
            elif not isinstance(data, dict) or step not in data:
                return []
            data = data[step]
        return [data]

    return walk
