"""Async services and flows: awaiting, forks, around services, blocking services in threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from service_flow import (
    DEFAULT,
    Around,
    AsyncCallNext,
    Flow,
    FlowDefinitionError,
    FlowError,
    Service,
    StopFlow,
    service,
)
from service_flow.middleware import DecoratorMiddleware


async def fetch(user_id: int) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"user": f"user-{user_id}"}


class Greet(Service):
    async def __call__(self, user: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"greeting": f"hello {user}"}


def shout(greeting: str) -> dict[str, str]:
    return {"loud": greeting.upper()}


def test_a_flow_with_an_async_service_returns_an_awaitable() -> None:
    flow = Flow(fetch) >> Greet() >> shout
    assert flow.is_async
    result = flow({"user_id": 7})
    assert asyncio.iscoroutine(result)
    assert asyncio.run(result) == {"user_id": 7, "user": "user-7", "greeting": "hello user-7", "loud": "HELLO USER-7"}


def test_arun_returns_a_run_and_run_refuses_async_flows() -> None:
    flow = (Flow(fetch) >> Greet()).named("greet")
    run = asyncio.run(flow.arun({"user_id": 1}))
    assert run.succeeded
    assert [r.name for r in run.steps] == ["fetch", "Greet"]
    with pytest.raises(FlowError, match=r"has async services \(fetch, Greet\): use `await flow.arun"):
        flow.run({"user_id": 1})


def test_arun_of_a_sync_flow_works_too() -> None:
    run = asyncio.run(Flow(shout).arun({"greeting": "hi"}))
    assert run.context["loud"] == "HI"


def test_a_fork_inside_an_async_flow() -> None:
    flow = Flow(fetch) < ("kind", {"vip": Greet() >> shout, DEFAULT: None})
    assert asyncio.run(flow({"user_id": 1, "kind": "vip"}))["loud"] == "HELLO USER-1"
    assert "greeting" not in asyncio.run(flow({"user_id": 1, "kind": "x"}))


def test_stop_flow_in_an_async_flow() -> None:
    async def refuse() -> None:
        raise StopFlow("no")

    run = asyncio.run((Flow(fetch) >> refuse).arun({"user_id": 1}))
    assert run.stopped
    assert run.error is not None
    assert run.error.step == "refuse"
    with pytest.raises(StopFlow):
        asyncio.run((Flow(fetch) >> refuse)({"user_id": 1}))


def test_async_around_services_in_both_spellings() -> None:
    class Timed(Around):
        async def __call__(self, call_next: AsyncCallNext) -> dict[str, bool]:
            await call_next()
            return {"timed": True}

    class Wrapped(DecoratorMiddleware):
        async def __call__(self, context: dict[str, Any]) -> dict[str, bool]:
            await self.app(context)  # type: ignore[misc]
            return {"wrapped": True}

    flow = Timed() >> Wrapped() >> fetch
    assert asyncio.run(flow({"user_id": 2})) == {"user_id": 2, "timed": True, "wrapped": True, "user": "user-2"}


def test_a_sync_around_service_over_async_steps_is_refused_with_advice() -> None:
    class Handler(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> None:
            self.app(context)  # type: ignore[misc]

    flow = Handler() >> fetch
    with pytest.raises(FlowDefinitionError, match=r"Handler is synchronous but wraps async steps \(fetch\)"):
        asyncio.run(flow({"user_id": 1}))


def test_a_sync_around_service_over_sync_steps_works_in_an_async_flow() -> None:
    class Handler(DecoratorMiddleware):
        def __call__(self, context: dict[str, Any]) -> dict[str, bool]:
            self.app(context)  # type: ignore[misc]
            return {"handled": True}

    flow = Flow(fetch) >> Handler() >> (lambda user: {"n": len(user)})
    assert asyncio.run(flow({"user_id": 1})) == {"user_id": 1, "user": "user-1", "n": 6, "handled": True}


def _run_needing_the_loop(make_flow: Any) -> dict[str, Any]:
    """Run the flow `make_flow(blocking_step)` while the event loop must stay free.

    The blocking step waits, in its thread, for a coroutine on the event loop to release
    it: had it been run on the loop itself, the release could never happen.
    """
    released = threading.Event()

    @service(blocking=True)
    def wait_for_release(user: str) -> dict[str, str]:
        assert released.wait(timeout=5), "the event loop was blocked"
        return {"thread": threading.current_thread().name}

    async def main() -> dict[str, Any]:
        async def release() -> None:
            await asyncio.sleep(0.01)
            released.set()

        result, _ = await asyncio.gather(make_flow(wait_for_release)({"user_id": 1}), release())
        return result  # type: ignore[no-any-return]

    return asyncio.run(main())


def test_a_blocking_service_runs_in_a_thread_and_does_not_stall_the_event_loop() -> None:
    result = _run_needing_the_loop(lambda blocking: Flow(fetch) >> blocking)
    assert result["thread"] != threading.main_thread().name


def test_an_awaitable_returned_by_a_sync_service_is_awaited_in_an_async_flow() -> None:
    def indirect(user_id: int) -> Any:
        return fetch(user_id)  # a coroutine, from a plain function

    flow = Flow(fetch) >> Flow(indirect).named("x")
    assert asyncio.run(flow({"user_id": 3}))["user"] == "user-3"


def test_an_awaitable_in_a_sync_flow_is_an_error_not_silently_dropped() -> None:
    def indirect(user_id: int) -> Any:
        return fetch(user_id)

    with pytest.raises(FlowDefinitionError, match="indirect returned an awaitable where the flow runs synchronously"):
        Flow(indirect)({"user_id": 1})


def test_concurrent_async_runs_keep_their_contexts_apart() -> None:
    async def slow_echo(n: int) -> dict[str, int]:
        await asyncio.sleep(0.001 * (n % 3))
        return {"echo": n}

    async def main() -> list[dict[str, Any]]:
        flow = Flow(slow_echo) >> (lambda echo: {"double": echo * 2})
        return list(await asyncio.gather(*(flow({"n": n}) for n in range(50))))

    assert [r["double"] for r in asyncio.run(main())] == [n * 2 for n in range(50)]


def test_blocking_steps_inside_a_sync_around_service_keep_the_loop_free() -> None:
    from service_flow import CallNext, around

    @around
    def timed(call_next: CallNext) -> dict[str, bool]:
        call_next()
        return {"timed": True}

    result = _run_needing_the_loop(lambda blocking: Flow(fetch) >> timed >> blocking)
    assert result["timed"] is True
    assert result["thread"] != threading.main_thread().name


def test_a_service_wrapping_an_async_callable_object_is_async() -> None:
    class Lookup:
        async def __call__(self, user_id: int) -> dict[str, int]:
            return {"found": user_id}

    wrapped = service(Lookup())
    assert wrapped.is_async
    flow = Flow(wrapped)
    assert flow.is_async
    assert asyncio.run(flow({"user_id": 4}))["found"] == 4
