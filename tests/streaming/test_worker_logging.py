"""The worker's logging: Faust's start-up spinner no longer puts the root logger at DEBUG
(``streams/app.py`` ``faust_worker``), so debug calls of aiokafka and Faust build no records."""

from __future__ import annotations

import logging

import faust
import pytest

from ramparts.streams.app import faust_worker


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    saved = root.level, list(root.handlers)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]


@pytest.mark.parametrize("loglevel, debug", [("warn", False), ("info", False), ("debug", True)])
def test_the_worker_logs_at_its_level_and_builds_no_debug_records_above_it(root_logging, loglevel, debug):
    app = faust.App("ramparts-logging-test", broker="kafka://127.0.0.1:9", web_enabled=False)
    worker = faust_worker(app, loglevel)
    worker._setup_logging()  # what the worker does first when it runs
    for name in ("aiokafka.producer.producer", "faust.topics", "ramparts.worker"):
        assert logging.getLogger(name).isEnabledFor(logging.DEBUG) is debug
    assert logging.getLogger("ramparts.worker").isEnabledFor(logging.WARNING)


def test_faust_alone_puts_the_root_logger_at_debug_for_its_spinner(root_logging):
    """What ``faust_worker`` undoes: if Faust stops doing this, the spinner line can go."""
    from faust.worker import Worker

    app = faust.App("ramparts-logging-test-2", broker="kafka://127.0.0.1:9", web_enabled=False)
    worker = Worker(app, loglevel="warn", quiet=True, redirect_stdouts=False)
    worker._setup_logging()
    assert logging.getLogger("aiokafka").isEnabledFor(logging.DEBUG)
