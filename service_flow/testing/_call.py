"""Calling one service, or one flow, the way a flow would, and seeing what it did."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from service_flow._spec import spec_of
from service_flow._text import short_repr
from service_flow.exceptions import FlowError, InvalidInput
from service_flow.flow import Flow, Step

_UNSET: Any = object()


def _context(context: Mapping[str, Any] | None, what: str) -> dict[str, Any]:
    given: object = context
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        msg = f"{what} takes a mapping as the context, got {type(given).__name__}: {short_repr(given)}"
        raise InvalidInput(msg)
    return dict(given)


def _changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in after.items() if key not in before or before[key] is not value}


def _capturing(service: object) -> tuple[Flow, list[Any]]:
    spec = spec_of(service)
    returned: list[Any] = []
    original = spec.call
    if spec.is_async:

        async def capture_async(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            returned.append(result)
            return result

        capture: Any = capture_async
    else:

        def capture_sync(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            returned.append(result)
            return result

        capture = capture_sync
    return Flow(nodes=(Step(dataclasses.replace(spec, call=capture)),)), returned


def call(service: Any, context: Mapping[str, Any] | None = None) -> Any:
    """Call ``service`` with its parameters filled from ``context``, exactly as a flow does.

    The context may hold keys the service does not take. For a service, what it returned
    comes back, as it returned it; for a `Flow`, the keys it set or changed. A missing
    key raises the flow's `MissingContextKey` naming the service and the key; an around
    service runs with nothing after it. For async services and flows, use `acall`.

    >>> def add_tax(total, rate=0.2):
    ...     return {"total": round(total * (1 + rate), 2)}
    >>> call(add_tax, {"total": 10, "user": "ann"})
    {'total': 12.0}
    """
    ctx = _context(context, "call()")
    flow, returned = (service, []) if isinstance(service, Flow) else _capturing(service)
    if flow.is_async:
        msg = f"{flow.name!r} is async: use `await acall(...)` to call it"
        raise FlowError(msg, flow=flow.name)
    if flow is service:
        return _changes(ctx, flow(ctx))
    flow(ctx)
    return returned[0] if returned else None


async def acall(service: Any, context: Mapping[str, Any] | None = None) -> Any:
    """`call` for async services and flows (sync ones work too): await it."""
    ctx = _context(context, "acall()")
    if isinstance(service, Flow):
        result = service(ctx)
        if service.is_async:
            result = await result
        return _changes(ctx, result)
    flow, returned = _capturing(service)
    result = flow(ctx)
    if flow.is_async:
        await result
    return returned[0] if returned else None
