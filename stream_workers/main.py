"""The worker process: the event loop, the collector's settings, faust, and the re-exec that
applies new definitions.

``headwater worker`` calls ``run_worker``; it lives here, beside the faust app it runs,
because these choices are the worker's throughput (measured below), not the CLI's.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence

from headwater.schemas.settings import Settings

__all__ = ["run_worker"]


def run_worker(settings: Settings, *, restart: Sequence[str]) -> None:
    """Run the faust worker for every applied feature set until it stops.

    Args:
        settings: the deployment's settings.
        restart: the command line that starts this worker again (``python -m headwater
            worker``): run in this process (same pid) when new definitions asked for a reload.
    """
    import mode.loop

    # uvloop before faust creates its loop: about 20 % more events/s for a bare faust agent
    # on this project's 2-core machines (bench/faust_baseline.py: 16.6k -> 20.3k).
    mode.loop.use("uvloop")
    import faust

    from headwater.stream_workers.app import create_app, reload_requested

    faust_app = create_app(settings)
    # A batch allocates about a hundred thousand short-lived objects next to a large cache
    # of entity states; with the default thresholds the collector runs hundreds of times per
    # batch and its full passes walk the cache: a quarter of a worker's time (34k vs 26k
    # events/s for the processor alone). Rarer young collections keep cycles collected.
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    stops = 0

    class Worker(faust.Worker):
        """Counts the stop signals: a reload sends itself exactly one SIGTERM, so a second
        one (or a SIGINT) is a supervisor's, and the worker must stop, not restart."""

        def _on_sigterm(self) -> None:
            nonlocal stops
            stops += 1
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            nonlocal stops
            stops += 2
            super()._on_sigint()

    try:
        Worker(
            faust_app, loglevel="INFO", quiet=True, override_logging=True
        ).execute_from_commandline()
    finally:
        if reload_requested() and stops <= 1:
            # Same pid, fresh interpreter: supervisors and tests keep tracking one process.
            os.execv(restart[0], list(restart))
