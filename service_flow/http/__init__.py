"""HTTP services built on `requests`: requests, captures and checks, polling, limits, auth."""

from __future__ import annotations

__all__: list[str] = []
