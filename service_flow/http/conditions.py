"""Conditions on an HTTP response: what a poll waits for, what raises an alarm.

A condition is a small callable object: given a response, it says ``True`` or ``False``.
It works on anything with ``status_code``, ``headers``, ``text`` and ``json()``:
`requests.Response` and `httpx.Response` alike.  Conditions combine with ``&`` (all),
``|`` (any) and ``~`` (not) into new conditions; no operand is changed::

    done = Status(200) & (JsonPath("$.status") == "SUCCESS")
    failed = Status(500, 502, 503) | JsonPath("$.status").matches(lambda s: s in {"FAILED", "ERROR"})

`as_condition` also accepts a plain callable, the dict form of httsleep
(``{"status_code": 200, "json": {...}, "jsonpath": [{"expression": "$.x", "value": 1}],
"text": "...", "callback": fn}``, every part must hold) and a list (any of them must
hold).  A body that is not JSON makes every JSON condition false, and the body is
parsed at most once per response, however many conditions look at it.  Expected values
are compared as JSON values: ``0`` does not equal ``false``, ``{}`` matches only ``{}``.
"""

from __future__ import annotations

import operator
import reprlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, NoReturn, TypeVar, Union

from typing_extensions import TypeAlias

from service_flow.exceptions import ConfigurationError, FlowDefinitionError
from service_flow.http import _redact
from service_flow.http._jsonpath import compile_path, finder

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
    # Expected values of secret fields ({"token": ...}) are not shown.
    return _repr.repr(_redact.masked_fields(value))


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()
_NOT_JSON: Any = type("_NotJson", (), {"__repr__": lambda _: "<not JSON>"})()


class Observed:
    """A response seen by conditions: its JSON body is parsed once, on first use.

    Conditions accept a raw response or an `Observed`; a poll wraps each response once
    so that its success and alarm conditions share one parse.
    """

    __slots__ = ("_json", "response")

    def __init__(self, response: Any) -> None:
        self.response = response
        self._json: Any = _UNSET

    @property
    def json(self) -> Any:
        """The parsed body, or a marker that never equals anything when it is not JSON."""
        if self._json is _UNSET:
            try:
                self._json = self.response.json()
            except ValueError:  # requests' and httpx's decode errors are ValueErrors
                self._json = _NOT_JSON
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


class Condition:
    """A test of a response; combine conditions with ``&``, ``|`` and ``~``."""

    __slots__ = ()

    def __call__(self, response: Any) -> bool:
        """Whether the condition holds for ``response`` (a response or an `Observed`)."""
        return self.holds(observe(response))

    def holds(self, seen: Observed) -> bool:
        """Whether the condition holds for the observed response."""
        raise NotImplementedError

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

    def __repr__(self) -> str:
        return f"Status({', '.join(str(code) for code in sorted(self.codes))})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Status, tuple(sorted(self.codes)))


class Json(Condition):
    """The whole JSON body equals ``expected``."""

    __slots__ = ("expected",)

    def __init__(self, expected: Any) -> None:
        self.expected = expected

    def holds(self, seen: Observed) -> bool:
        """Whether the body is JSON equal to ``expected``."""
        return seen.is_json and same_json(seen.json, self.expected)

    def __repr__(self) -> str:
        return f"Json({_short(self.expected)})"

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

    def __repr__(self) -> str:
        return f"Text({_short(self.expected)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Text, (self.expected,))


class Header(Condition):
    """The response has header ``name`` (case-insensitive), equal to ``value`` when given."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str | None = None) -> None:
        if not isinstance(name, str) or not name:
            msg = f"Header: the header name must be a non-empty str, got {name!r}"
            raise ConfigurationError(msg)
        self.name = name
        self.value = value

    def holds(self, seen: Observed) -> bool:
        """Whether the header is there (with the expected value, if one was given)."""
        actual = seen.response.headers.get(self.name)
        if actual is None:
            return False
        return self.value is None or actual == self.value

    def __repr__(self) -> str:
        # Header values can be credentials (a session cookie): never shown.
        return f"Header({self.name!r})" if self.value is None else f"Header({self.name!r}, <value>)"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Header, (self.name, self.value))


_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": same_json,
    "!=": lambda actual, expected: not same_json(actual, expected),
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class JsonPathCondition(Condition):
    """Every value a JSONPath selects passes a test, and it selects at least one."""

    __slots__ = ("_find", "expression", "operand", "test")

    def __init__(self, expression: str, test: str, operand: Any = None) -> None:
        if test not in _TESTS and test not in {"matches", "exists"}:
            msg = f"JsonPathCondition: unknown test {test!r}"
            raise ConfigurationError(msg)
        if test == "matches" and not callable(operand):
            msg = f"JsonPath({expression!r}).matches() needs a callable, got {type(operand).__name__}"
            raise ConfigurationError(msg)
        self._find = finder(expression)
        self.expression = expression
        self.test = test
        self.operand = operand

    def holds(self, seen: Observed) -> bool:
        """Whether the path selects something and every value selected passes the test."""
        if not seen.is_json:
            return False
        values = self._find(seen.json)
        if not values:
            return False
        if self.test == "exists":
            return True
        if self.test == "matches":
            return all(bool(self.operand(value)) for value in values)
        compare = _TESTS[self.test]
        try:
            return all(compare(value, self.operand) for value in values)
        except TypeError:  # "<" between a str and a number: the value does not pass
            return False

    def __repr__(self) -> str:
        path = f"JsonPath({self.expression!r})"
        if self.test == "exists":
            return f"{path}.exists()"
        if self.test == "matches":
            return f"{path}.matches({_callable_name(self.operand)})"
        shown = _redact.MASK if _redact.path_is_sensitive(self.expression) else _short(self.operand)
        return f"{path} {self.test} {shown}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (JsonPathCondition, (self.expression, self.test, self.operand))


class JsonPath:
    """A JSONPath into the body, to compare: ``JsonPath("$.status") == "SUCCESS"``.

    Comparisons (``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``), `matches` and `exists`
    give conditions.  A condition holds when the path selects at least one value and
    every value it selects passes: ``JsonPath("$.jobs[*].state") == "done"`` waits for
    all jobs.  A malformed expression raises `ConfigurationError` here.

    >>> JsonPath("$.status") == "SUCCESS"
    JsonPath('$.status') == 'SUCCESS'
    """

    __slots__ = ("expression",)
    __hash__ = None  # type: ignore[assignment]  # == builds a condition

    def __init__(self, expression: str) -> None:
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

    def __bool__(self) -> NoReturn:
        msg = f"JsonPath({self.expression!r}) is not a condition: compare it (==, !=...) or use .exists()"
        raise FlowDefinitionError(msg)

    def __repr__(self) -> str:
        return f"JsonPath({self.expression!r})"


def _callable_name(func: object) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    return str(name) if name else type(func).__name__


class Callback(Condition):
    """Any callable taking the response (the raw one), made a condition: its result's truth."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[[Any], object]) -> None:
        _require_callable(func, "Callback needs a callable")
        self.func = func

    def holds(self, seen: Observed) -> bool:
        """Whether ``func(response)`` is true."""
        return bool(self.func(seen.response))

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


class AnyOf(_Combined):
    """At least one of the conditions holds (``a | b``)."""

    __slots__ = ()
    symbol = "|"

    def holds(self, seen: Observed) -> bool:
        """Whether any holds (stops at the first that does)."""
        return any(condition.holds(seen) for condition in self.conditions)


class Not(Condition):
    """The condition does not hold (``~a``)."""

    __slots__ = ("condition",)

    def __init__(self, condition: ConditionSpec) -> None:
        self.condition = as_condition(condition)

    def holds(self, seen: Observed) -> bool:
        """Whether the wrapped condition does not hold."""
        return not self.condition.holds(seen)

    def __invert__(self) -> Condition:
        return self.condition

    def __repr__(self) -> str:
        inner = repr(self.condition)
        simple = isinstance(self.condition, (Status, Json, Text, Header, Callback))
        return f"~{inner}" if simple else f"~({inner})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Not, (self.condition,))


_DICT_KEYS = ("status_code", "json", "jsonpath", "text", "callback")


def _from_dict(spec: Mapping[str, Any]) -> Condition:
    unknown = sorted(str(key) for key in spec if key not in _DICT_KEYS)
    if unknown:
        msg = f"unknown condition key(s) {', '.join(map(repr, unknown))}; known: {', '.join(_DICT_KEYS)}"
        raise ConfigurationError(msg)
    if not spec:
        raise ConfigurationError("an empty condition dict would match every response; give at least one key")
    # Keys are tested for presence, never for truth: {"json": {}} expects an empty object.
    parts: list[Condition] = []
    if "status_code" in spec:
        codes = spec["status_code"]
        parts.append(Status(*codes) if isinstance(codes, Iterable) and not isinstance(codes, str) else Status(codes))
    if "json" in spec:
        parts.append(Json(spec["json"]))
    if "jsonpath" in spec:
        entries = spec["jsonpath"]
        for entry in [entries] if isinstance(entries, Mapping) else entries:
            if not isinstance(entry, Mapping) or set(entry) != {"expression", "value"}:
                msg = f"a jsonpath entry must be a dict with 'expression' and 'value', got {_short(entry)}"
                raise ConfigurationError(msg)
            parts.append(JsonPathCondition(entry["expression"], "==", entry["value"]))
    if "text" in spec:
        parts.append(Text(spec["text"]))
    if "callback" in spec:
        parts.append(Callback(spec["callback"]))
    return parts[0] if len(parts) == 1 else AllOf(*parts)


def as_condition(spec: ConditionSpec | object) -> Condition:
    """A `Condition` from any accepted form.

    - a `Condition`: itself;
    - a dict (httsleep's form): every part must hold; keys ``status_code`` (a code or a
      list), ``json``, ``jsonpath`` (a list of ``{"expression": ..., "value": ...}``),
      ``text``, ``callback``;
    - a list or tuple: any of its items (each in any accepted form) must hold;
    - any other callable: called with the response, its result's truth.

    >>> as_condition({"status_code": 200, "jsonpath": [{"expression": "$.state", "value": "done"}]})
    Status(200) & (JsonPath('$.state') == 'done')
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
