"""The Celery app the tests' workers run: flows that raise each control exception.

A worker imports it with ``celery -A celery_app worker`` (tests/ on ``PYTHONPATH``) and
reads the Redis URL and the key prefix from the environment; the tests build the same
app with `make_app` to send tasks and read results.  The services keep their counters in
Redis, the one place the test process and the worker processes both see.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import redis
from celery import Celery

from service_flow import Fatal, Flow, Retry, RetryPolicy, Service, StopFlow
from service_flow.celery import flow_task

VISIBILITY_TIMEOUT = 4  # seconds before Redis hands an unacknowledged message out again


class Store:
    """A Redis connection as a resource: ``setup()`` (re)connects and counts itself."""

    def __init__(self, url: str, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self.client: redis.Redis | None = None
        self.generation = 0

    def connect(self) -> redis.Redis:
        if self.client is None:
            self.client = redis.Redis.from_url(self.url)
        return self.client

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def setup(self) -> None:
        self.client = redis.Redis.from_url(self.url)
        self.generation = int(self.client.incr(self.key("setups")))

    def teardown(self) -> None:
        client = self.connect()
        client.incr(self.key("teardowns"))
        client.close()
        self.client = None


class Act(Service):
    """Does what the input's ``action`` asks, counting attempts per input ``id``."""

    provides = ("done", "generation")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.resources = (store,)

    def __call__(self, id: str, action: str) -> dict[str, Any]:  # noqa: A002 - the input's own name
        client = self.store.connect()
        attempt = int(client.incr(self.store.key(f"attempts:{id}")))
        if action == "stop":
            raise StopFlow(f"nothing to do for {id}")
        if action == "retry_twice" and attempt < 3:
            raise Retry(f"busy ({attempt})", delay=0.2)
        if action == "retry_forever":
            raise Retry(f"still busy ({attempt})")
        if action == "fatal_once" and attempt == 1:
            raise Fatal(f"connection lost ({attempt})")
        if action == "fatal_while_broken" and client.exists(self.store.key("broken")):
            raise Fatal(f"cannot work ({attempt})")
        if action == "fail":
            raise ValueError(f"bad input {id}")
        if action == "hang_once" and attempt == 1:
            client.set(self.store.key(f"running:{id}"), os.getpid())
            time.sleep(60)  # until the test kills this process
        return {"done": attempt, "generation": self.store.generation, "pid": os.getpid()}


def make_app(url: str, prefix: str) -> Celery:
    """The app, its tasks registered, talking to the Redis at *url*."""
    app = Celery("service_flow_tests", broker=url, backend=url, set_as_current=False)
    app.conf.update(
        task_default_queue=prefix,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # Look for abandoned messages every second, not every 100 (kombu's default).
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        result_expires=600,
    )
    store = Store(url, prefix)
    fast = RetryPolicy(max_attempts=3, initial=0.05, jitter=0)
    flow = Flow(Act(store)).named("actions")
    options = {"retry": fast, "restart": fast, "max_restarts": 2}
    flow_task(app, flow, name="tests.actions", **options)
    flow_task(app, flow, name="tests.actions_exported", exports=["done"], **options)
    return app


def _die_with_the_tests(parent: int) -> None:
    """Kill this worker and its pool when the test process that started it is gone.

    A test run killed from outside (a CI timeout) runs no fixture finalizer: without this,
    its workers would poll Redis forever.  The worker leads a process group of its own.
    """
    while os.getppid() == parent:
        time.sleep(0.5)
    os.killpg(0, signal.SIGKILL)


if "SERVICE_FLOW_CELERY_PARENT" in os.environ:
    parent = int(os.environ["SERVICE_FLOW_CELERY_PARENT"])
    threading.Thread(target=_die_with_the_tests, args=(parent,), daemon=True).start()

app = make_app(
    os.environ.get("SERVICE_FLOW_CELERY_URL", "redis://127.0.0.1:6379/0"),
    os.environ.get("SERVICE_FLOW_CELERY_PREFIX", "service-flow-tests"),
)
