"""The worker's logging keeps the configured level: no library debug records on the hot path."""

from __future__ import annotations

import logging

import faust

from engine.cli_worker import make_worker


def test_worker_logging_keeps_the_configured_level() -> None:
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    try:
        app = faust.App("abengine-logging-test", broker="kafka://127.0.0.1:1")
        worker = make_worker(app, "warning")
        worker._setup_logging()  # what faust runs when the worker starts
        assert root.getEffectiveLevel() == logging.WARNING
        # aiokafka logs a debug line per produced record: it must not even build the record
        assert not logging.getLogger("aiokafka.producer.producer").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
