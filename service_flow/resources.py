"""Resources: what a service holds open (a session, a connection) and how to renew it.

A *resource* is any object with a ``setup()`` and/or a ``teardown()`` method.  A service
is a resource itself when it has them, and it can name others it uses in a
``resources`` attribute (an HTTP request service lists its client)::

    class SaveOrder(Service):
        def __init__(self, dsn):
            self.dsn = dsn
            self.setup()

        def setup(self):
            self.db = connect(self.dsn)

        def teardown(self):
            self.db.close()

When a service raises `Fatal`, whatever runs the flow (the driver, a Celery worker) calls
every resource's ``teardown()`` and then every ``setup()`` before processing again.  A
resource shared by several services is renewed once.  ``setup()`` should leave the
resource ready whether or not it was torn down before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from service_flow import _log
from service_flow.flow import Flow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator


__all__ = ["Resources"]


def _is_resource(obj: object) -> bool:
    return callable(getattr(obj, "setup", None)) or callable(getattr(obj, "teardown", None))


def _candidates(service: Any) -> Iterator[Any]:
    if isinstance(service, type):  # a class is not an instance holding anything
        return
    yield service
    listed = getattr(service, "resources", None)
    if listed is not None and not isinstance(listed, (str, bytes)) and hasattr(listed, "__iter__"):
        yield from listed


class Resources:
    """The resources of a flow's services, in the order the flow first uses them."""

    def __init__(self, items: tuple[object, ...]) -> None:
        self.items = items

    @classmethod
    def of(cls, flow: Flow | Callable[..., Any]) -> Resources:
        """Every distinct resource of every step of ``flow`` (branches and sub-flows too).

        ``flow`` may also be a single service.
        """
        seen: dict[int, object] = {}
        for step in (flow if isinstance(flow, Flow) else Flow(flow)).iter_steps():
            for candidate in _candidates(step.service):
                if _is_resource(candidate):
                    seen.setdefault(id(candidate), candidate)
        return cls(tuple(seen.values()))

    def setup(self) -> None:
        """Call each resource's ``setup()``, in flow order; the first failure propagates."""
        for item in self.items:
            hook = getattr(item, "setup", None)
            if callable(hook):
                hook()

    def teardown(self) -> list[BaseException]:
        """Call each ``teardown()`` in reverse order; failures are logged and returned, not raised.

        A broken resource often fails to close; that must not keep the others from closing
        or the restart from going on.
        """
        errors: list[BaseException] = []
        for item in reversed(self.items):
            hook = getattr(item, "teardown", None)
            if not callable(hook):
                continue
            try:
                hook()
            except Exception as error:  # noqa: BLE001 - reported, and the others still close
                errors.append(error)
                if not structlog.is_configured():  # nobody asked: the caller reports the restart
                    continue
                _log.logger().warning(
                    "resource.teardown_failed",
                    resource=type(item).__name__,
                    error=_log.describe_error(error),
                )
        return errors

    def restart(self) -> None:
        """Tear every resource down, then set every one up again."""
        self.teardown()
        self.setup()

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        names = ", ".join(type(item).__name__ for item in self.items)
        return f"Resources({names})"
