"""User-given names and values as the library writes them: checked names, short reprs.

Names, keys and fork keys end up in generated source, in error messages and in logs: only
real ``str`` values are accepted (a ``str`` subclass can override ``__repr__`` or
``__format__``), and a NUL character is refused.  Values (a fork's unknown value, a
branch's key) are shown through `reprlib`, so that a huge or deeply nested value costs
microseconds, never a full repr, and a ``__repr__`` that raises cannot hide the error.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING

from service_flow.exceptions import FlowDefinitionError

if TYPE_CHECKING:
    from collections.abc import Iterable

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlong = 40
for _name in ("maxtuple", "maxlist", "maxarray", "maxdict", "maxset", "maxfrozenset", "maxdeque"):
    setattr(_REPR, _name, 6)

_MAX_CHARS = 80


def short_repr(value: object, limit: int = _MAX_CHARS) -> str:
    """``repr(value)`` cut short, at a cost bounded by *limit* whatever the value."""
    try:
        text = _REPR.repr(value)
    except Exception as error:  # noqa: BLE001 - a value whose repr fails is still named
        return f"<{type(value).__name__} whose repr raised {type(error).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def listing(items: Iterable[str], limit: int = 10) -> str:
    """*items* joined with commas, the first *limit* of them and how many more."""
    every = list(items)
    if len(every) <= limit:
        return ", ".join(every)
    return f"{', '.join(every[:limit])} and {len(every) - limit} more"


def check_name(value: object, what: str) -> str:
    """*value* if it is a real ``str`` without NUL; else `FlowDefinitionError` naming *what*."""
    if type(value) is not str:
        msg = f"{what} must be a str, got {type(value).__name__}: {short_repr(value)}"
        raise FlowDefinitionError(msg)
    if "\x00" in value:
        msg = f"{what} must not contain a NUL character, got {short_repr(value)}"
        raise FlowDefinitionError(msg)
    return value


__all__ = ["check_name", "listing", "short_repr"]
