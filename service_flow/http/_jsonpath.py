"""JSONPath expressions, compiled once and cached, on top of ``jsonpath-ng``.

The extended parser is used, so filters (``$.jobs[?(@.state == "done")]``) work.  A
malformed expression raises `ConfigurationError` naming it when whatever uses it is
built (a condition, a capture), never in the middle of a run.  An expression already
compiled by jsonpath-ng (``jsonpath_ng.ext.parse("$.x")``) is accepted wherever a string is.

Matching runs on data a server sent, so it may fail where the expression is fine: a
filter comparing a string with a number (older jsonpath-ng raises ``TypeError``), a
sort over mixed types, a document nested too deeply for jsonpath-ng's recursion.  Such a
failure is a `PathError` naming the expression and the reason, never a bare ``TypeError``
or ``RecursionError``: conditions read it as "no match", captures and checks report it.

jsonpath-ng before 1.11 (the newest on Python 3.9 and 3.10 is 1.8) raises `KeyError` or
`TypeError` for an index into a dict or a number, indexes into strings, treats a dict as a
one-item list under ``[*]``, and a filter over a dict writes a list of its values into the
document.  There, index, slice and filter steps are wrapped to select as 1.11+ does, so
an expression gives the same values on every Python.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import re
import threading
from typing import Any, Callable, Union

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.filter import Filter
from jsonpath_ng.ext.parser import parse
from jsonpath_ng.jsonpath import DatumInContext, Index, Slice
from typing_extensions import TypeAlias

from service_flow.exceptions import ConfigurationError

__all__ = ["Expression", "PathError", "compile_path", "find", "finder", "text_of"]

Expression: TypeAlias = Union[str, JSONPath]
"""A JSONPath: its text (``"$.data.id"``) or an expression compiled by jsonpath-ng."""

Finder = Callable[[Any], "list[Any]"]

# The parser (ply) keeps state while it parses: one parse at a time.
_PARSE_LOCK = threading.Lock()


class PathError(ValueError):
    """A JSONPath could not be evaluated on a document (the document's fault, not the path's)."""

    def __init__(self, expression: str, reason: str) -> None:
        super().__init__(f"{expression!r} could not be evaluated on the body: {reason}")
        self.expression = expression
        self.reason = reason


def text_of(expression: Expression) -> str:
    """The text of ``expression``, for messages and reprs."""
    return expression if isinstance(expression, str) else str(expression)


def compile_path(expression: Expression) -> Any:
    """The compiled form of ``expression``, parsed once per distinct expression.

    >>> compile_path("$.data.id").find({"data": {"id": 7}})[0].value
    7
    >>> compile_path("$.data[")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    service_flow.exceptions.ConfigurationError: malformed JSONPath expression '$.data[': Parse error ...
    """
    if isinstance(expression, JSONPath):
        return expression
    if not isinstance(expression, str) or not expression.strip():
        msg = f"a JSONPath expression must be a non-empty string or a jsonpath-ng expression, got {expression!r}"
        raise ConfigurationError(msg)
    return _compile(expression)


@functools.lru_cache(maxsize=512)
def _compile(expression: str) -> Any:
    try:
        with _PARSE_LOCK:
            path = parse(expression)
    except (JSONPathError, TypeError, ValueError, AttributeError) as error:
        # ply reports some malformed inputs as plain TypeError/AttributeError.
        msg = f"malformed JSONPath expression {expression!r}: {error}"
        raise ConfigurationError(msg) from None
    return _as_today(path) if _OLD_JSONPATH_NG else path


_OLD_JSONPATH_NG = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("jsonpath-ng"))[:2]) < (
    1,
    11,
)


class _ListStep(JSONPath):  # type: ignore[misc,unused-ignore]  # jsonpath-ng < 1.9 is untyped
    """An index, slice or filter of an old jsonpath-ng that selects only from a list.

    ``[*]`` and filters also select from a dict's values, without writing into it.
    """

    def __init__(self, step: Any) -> None:
        self.step = step
        self.over_values = isinstance(step, Filter) or (
            isinstance(step, Slice) and (step.start, step.end, step.step) == (None, None, None)
        )

    def find(self, datum: Any) -> list[Any]:
        datum = DatumInContext.wrap(datum)
        if isinstance(datum.value, dict) and self.over_values:
            values = DatumInContext(list(datum.value.values()), path=datum.path, context=None)
            return [DatumInContext(m.value, path=m.path, context=datum) for m in self.step.find(values)]
        return self.step.find(datum) if isinstance(datum.value, list) else []

    def __str__(self) -> str:
        return str(self.step)

    def __repr__(self) -> str:
        return repr(self.step)


def _as_today(path: Any) -> Any:
    """``path`` with its index, slice and filter steps (filters' own paths too) wrapped, in place."""
    for name in ("left", "right", "target"):
        part = getattr(path, name, None)
        if isinstance(part, JSONPath):
            setattr(path, name, _as_today(part))
    if isinstance(getattr(path, "expressions", None), list):
        path.expressions = [_as_today(part) for part in path.expressions]
    return _ListStep(path) if isinstance(path, (Index, Slice, Filter)) else path


def find(expression: Expression, data: Any) -> list[Any]:
    """Every value ``expression`` selects in ``data`` (an empty list when none).

    >>> find("$.items[*].id", {"items": [{"id": 1}, {"id": 2}]})
    [1, 2]
    """
    return finder(expression)(data)


# `$`, then `.name`, `[3]`, `['name']` or `["name"]` steps: no wildcard, filter or slice.
_PLAIN = re.compile(r"""\$(?:\.[A-Za-z_]\w*|\[\d+\]|\['[^']*'\]|\["[^"]*"\])*\Z""")
_STEPS = re.compile(r"""\.([A-Za-z_]\w*)|\[(\d+)\]|\['([^']*)'\]|\["([^"]*)"\]""")


def finder(expression: Expression) -> Finder:
    """A function giving every value ``expression`` selects in a document, compiled once.

    A plain path (``$.data.items[0]``), the usual case, is walked directly, several
    times faster than jsonpath-ng's matcher objects; the rest goes to jsonpath-ng.  The
    function raises `PathError` when jsonpath-ng fails on the document.

    >>> finder("$.data.items[1]")({"data": {"items": ["a", "b"]}}), finder("$.x")({"y": 1})
    (['b'], [])
    """
    if isinstance(expression, JSONPath):
        # May be unhashable: not cached.  The caller's expression is left as it is.
        path = _as_today(copy.deepcopy(expression)) if _OLD_JSONPATH_NG else expression
        return _matcher(path, str(expression))
    compile_path(expression)  # validates, and caches the parse
    return _finder(expression)


def _matcher(path: Any, text: str) -> Finder:
    def match(data: Any) -> list[Any]:
        try:
            return [found.value for found in path.find(data)]
        except Exception as error:  # noqa: BLE001 - whatever jsonpath-ng raises on server data
            reason = "the body is nested too deeply" if isinstance(error, RecursionError) else str(error)
            raise PathError(text, f"{type(error).__name__}: {reason}"[:200]) from None

    return match


@functools.lru_cache(maxsize=512)
def _finder(expression: str) -> Finder:
    if not _PLAIN.match(expression):
        return _matcher(_compile(expression), expression)
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
