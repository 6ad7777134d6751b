"""An async checkout flow behind a Starlette endpoint, served by uvicorn: POST /orders.

Run it with ``python examples/webapp_starlette.py [--port 8000]`` (``pip install starlette
uvicorn``), then post an order::

    curl -si 127.0.0.1:8000/orders -H 'Content-Type: application/json' \\
        -d '{"sku": "book", "quantity": 2, "payment": "card", "card": "tok_visa", "email": "ann@example.org"}'

The same checkout as ``webapp_flask.py``, with async services run by ``flow.arun()``:
validate the order, reserve the stock, charge the card or send an invoice, notify the
customer. `Answers` turns each run into the HTTP answer: 200 with the order, 409 when
out of stock, 422 for a bad order (naming the field), 503 with ``Retry-After`` when the
payment provider is busy (card ``tok_busy``), and 500 without details for anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import uuid
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import Route

from service_flow import Around, AsyncCallNext, InvalidInput, Retry, Service, StopFlow, service
from service_flow.web import Answers

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

PRICES = {"book": 12.5, "lamp": 40.0, "pen": 1.2}
ORDER_FIELDS = ("sku", "quantity", "payment", "card", "email")  # what an order may hold
MAX_BODY = 64 * 1024
ORDER_NUMBERS = itertools.count(1)


@service(provides=("order_id", "total"))
def validate_order(sku: str, quantity: int, email: str) -> dict[str, Any]:
    """Refuse what cannot be an order; number and price what can."""
    if not isinstance(sku, str) or sku not in PRICES:
        raise InvalidInput(f"there is no product {sku!r}", key="sku")
    if type(quantity) is not int or quantity < 1:
        raise InvalidInput("quantity must be a whole number, at least 1", key="quantity")
    if not isinstance(email, str) or "@" not in email:
        raise InvalidInput("email must be an email address", key="email")
    return {"order_id": next(ORDER_NUMBERS), "total": round(PRICES[sku] * quantity, 2)}


class ReserveStock(Around):
    """Take the items out of the stock for the rest of the checkout; put them back if it fails."""

    provides = ()

    def __init__(self, stock: dict[str, int]) -> None:
        self.stock = stock

    async def __call__(self, sku: str, quantity: int, call_next: AsyncCallNext) -> None:
        left = self.stock.get(sku, 0)  # no await between reading and taking: no other task runs
        if left < quantity:
            raise StopFlow(f"only {left} {sku} left")
        self.stock[sku] = left - quantity
        try:
            await call_next()
        except Exception:
            self.stock[sku] += quantity
            raise


@service(provides=("charge_id",))
async def charge_card(card: str, total: float) -> dict[str, str]:
    """Charge the card: a stand-in for a payment provider, with test tokens like Stripe's."""
    await asyncio.sleep(0)  # a real one awaits the provider's API here
    if card == "tok_busy":
        raise Retry("the payment provider is busy", delay=30)
    print(f"charged {total:.2f} EUR")
    return {"charge_id": f"ch_{uuid.uuid4().hex[:12]}"}


@service(provides=("invoice_id",))
async def send_invoice(order_id: int) -> dict[str, str]:
    """Invoice the order, due in 30 days."""
    return {"invoice_id": f"INV-{order_id}"}


class Notify(Service):
    """Tell the customer the order is placed."""

    provides = ("notified",)

    def __init__(self, send_mail: Callable[[str, str], Awaitable[None]]) -> None:
        self.send_mail = send_mail

    async def __call__(self, email: str, order_id: int, total: float) -> dict[str, bool]:
        await self.send_mail(email, f"Order {order_id} is placed: {total:.2f} EUR.")
        return {"notified": True}


async def print_mail(to: str, text: str) -> None:
    print(f"mail to {to}: {text}")


async def read_json(request: Request) -> Any:
    """The request's JSON body, ``None`` if it is not JSON; 413 past MAX_BODY bytes."""
    if request.headers.get("content-type", "").partition(";")[0].strip() != "application/json":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise HTTPException(413, "request entity too large")
    try:
        return json.loads(body)
    except ValueError:
        return None


def create_app(
    stock: dict[str, int] | None = None, send_mail: Callable[[str, str], Awaitable[None]] = print_mail
) -> Starlette:
    """The app, its flow checked before it serves anything; ``stock`` is changed as orders come."""
    checkout = (
        (
            validate_order >> ReserveStock({"book": 3, "lamp": 0, "pen": 100} if stock is None else stock)
            < ("payment", {"card": charge_card, "invoice": send_invoice})
        )
        >> Notify(send_mail)
    ).named("checkout")
    checkout.validate(given=ORDER_FIELDS)  # raises ValidationError: an invalid flow never serves
    answers = Answers(keys=("order_id", "total", "charge_id", "invoice_id"))

    async def place_order(request: Request) -> JSONResponse:
        order = await read_json(request)
        if order is None:
            return JSONResponse({"error": "invalid input", "message": "the body must be a JSON object"}, 400)
        status, body, headers = answers(await checkout.arun(order))  # a non-object body is a 422
        return JSONResponse(body, status, headers)

    async def http_error(_request: Request, error: Exception) -> JSONResponse:
        """Starlette's own answers (404, 405, 413...) in JSON too."""
        if not isinstance(error, HTTPException):  # only registered for HTTPException
            raise error
        return JSONResponse({"error": error.detail.lower()}, error.status_code, error.headers)

    return Starlette(
        routes=[Route("/orders", place_order, methods=["POST"])],
        exception_handlers={HTTPException: http_error},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    uvicorn.run(create_app(), host="127.0.0.1", port=parser.parse_args().port)


if __name__ == "__main__":
    main()
