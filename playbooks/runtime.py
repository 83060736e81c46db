"""Build an engine from the configuration: playbooks, actions, state, audit log, outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from .actions import action_params, build_actions
from .audit import AuditLog
from .engine import Engine
from .model import load_playbooks
from .state import State


def open_engine(config, *, store=None, sink=None, clock: Callable[[], float] = time.time, env=None,
                with_outputs: bool = True, state_dir: str | None = None) -> Engine:
    """An engine for ``config``; ``sink`` (a ClickHouseSink) holds the audit log, or one is opened
    from ``store`` (``--store``) / ``store.dsn``. The caller closes ``engine.sink`` and ``engine.state``."""
    pc = config.playbooks
    playbooks = load_playbooks(pc.dir, action_params())
    actions = build_actions(pc.actions)
    if sink is None:
        from ramparts.sinks.clickhouse import ClickHouseSink
        sink = ClickHouseSink.from_config(config.store, dsn_override=store)
    state = State(Path(state_dir or pc.state_dir))
    audit = AuditLog(sink.backend, sink.database, state)
    outputs = []
    if with_outputs and config.outputs:
        from ramparts.sinks.outputs import build_outputs
        outputs = build_outputs(config, env)
    return Engine(playbooks, actions, state, audit, sink=sink, outputs=outputs,
                  max_per_target=pc.max_actions_per_target_per_hour, clock=clock, env=env)


def close_engine(engine: Engine) -> None:
    engine.state.close()
    if engine.sink is not None:
        engine.sink.close()
