"""What ``up`` and ``down`` report about each service, one row per service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ServiceState", "ServiceStatus"]

ServiceState = Literal["started", "reused", "stopped", "not running"]
"""``reused`` covers both a process we started earlier and a service someone else runs."""


@dataclass(frozen=True)
class ServiceStatus:
    """The outcome of bringing one service up or down.

    Attributes:
        name: ``kafka`` or ``redis``.
        state: what this call did; ``reused`` means the service was already answering.
        address: where clients reach it (``host:port`` or the Redis URL).
        pid: the process we started (or found through our pid file); ``None`` when the service
            belongs to someone else or nothing runs, because then it is not ours to stop.
        seconds: wall time this call spent on the service, so slow starts are visible.
    """

    name: str
    state: ServiceState
    address: str
    pid: int | None
    seconds: float
