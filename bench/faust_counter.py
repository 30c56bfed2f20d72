"""The faust ceiling: an agent that only counts events, nothing else.

Run as ``python -m bench.faust_counter BOOTSTRAP TOPIC GROUP COUNT MODE OUT``;
MODE is ``events`` (one event at a time) or ``take`` (the worker's batches).
It writes the seconds from the first event to the COUNT-th to OUT and exits.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import faust

from infra.settings import WorkerSettings

logger = logging.getLogger(__name__)

# The worker's batches (its defaults, or MENTORFLOW_BATCH_SIZE and
# MENTORFLOW_BATCH_WINDOW_S as the bench was given them), which the take mode
# takes as the worker does.
_WORKER = WorkerSettings()


def main(argv: list[str]) -> None:
    """Count COUNT events of TOPIC and write how long it took."""
    bootstrap, topic_name, group, count_text, mode, out = argv
    count = int(count_text)
    app = faust.App(
        group,
        broker=f"kafka://{bootstrap}",
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
        topic_disable_leader=True,
        topic_allow_declare=False,
        web_enabled=False,
        datadir=str(Path(out).parent / f"faust-{group}"),
    )
    topic = app.topic(topic_name, key_serializer="raw", value_serializer="raw")
    seen = 0
    first = 0.0

    def finish() -> None:
        Path(out).write_text(json.dumps({"seconds": time.perf_counter() - first}))
        # The process is a measuring probe: a clean faust shutdown adds nothing.
        os._exit(0)

    @app.agent(topic)
    async def count_events(stream: Any) -> None:
        nonlocal seen, first
        if mode == "take":
            batches = stream.noack_take(
                _WORKER.batch_size, within=_WORKER.batch_window_s
            )
            async for events in batches:
                if not seen:
                    first = time.perf_counter()
                for event in events:
                    await stream.ack(event)
                seen += len(events)
                if seen >= count:
                    finish()
        else:
            async for _event in stream.events():
                if not seen:
                    first = time.perf_counter()
                seen += 1
                if seen >= count:
                    finish()

    sys.argv = [sys.argv[0], "worker", "-l", "warn", "--without-web"]
    app.main()


if __name__ == "__main__":
    main(sys.argv[1:])
