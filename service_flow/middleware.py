"""The service classes of the original service-flow, kept for code written for it.

``from service_flow.middleware import Middleware, DecoratorMiddleware`` keeps working:

- `Middleware` is `service_flow.Service`;
- `DecoratorMiddleware` is an around service in the original style: its ``__call__``
  receives the context and runs the rest of the flow with ``self.app(context)``;
- `LambdaMiddleware` wraps a function as a service.

New code can use `service_flow.Around` (``call_next``) for around services.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from service_flow._plan import CURRENT_APP
from service_flow.service import FunctionService, Service

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DecoratorMiddleware", "LambdaMiddleware", "Middleware"]

Middleware = Service


class DecoratorMiddleware(Service):
    """An around service: ``self.app(context)`` runs the rest of the flow.

    ::

        class ExceptionHandler(DecoratorMiddleware):
            def __call__(self, context):
                try:
                    self.app(context)
                except ZeroDivisionError:
                    return {"error": "divided by zero"}

    In a flow, ``self.app`` is the rest of the flow for the run in progress (safe across
    threads and tasks: one instance can serve many flows and runs at once).  Outside a
    flow, assign ``self.app`` yourself, for instance in a unit test.  In an async flow,
    define ``async def __call__`` and ``await self.app(context)``.
    """

    __service_flow_around__: ClassVar[str] = "app"

    def __init__(self) -> None:
        self._app: Callable[..., Any] | None = None

    @property
    def app(self) -> Callable[..., Any] | None:
        """The rest of the flow: call it with the context to run the remaining steps."""
        current = CURRENT_APP.get()
        if current is not None and current[0] is self:
            return current[1]
        return self.__dict__.get("_app")

    @app.setter
    def app(self, value: Callable[..., Any] | None) -> None:
        self.__dict__["_app"] = value


class LambdaMiddleware(FunctionService):  # type: ignore[type-arg]  # [..., Any] fails at run time on 3.9
    """A function (or lambda) as a service, as the original wrapped lambdas."""

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__(func)
