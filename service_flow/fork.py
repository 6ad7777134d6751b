"""The original service-flow's ``service_flow.fork`` module, kept for its imports.

Forks are now nodes of a flow (`service_flow.flow.Fork`); build one with ``<`` or
`service_flow.fork_on`.
"""

from __future__ import annotations

from service_flow.exceptions import ForkException
from service_flow.flow import DEFAULT, Fork

__all__ = ["DEFAULT", "Fork", "ForkException"]
