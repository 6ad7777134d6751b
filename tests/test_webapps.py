"""The web-app examples, served on 127.0.0.1 and asked over real HTTP as a client would."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
import uvicorn
from werkzeug.serving import make_server

from service_flow import ValidationError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
GOOD = {"sku": "book", "quantity": 2, "payment": "card", "card": "tok_visa", "email": "ann@example.org"}
SECRET = "hunter2"  # noqa: S105 - a made-up secret that must not leak


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_MODULES = {"flask": load("webapp_flask"), "starlette": load("webapp_starlette")}


class Shop:
    """An example app served on 127.0.0.1: its URL, its stock and the mails it sent."""

    def __init__(self) -> None:
        self.url = ""
        self.stock: dict[str, int] = {}
        self.mails: list[tuple[str, str]] = []
        self.mail_fails = False
        self.reset()

    def reset(self) -> None:
        """As at start-up: the stock refilled, no mail sent, the mail server up."""
        self.stock.clear()
        self.stock.update({"book": 3, "lamp": 0, "pen": 100})
        self.mails.clear()
        self.mail_fails = False

    def send_mail(self, to: str, text: str) -> None:
        if self.mail_fails:
            raise RuntimeError(f"SMTP login as shop password={SECRET} refused")
        self.mails.append((to, text))

    async def asend_mail(self, to: str, text: str) -> None:
        await asyncio.sleep(0)
        self.send_mail(to, text)

    def order(self, **changes: Any) -> requests.Response:
        return requests.post(f"{self.url}/orders", json={**GOOD, **changes}, timeout=10)

    def post(self, data: bytes | str, content_type: str = "application/json") -> requests.Response:
        return requests.post(f"{self.url}/orders", data=data, headers={"Content-Type": content_type}, timeout=10)


def serve_flask(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app with werkzeug in a thread: its URL and how to stop it."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return f"http://127.0.0.1:{server.port}", stop


def serve_starlette(app: Any) -> tuple[str, Callable[[], None]]:
    """Serve an ASGI app with uvicorn in a thread (on a socket bound here): its URL and how to stop it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.005)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not shut down within 10 s"
        sock.close()

    return f"http://127.0.0.1:{sock.getsockname()[1]}", stop


SERVE = {"flask": serve_flask, "starlette": serve_starlette}


@pytest.fixture(scope="module", params=["flask", "starlette"])
def served(request: pytest.FixtureRequest) -> Iterator[Shop]:
    """The example app of each framework, served once for all the tests of this module."""
    framework: str = request.param
    shop = Shop()
    send = shop.send_mail if framework == "flask" else shop.asend_mail  # async services, async mail
    shop.url, stop = SERVE[framework](EXAMPLE_MODULES[framework].create_app(shop.stock, send))
    yield shop
    stop()


@pytest.fixture
def shop(served: Shop) -> Shop:
    served.reset()
    return served


def assert_failure(response: requests.Response, status: int, **body: Any) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    got: dict[str, Any] = response.json()
    assert {key: got.get(key) for key in body} == body
    return got


# -- both examples, each served by its framework --------------------------------------------


def test_a_card_order_is_charged_notified_and_answered_with_the_order(shop: Shop) -> None:
    response = shop.order()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"order_id", "total", "charge_id"}  # chosen keys only: no card, no email
    assert body["total"] == 25.0
    assert body["charge_id"].startswith("ch_")
    assert shop.stock["book"] == 1
    assert shop.mails == [("ann@example.org", f"Order {body['order_id']} is placed: 25.00 EUR.")]


def test_an_invoice_order_needs_no_card(shop: Shop) -> None:
    response = requests.post(
        f"{shop.url}/orders",
        json={"sku": "pen", "quantity": 10, "payment": "invoice", "email": "bo@example.org"},
        timeout=10,
    )
    assert response.status_code == 200
    body = response.json()
    assert body == {"order_id": body["order_id"], "total": 12.0, "invoice_id": f"INV-{body['order_id']}"}
    assert shop.stock["pen"] == 90


@pytest.mark.parametrize("body", ["[1, 2]", '"an order"', "3"])
def test_a_json_body_that_is_not_an_object_is_answered_422(shop: Shop, body: str) -> None:
    got = assert_failure(shop.post(body), 422, error="invalid input", field=None)
    assert "takes a mapping" in got["message"]
    assert got["message"].count("checkout") == 1
    assert shop.mails == []


@pytest.mark.parametrize(
    ("data", "content_type"), [("{not json", "application/json"), ("null", "application/json"), ("{}", "text/plain")]
)
def test_a_body_that_is_not_a_json_object_is_answered_400(shop: Shop, data: str, content_type: str) -> None:
    assert_failure(shop.post(data, content_type), 400, error="invalid input", message="the body must be a JSON object")


@pytest.mark.parametrize("missing", ["sku", "quantity", "email", "card"])
def test_a_missing_field_is_answered_422_naming_it(shop: Shop, missing: str) -> None:
    order = {key: value for key, value in GOOD.items() if key != missing}
    response = requests.post(f"{shop.url}/orders", json=order, timeout=10)
    assert_failure(response, 422, error="invalid input", field=missing, message=f"{missing!r} is required")
    assert shop.stock["book"] == 3  # reserved for a card order without a card, then put back
    assert shop.mails == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sku": "sofa"}, "sku"),
        ({"sku": ["book"]}, "sku"),
        ({"quantity": 0}, "quantity"),
        ({"quantity": "2"}, "quantity"),
        ({"quantity": True}, "quantity"),
        ({"email": "ann"}, "email"),
    ],
)
def test_a_value_the_order_refuses_is_answered_422_naming_the_field(
    shop: Shop, changes: dict[str, Any], field: str
) -> None:
    assert_failure(shop.order(**changes), 422, error="invalid input", field=field)


def test_an_unknown_payment_method_is_answered_422_with_the_allowed_ones(shop: Shop) -> None:
    got = assert_failure(shop.order(payment="bitcoin"), 422, field="payment", allowed=["card", "invoice"])
    assert "bitcoin" not in str(got)  # the value given is never echoed
    assert shop.stock["book"] == 3


def test_out_of_stock_is_answered_409_with_the_reason(shop: Shop) -> None:
    assert_failure(shop.order(sku="lamp", quantity=1), 409, error="stopped", reason="only 0 lamp left")
    assert shop.order(quantity=3).status_code == 200
    assert_failure(shop.order(quantity=1), 409, reason="only 0 book left")


def test_a_busy_payment_provider_is_answered_503_with_retry_after_and_the_stock_put_back(shop: Shop) -> None:
    response = shop.order(card="tok_busy")
    got = assert_failure(response, 503, error="unavailable")
    assert response.headers["Retry-After"] == "30"
    assert set(got) == {"error", "run_id"}
    assert shop.stock["book"] == 3


def test_an_internal_error_is_answered_500_without_its_details(shop: Shop) -> None:
    shop.mail_fails = True
    response = shop.order()
    got = assert_failure(response, 500, error="internal error")
    assert set(got) == {"error", "run_id"}
    for leak in (SECRET, "SMTP", "RuntimeError", "Traceback", "Notify", "tok_visa"):
        assert leak not in response.text
        assert leak not in str(response.headers)
    assert shop.stock["book"] == 3


def test_the_frameworks_own_errors_are_answered_in_json(shop: Shop) -> None:
    assert_failure(requests.get(f"{shop.url}/orders", timeout=10), 405, error="method not allowed")
    assert_failure(requests.post(f"{shop.url}/carts", json={}, timeout=10), 404, error="not found")
    assert_failure(shop.post("[" + "1, " * 30_000 + "1]"), 413, error="request entity too large")


@pytest.mark.parametrize("framework", ["flask", "starlette"])
def test_an_app_whose_flow_does_not_fit_its_orders_never_starts(
    framework: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    example = EXAMPLE_MODULES[framework]
    monkeypatch.setattr(example, "ORDER_FIELDS", ("sku", "quantity", "payment", "card"))
    with pytest.raises(ValidationError, match="'email'"):
        example.create_app()


# -- each example runs as a script -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("name", ["webapp_flask", "webapp_starlette"])
def test_the_example_serves_on_the_port_it_is_given(name: str) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = requests.post(f"http://127.0.0.1:{port}/orders", json=GOOD, timeout=5)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.communicate()[0]
                assert time.monotonic() < deadline, "the example did not serve within 30 s"
                time.sleep(0.05)
        assert response.status_code == 200
        assert response.json()["total"] == 25.0
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert "mail to ann@example.org: Order 1 is placed: 25.00 EUR." in output


def test_the_readme_shows_the_flask_endpoint_as_the_example_has_it() -> None:
    readme = (EXAMPLES.parent / "README.rst").read_text(encoding="utf-8")
    section = readme.split("\nFlows behind an endpoint\n", 1)[1].split("\nDevelopment\n", 1)[0]
    block = section.split("in Flask:\n\n.. code-block:: python\n\n", 1)[1].split("\n\n", 1)[0]
    example = (EXAMPLES / "webapp_flask.py").read_text(encoding="utf-8")
    assert block.count("\n") >= 5
    assert block in example  # both indented by 4: the README's block, the view inside create_app()
