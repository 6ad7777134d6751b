"""A checkout flow behind a Flask endpoint: POST /orders with a JSON order.

Run it with ``python examples/webapp_flask.py [--port 8000]`` (``pip install flask``),
then post an order::

    curl -si 127.0.0.1:8000/orders -H 'Content-Type: application/json' \\
        -d '{"sku": "book", "quantity": 2, "payment": "card", "card": "tok_visa", "email": "ann@example.org"}'

The flow validates the order, reserves the stock, charges the card or sends an invoice,
and notifies the customer. `Answers` turns each run into the HTTP answer: 200 with the
order, 409 when out of stock, 422 for a bad order (naming the field), 503 with
``Retry-After`` when the payment provider is busy (card ``tok_busy``), and 500 without
details when anything else goes wrong.
"""

from __future__ import annotations

import argparse
import itertools
import threading
import uuid
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

from service_flow import Around, CallNext, InvalidInput, Retry, Service, StopFlow, service
from service_flow.web import Answers

if TYPE_CHECKING:
    from collections.abc import Callable

PRICES = {"book": 12.5, "lamp": 40.0, "pen": 1.2}
ORDER_FIELDS = ("sku", "quantity", "payment", "card", "email")  # what an order may hold


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
        self.lock = threading.Lock()  # Flask serves requests in threads

    def __call__(self, sku: str, quantity: int, call_next: CallNext) -> None:
        with self.lock:
            left = self.stock.get(sku, 0)
            if left < quantity:
                raise StopFlow(f"only {left} {sku} left")
            self.stock[sku] = left - quantity
        try:
            call_next()
        except Exception:
            with self.lock:
                self.stock[sku] += quantity
            raise


@service(provides=("charge_id",))
def charge_card(card: str, total: float) -> dict[str, str]:
    """Charge the card: a stand-in for a payment provider, with test tokens like Stripe's."""
    if card == "tok_busy":
        raise Retry("the payment provider is busy", delay=30)
    print(f"charged {total:.2f} EUR")
    return {"charge_id": f"ch_{uuid.uuid4().hex[:12]}"}


@service(provides=("invoice_id",))
def send_invoice(order_id: int) -> dict[str, str]:
    """Invoice the order, due in 30 days."""
    return {"invoice_id": f"INV-{order_id}"}


class Notify(Service):
    """Tell the customer the order is placed."""

    provides = ("notified",)

    def __init__(self, send_mail: Callable[[str, str], None]) -> None:
        self.send_mail = send_mail

    def __call__(self, email: str, order_id: int, total: float) -> dict[str, bool]:
        self.send_mail(email, f"Order {order_id} is placed: {total:.2f} EUR.")
        return {"notified": True}


def print_mail(to: str, text: str) -> None:
    print(f"mail to {to}: {text}")


def create_app(stock: dict[str, int] | None = None, send_mail: Callable[[str, str], None] = print_mail) -> Flask:
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

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024  # a larger body is answered 413

    @app.post("/orders")
    def place_order() -> tuple[dict[str, Any], int, dict[str, str]]:
        order = request.get_json(silent=True)  # None if the body is not JSON
        if order is None:
            return {"error": "invalid input", "message": "the body must be a JSON object"}, 400, {}
        status, body, headers = answers(checkout.run(order))  # a non-object body is a 422
        return body, status, headers

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[dict[str, Any], int]:
        """Flask's own answers (404, 405, 413...) in JSON too."""
        return {"error": error.name.lower()}, error.code or 500

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    create_app().run(host="127.0.0.1", port=parser.parse_args().port)


if __name__ == "__main__":
    main()
