"""Conditions on an HTTP response: what a check requires, what a poll waits for, what raises an alarm.

A condition is a small callable object: given a response, it says ``True`` or ``False``.
It works on anything with ``status_code``, ``headers``, ``text`` and ``json()``:
`requests.Response` and `httpx.Response` alike.  Conditions combine with ``&`` (all),
``|`` (any) and ``~`` (not) into new conditions; no operand is changed::

    done = Status(200) & (JsonPath("$.status") == "SUCCESS")
    failed = Status(500, 502, 503) | JsonPath("$.status").matches(lambda s: s in {"FAILED", "ERROR"})

This is the one language for judging a response: ``Request.check(...)``, ``Poll(until=...,
alarm=...)`` take the same forms, with the same meaning (`as_condition`): a condition, a
plain callable, the dict form (``{"status": 200, "json": {...}, "jsonpath": {"$.x": 1},
"headers": {...}, "text": "...", "callback": fn}``, every part must hold; httsleep's
spelling ``status_code`` and ``[{"expression": "$.x", "value": 1}]`` too) and a list (any
of them must hold).

A body that is not JSON (including one nested too deeply to parse) makes every JSON
condition false, and the body is parsed at most once per response, however many
conditions look at it.  A JSONPath that jsonpath-ng cannot evaluate on the body (a filter
comparing mixed types) matches nothing.  Expected values are compared as JSON values:
``0`` does not equal ``false``, ``{}`` matches only ``{}``.  Descriptions (``repr``) read
like the expression and mask the expected values of sensitive headers and fields.
"""

from __future__ import annotations

import json
import math
import operator
import re
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar, Union

from typing_extensions import TypeAlias

from service_flow.exceptions import ConfigurationError, FlowDefinitionError
from service_flow.http import _redact
from service_flow.http._jsonpath import Expression, PathError, compile_path, finder, text_of

__all__ = [
    "AllOf",
    "AnyOf",
    "Callback",
    "Condition",
    "ConditionSpec",
    "Header",
    "Json",
    "JsonPath",
    "JsonPathCondition",
    "Not",
    "Observed",
    "Status",
    "Text",
    "as_condition",
]

ConditionSpec: TypeAlias = Union["Condition", Callable[[Any], Any], Mapping[str, Any], "list[Any]", "tuple[Any, ...]"]
"""What `as_condition` accepts: a condition, a callable, the dict form, or a list of them."""

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxdict = _repr.maxlist = 6
_repr.maxlevel = 3


def _short(value: object) -> str:
    return _repr.repr(value)


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
_NOT_JSON: Any = type("_NotJson", (), {"__repr__": lambda _: "<not JSON>"})()
NOT_JSON = "the body is not JSON"


class Observed:
    """A response seen by conditions: its JSON body is parsed once, on first use.

    Conditions accept a raw response or an `Observed`; a request's checks and captures,
    and a poll's success and alarm conditions, share one parse through it.
    """

    __slots__ = ("_json", "not_json", "response")

    def __init__(self, response: Any) -> None:
        self.response = response
        self._json: Any = _UNSET
        self.not_json = NOT_JSON
        """Why the body is not JSON (meaningful when `is_json` is false)."""

    @property
    def json(self) -> Any:
        """The parsed body, or a marker that never equals anything when it is not JSON."""
        if self._json is _UNSET:
            try:
                # The bytes parsed here, as httpx does: requests would decode them first with the
                # charset it guesses, and the two transports would disagree (a UTF-16 body).
                content = getattr(self.response, "content", None)
                self._json = json.loads(content) if isinstance(content, bytes) else self.response.json()
            except ValueError:  # requests' and httpx's decode errors are ValueErrors
                self._json = _NOT_JSON
            except RecursionError:  # "[[[[..." nested beyond what the parser can follow
                self._json = _NOT_JSON
                self.not_json = f"{NOT_JSON} (nested too deeply to parse)"
        return self._json

    @property
    def is_json(self) -> bool:
        """Whether the body parsed as JSON."""
        return self.json is not _NOT_JSON


def observe(response: Any) -> Observed:
    """``response`` wrapped for conditions (itself when it already is)."""
    return response if isinstance(response, Observed) else Observed(response)


T = TypeVar("T")


def _require(value: object, kind: type[T], message: str) -> T:
    if not isinstance(value, kind):
        msg = f"{message}, got {type(value).__name__}"
        raise ConfigurationError(msg)
    return value


def _require_callable(value: object, message: str) -> None:
    if not callable(value):
        msg = f"{message}, got {type(value).__name__}"
        raise ConfigurationError(msg)


def same_json(actual: Any, expected: Any) -> bool:
    """JSON equality: like ``==``, except that booleans equal only booleans."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    if isinstance(expected, Mapping):
        return (
            isinstance(actual, Mapping)
            and actual.keys() == expected.keys()
            and all(same_json(actual[key], expected[key]) for key in expected)
        )
    if isinstance(expected, (list, tuple)):
        return (
            isinstance(actual, (list, tuple))
            and len(actual) == len(expected)
            and all(same_json(a, e) for a, e in zip(actual, expected))
        )
    return bool(actual == expected)


_JSON_SCALARS = (str, int, float, type(None))
_MAX_EXPECTED_DEPTH = 100


def _json_value(value: Any, owner: str) -> Any:
    """``value`` if it is a JSON value a response could equal; else `ConfigurationError`."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_EXPECTED_DEPTH:
            msg = f"{owner}: the expected value is nested more than {_MAX_EXPECTED_DEPTH} levels deep"
            raise ConfigurationError(msg)
        if isinstance(item, float) and math.isnan(item):
            msg = f"{owner}: NaN equals nothing, not even NaN; expected {_short(value)}"
            raise ConfigurationError(msg)
        if isinstance(item, Mapping):
            if not all(isinstance(key, str) for key in item):
                msg = f"{owner}: JSON object keys are strings, got {_short(value)}"
                raise ConfigurationError(msg)
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend((child, depth + 1) for child in item)
        elif not isinstance(item, _JSON_SCALARS):
            msg = f"{owner}: {type(item).__name__} is not a JSON value (str, number, bool, None, list, dict)"
            raise ConfigurationError(msg)
    return value


def _kind(value: Any) -> str:
    """The JSON type of ``value``, with its article, for messages that must not show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, (list, tuple)) else "an object"


_MASK_DEPTH = 8


def _masked(value: Any, depth: int = 0) -> Any:
    """A copy of ``value`` with the values of sensitive fields masked, for descriptions."""
    if depth > _MASK_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            key: _redact.MASK if isinstance(key, str) and _redact.is_sensitive_field(key) else _masked(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_masked(item, depth + 1) for item in value]
    return value


_NAMES = re.compile(r"[A-Za-z_][\w-]*")


def _names_a_secret(expression: str) -> bool:
    """Whether a JSONPath mentions a sensitive field (``$.auth.token``): its expected value is masked."""
    return any(_redact.is_sensitive_field(name) for name in _NAMES.findall(expression))


class Condition:
    """A test of a response; combine conditions with ``&``, ``|`` and ``~``.

    A subclass defines `holds` (and, for better messages, `why_not`).
    """

    __slots__ = ()

    def __call__(self, response: Any) -> bool:
        """Whether the condition holds for ``response`` (a response or an `Observed`)."""
        return self.holds(observe(response))

    def holds(self, seen: Observed) -> bool:
        """Whether the condition holds for the observed response."""
        raise NotImplementedError

    def why_not(self, seen: Observed) -> str:  # noqa: ARG002 - subclasses use it
        """Why the condition does not hold for ``seen`` (asked after `holds` said no)."""
        return "it does not hold"

    def __and__(self, other: ConditionSpec) -> Condition:
        return AllOf(self, as_condition(other))

    def __rand__(self, other: ConditionSpec) -> Condition:
        return AllOf(as_condition(other), self)

    def __or__(self, other: ConditionSpec) -> Condition:
        return AnyOf(self, as_condition(other))

    def __ror__(self, other: ConditionSpec) -> Condition:
        return AnyOf(as_condition(other), self)

    def __invert__(self) -> Condition:
        return Not(self)

    def __bool__(self) -> NoReturn:
        # `a and b` would silently give `b`: point at the operators instead.
        msg = f"a condition has no truth value ({self!r}); combine conditions with &, | and ~, not and/or/not"
        raise FlowDefinitionError(msg)

    def __str__(self) -> str:
        return repr(self)


class Status(Condition):
    """The status code is one of the given codes."""

    __slots__ = ("codes",)

    def __init__(self, *codes: int) -> None:
        if not codes:
            raise ConfigurationError("Status() needs at least one status code")
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 999:  # noqa: PLR2004
                msg = f"Status: {code!r} is not an HTTP status code"
                raise ConfigurationError(msg)
        self.codes = frozenset(codes)

    def holds(self, seen: Observed) -> bool:
        """Whether the status code is one of ``codes``."""
        return seen.response.status_code in self.codes

    def why_not(self, seen: Observed) -> str:
        """The status that came."""
        return f"got {seen.response.status_code}"

    def __repr__(self) -> str:
        return f"Status({', '.join(str(code) for code in sorted(self.codes))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Status, tuple(sorted(self.codes)))


class Json(Condition):
    """The whole JSON body equals ``expected``."""

    __slots__ = ("expected",)

    def __init__(self, expected: Any) -> None:
        self.expected = _json_value(expected, "Json")

    def holds(self, seen: Observed) -> bool:
        """Whether the body is JSON equal to ``expected``."""
        return seen.is_json and same_json(seen.json, self.expected)

    def why_not(self, seen: Observed) -> str:
        """Not JSON, or another body."""
        return seen.not_json if not seen.is_json else f"the body is {_kind(seen.json)} of another value"

    def __repr__(self) -> str:
        return f"Json({_short(_masked(self.expected))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Json, (self.expected,))


class Text(Condition):
    """The whole body, as text, equals ``expected``."""

    __slots__ = ("expected",)

    def __init__(self, expected: str) -> None:
        self.expected = _require(expected, str, "Text: the expected body must be a str")

    def holds(self, seen: Observed) -> bool:
        """Whether the body text equals ``expected``."""
        return bool(seen.response.text == self.expected)

    def why_not(self, seen: Observed) -> str:  # noqa: ARG002 - the body is in the error's excerpt
        """The body differs."""
        return "the body differs"

    def __repr__(self) -> str:
        return f"Text({_short(self.expected)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Text, (self.expected,))


class Header(Condition):
    """The response has header ``name`` (case-insensitive), equal to ``value`` when given.

    The expected value of a sensitive header (``Authorization``, ``Set-Cookie``,
    ``X-Api-Key``...) shows as ``***`` in descriptions and errors.
    """

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            msg = f"Header: the header name must be a non-empty str, got {name!r}"
            raise ConfigurationError(msg)
        if value is not None and not isinstance(value, str):
            msg = f"Header({name!r}): the expected value must be a str (or None: any value), got {type(value).__name__}"  # type: ignore[unreachable]
            raise ConfigurationError(msg)
        self.name = name
        self.value = value

    def holds(self, seen: Observed) -> bool:
        """Whether the header is there (with the expected value, if one was given)."""
        actual = seen.response.headers.get(self.name)
        if actual is None:
            return False
        return self.value is None or actual == self.value

    def why_not(self, seen: Observed) -> str:
        """Missing, or another value."""
        missing = seen.response.headers.get(self.name) is None
        return f"header {self.name!r} is missing" if missing else f"header {self.name!r} has another value"

    def __repr__(self) -> str:
        if self.value is None:
            return f"Header({self.name!r})"
        shown = _redact.MASK if _redact.is_sensitive_header(self.name) else _short(self.value)
        return f"Header({self.name!r}, {shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Header, (self.name, self.value))


def _ordered(actual: Any, bound: Any, compare: Callable[[Any, Any], bool]) -> bool:
    # JSON orders numbers with numbers and strings with strings; nothing else.
    if isinstance(bound, str):
        return isinstance(actual, str) and compare(actual, bound)
    return isinstance(actual, (int, float)) and not isinstance(actual, bool) and compare(actual, bound)


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": same_json,
    "!=": lambda actual, expected: not same_json(actual, expected),
    "<": lambda actual, bound: _ordered(actual, bound, operator.lt),
    "<=": lambda actual, bound: _ordered(actual, bound, operator.le),
    ">": lambda actual, bound: _ordered(actual, bound, operator.gt),
    ">=": lambda actual, bound: _ordered(actual, bound, operator.ge),
}
_OTHER_TESTS = ("matches", "exists", "selects")


class JsonPathCondition(Condition):
    """A JSONPath's selection in the body passes a test (built by `JsonPath`).

    ``==``, ``!=``, orderings and ``matches``: it selects at least one value and every
    value passes.  ``exists``: it selects at least one value.  ``selects``: the single
    value it selects, or the list of its values when it selects several, equals the
    operand (httsleep's rule).
    """

    __slots__ = ("_find", "expression", "operand", "test")

    def __init__(self, expression: Expression, test: str, operand: Any = None) -> None:
        if test not in _TESTS and test not in _OTHER_TESTS:
            msg = f"JsonPathCondition: unknown test {test!r}"
            raise ConfigurationError(msg)
        self._find = finder(expression)
        self.expression = expression
        self.test = test
        self.operand = operand
        owner = f"JsonPath({text_of(expression)!r}) {test}"
        if test == "matches":
            _require_callable(operand, f"{owner}() needs a callable")
        elif test in {"==", "!=", "selects"}:
            _json_value(operand, owner)
        elif test != "exists" and not _is_bound(operand):
            msg = f"{owner}: the bound must be a finite number or a str, got {_short(operand)}"
            raise ConfigurationError(msg)

    def _values(self, seen: Observed) -> list[Any] | None:
        """What the path selects; ``None`` when there is no JSON body or it cannot be searched."""
        if not seen.is_json:
            return None
        try:
            return self._find(seen.json)
        except PathError:
            return None

    def holds(self, seen: Observed) -> bool:
        """Whether the path selects something and its selection passes the test."""
        values = self._values(seen)
        if not values:
            return False
        test = self.test
        if test == "exists":
            return True
        if test == "selects":
            return same_json(values[0] if len(values) == 1 else values, self.operand)
        if test == "matches":
            return all(bool(self.operand(value)) for value in values)
        compare = _TESTS[test]
        return all(compare(value, self.operand) for value in values)

    def why_not(self, seen: Observed) -> str:
        """No body, an error, no match, or which values did not pass (their types, never their values)."""
        if not seen.is_json:
            return seen.not_json
        try:
            values = self._find(seen.json)
        except PathError as error:
            return str(error)
        return self._failed(values)

    def _failed(self, values: list[Any]) -> str:
        path = repr(text_of(self.expression))
        if not values:
            return f"{path} matched nothing"
        if self.test == "selects":
            shown = _kind(values[0]) if len(values) == 1 else f"{len(values)} values"
            return f"{path} selected {shown}, not the expected value"
        if self.test == "matches":
            return f"{path} selected {len(values)} value(s), not all passing {_callable_name(self.operand)}"
        compare = _TESTS[self.test]
        failing = [value for value in values if not compare(value, self.operand)]
        if not failing:
            return "it holds"
        if len(values) == 1:
            return f"{path} selected {_kind(failing[0])} that does not pass"
        return f"{len(failing)} of the {len(values)} values {path} selected do not pass"

    def __repr__(self) -> str:
        text = text_of(self.expression)
        path = f"JsonPath({text!r})"
        if self.test == "exists":
            return f"{path}.exists()"
        if self.test == "matches":
            return f"{path}.matches({_callable_name(self.operand)})"
        shown = _redact.MASK if _names_a_secret(text) else _short(_masked(self.operand))
        if self.test == "selects":
            return f"{path}.selects({shown})"
        return f"{path} {self.test} {shown}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (JsonPathCondition, (self.expression, self.test, self.operand))


def _is_bound(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class JsonPath:
    """A JSONPath into the body, to compare: ``JsonPath("$.status") == "SUCCESS"``.

    ``expression`` is a string or an expression compiled by jsonpath-ng.  Comparisons
    (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), `matches` and `exists` give
    conditions that hold when the path selects at least one value and every value it
    selects passes: ``JsonPath("$.jobs[*].state") == "done"`` waits for all jobs.
    `selects` compares the selection as a whole (httsleep's rule, used by the dict form).
    A malformed expression raises `ConfigurationError` here.

    >>> JsonPath("$.status") == "SUCCESS"
    JsonPath('$.status') == 'SUCCESS'
    """

    __slots__ = ("expression",)
    __hash__ = None  # type: ignore[assignment]  # == builds a condition

    def __init__(self, expression: Expression) -> None:
        compile_path(expression)
        self.expression = expression

    def __eq__(self, expected: object) -> JsonPathCondition:  # type: ignore[override]
        return JsonPathCondition(self.expression, "==", expected)

    def __ne__(self, expected: object) -> JsonPathCondition:  # type: ignore[override]
        return JsonPathCondition(self.expression, "!=", expected)

    def __lt__(self, bound: object) -> JsonPathCondition:
        return JsonPathCondition(self.expression, "<", bound)

    def __le__(self, bound: object) -> JsonPathCondition:
        return JsonPathCondition(self.expression, "<=", bound)

    def __gt__(self, bound: object) -> JsonPathCondition:
        return JsonPathCondition(self.expression, ">", bound)

    def __ge__(self, bound: object) -> JsonPathCondition:
        return JsonPathCondition(self.expression, ">=", bound)

    def matches(self, predicate: Callable[[Any], object]) -> JsonPathCondition:
        """A condition: ``predicate(value)`` is true for every value selected."""
        return JsonPathCondition(self.expression, "matches", predicate)

    def exists(self) -> JsonPathCondition:
        """A condition: the path selects at least one value (``null`` counts)."""
        return JsonPathCondition(self.expression, "exists")

    def selects(self, expected: Any) -> JsonPathCondition:
        """A condition: the one value selected equals ``expected``, or, when several are, their list does.

        httsleep's rule, which the dict form (``{"jsonpath": {"$.ids[*]": [1, 2]}}``) uses:
        ``JsonPath("$.ids[*]").selects([1, 2])`` holds for ``{"ids": [1, 2]}``, and
        ``JsonPath("$.ids").selects([1])`` for ``{"ids": [1]}``.  Nothing selected never holds.
        """
        return JsonPathCondition(self.expression, "selects", expected)

    def __bool__(self) -> NoReturn:
        msg = f"{self!r} is not a condition: compare it (==, !=...) or use .exists()"
        raise FlowDefinitionError(msg)

    def __repr__(self) -> str:
        return f"JsonPath({text_of(self.expression)!r})"


def _callable_name(func: object) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    # `str.isupper` reads well; `test_x.<locals>.is_done` is noise.
    return str(name).rsplit("<locals>.", 1)[-1] if name else type(func).__name__


class Callback(Condition):
    """Any callable taking the response (the raw one), made a condition: its result's truth."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], object]) -> None:
        _require_callable(func, "Callback needs a callable")
        self.func = func

    def holds(self, seen: Observed) -> bool:
        """Whether ``func(response)`` is true."""
        return bool(self.func(seen.response))

    def why_not(self, seen: Observed) -> str:  # noqa: ARG002 - the function said so
        """The function returned a false value."""
        return "it returned a false value"

    def __repr__(self) -> str:
        return f"Callback({_callable_name(self.func)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Callback, (self.func,))


class _Combined(Condition):
    __slots__ = ("conditions",)
    symbol: ClassVar[str]

    def __init__(self, *conditions: ConditionSpec) -> None:
        if not conditions:
            msg = f"{type(self).__name__} needs at least one condition"
            raise ConfigurationError(msg)
        flat: list[Condition] = []
        for condition in map(as_condition, conditions):
            # (a & b) & c is a & b & c: one flat tuple, one level of calls at run time.
            flat.extend(condition.conditions if type(condition) is type(self) else (condition,))
        self.conditions: tuple[Condition, ...] = tuple(flat)

    def __repr__(self) -> str:
        parts = [f"({c!r})" if isinstance(c, (_Combined, JsonPathCondition)) else repr(c) for c in self.conditions]
        return f" {self.symbol} ".join(parts) if len(parts) > 1 else f"{type(self).__name__}({parts[0]})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self.conditions)


class AllOf(_Combined):
    """Every one of the conditions holds (``a & b``)."""

    __slots__ = ()
    symbol = "&"

    def holds(self, seen: Observed) -> bool:
        """Whether all hold (stops at the first that does not)."""
        return all(condition.holds(seen) for condition in self.conditions)

    def failing(self, seen: Observed) -> Condition | None:
        """The first condition that does not hold, ``None`` if all do."""
        return next((condition for condition in self.conditions if not condition.holds(seen)), None)

    def why_not(self, seen: Observed) -> str:
        """Which part failed, and why."""
        part = self.failing(seen)
        return "it does not hold" if part is None else f"{part!r}: {part.why_not(seen)}"


class AnyOf(_Combined):
    """At least one of the conditions holds (``a | b``)."""

    __slots__ = ()
    symbol = "|"

    def holds(self, seen: Observed) -> bool:
        """Whether any holds (stops at the first that does)."""
        return any(condition.holds(seen) for condition in self.conditions)

    def holding(self, seen: Observed) -> Condition | None:
        """The first condition that holds, ``None`` if none does."""
        return next((condition for condition in self.conditions if condition.holds(seen)), None)

    def why_not(self, seen: Observed) -> str:  # noqa: ARG002 - every part failed
        """None of them held."""
        return f"none of the {len(self.conditions)} held"


class Not(Condition):
    """The condition does not hold (``~a``)."""

    __slots__ = ("condition",)

    def __init__(self, condition: ConditionSpec) -> None:
        self.condition = as_condition(condition)

    def holds(self, seen: Observed) -> bool:
        """Whether the wrapped condition does not hold."""
        return not self.condition.holds(seen)

    def why_not(self, seen: Observed) -> str:  # noqa: ARG002 - the inner condition held
        """The wrapped condition held."""
        return f"{self.condition!r} held"

    def __invert__(self) -> Condition:
        return self.condition

    def __repr__(self) -> str:
        inner = repr(self.condition)
        simple = isinstance(self.condition, (Status, Json, Text, Header, Callback))
        return f"~{inner}" if simple else f"~({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Not, (self.condition,))


# -- the dict form --------------------------------------------------------------------

DICT_KEYS = ("status", "status_code", "json", "jsonpath", "headers", "text", "callback")
"""The keys of the dict form (``status_code`` is httsleep's spelling of ``status``)."""


def _status(codes: Any) -> Status:
    if isinstance(codes, Iterable) and not isinstance(codes, (str, bytes, Mapping)):
        return Status(*codes)
    return Status(codes)


def _jsonpath_entries(entries: Any) -> list[tuple[Any, Any]]:
    """``{path: value}`` or httsleep's ``[{"expression": path, "value": value}]`` as pairs."""
    if isinstance(entries, Mapping) and set(entries) == {"expression", "value"}:
        entries = [entries]  # one httsleep entry
    if isinstance(entries, Mapping):
        return list(entries.items())
    if isinstance(entries, (list, tuple)):
        pairs = []
        for entry in entries:
            if not isinstance(entry, Mapping) or set(entry) != {"expression", "value"}:
                msg = f"a jsonpath entry must be a dict with 'expression' and 'value', got {_short(entry)}"
                raise ConfigurationError(msg)
            pairs.append((entry["expression"], entry["value"]))
        return pairs
    msg = (
        "'jsonpath' takes {path: value} or a list of {'expression': path, 'value': value}, "
        f"got {type(entries).__name__}"
    )
    raise ConfigurationError(msg)


def _headers(expected: Any) -> list[Header]:
    if not isinstance(expected, Mapping):
        msg = f"'headers' takes {{name: value}}, got {type(expected).__name__}"
        raise ConfigurationError(msg)
    return [Header(name, value) for name, value in expected.items()]


def _check_keys(spec: Mapping[str, Any]) -> None:
    unknown = sorted(repr(key) for key in spec if key not in DICT_KEYS)
    if unknown:
        msg = f"unknown condition key(s) {', '.join(unknown)}; known: {', '.join(DICT_KEYS)}"
        raise ConfigurationError(msg)
    if not spec:
        raise ConfigurationError("an empty condition dict would match every response; give at least one key")
    if "status" in spec and "status_code" in spec:
        raise ConfigurationError("give 'status' or httsleep's 'status_code', not both: they are the same key")


def _from_dict(spec: Mapping[str, Any]) -> Condition:
    _check_keys(spec)
    # Keys are tested for presence, never for truth: {"json": {}} expects an empty object.
    parts: list[Condition] = [_status(spec[key]) for key in ("status", "status_code") if key in spec]
    if "json" in spec:
        parts.append(Json(spec["json"]))
    if "jsonpath" in spec:
        parts.extend(JsonPath(path).selects(value) for path, value in _jsonpath_entries(spec["jsonpath"]))
    if "headers" in spec:
        parts.extend(_headers(spec["headers"]))
    if "text" in spec:
        parts.append(Text(spec["text"]))
    if "callback" in spec:
        parts.append(Callback(spec["callback"]))
    if not parts:
        raise ConfigurationError("this condition dict has no parts (an empty 'jsonpath' or 'headers'?)")
    return parts[0] if len(parts) == 1 else AllOf(*parts)


def as_condition(spec: ConditionSpec | object) -> Condition:
    """A `Condition` from any accepted form.

    - a `Condition`: itself;
    - a dict: every part must hold; keys ``status`` (a code or a list; httsleep's
      ``status_code`` is the same key), ``json`` (the whole body), ``jsonpath``
      (``{path: value}`` or httsleep's ``[{"expression": path, "value": value}]``; the
      single value a path selects, or the list of them when it selects several, must
      equal the value: `JsonPath.selects`), ``headers`` (``{name: value}``), ``text``,
      ``callback`` (a function of the response);
    - a list or tuple: any of its items (each in any accepted form) must hold;
    - any other callable: called with the response, its result's truth.

    >>> as_condition({"status": 200, "jsonpath": {"$.state": "done"}})
    Status(200) & (JsonPath('$.state').selects('done'))
    """
    if isinstance(spec, Condition):
        return spec
    if isinstance(spec, JsonPath):
        msg = f"{spec!r} is not a condition: compare it (== value) or use .exists()"
        raise ConfigurationError(msg)
    if isinstance(spec, Mapping):
        return _from_dict(spec)
    if isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigurationError("an empty list of conditions can never hold")
        return AnyOf(*spec) if len(spec) > 1 else as_condition(spec[0])
    if callable(spec):
        return Callback(spec)
    msg = f"not a condition: {_short(spec)} (give a Condition, a callable, a dict or a list of them)"
    raise ConfigurationError(msg)
