"""Notify through the configured outputs (``outputs:``), routed as incidents are."""

from __future__ import annotations

import time

from pydantic import Field

from ramparts.errors import ActionError

from . import Action, Context, Params


class NotifyParams(Params):
    message: str = Field(default="${summary}", description="What to say (templates allowed).")
    outputs: list[str] = Field(default_factory=list, description="Output names; empty: every output that wants it.")


class Notify(Action):
    name = "notify"
    settings_key = "notify"
    revertible = False
    Params = NotifyParams

    def target(self, p) -> str:
        return "notify"

    def describe(self, p) -> str:
        return f"notify {', '.join(p.outputs) or 'the configured outputs'}: {p.message[:120]}"

    def execute(self, p, ctx: Context) -> dict:
        alert = {**ctx.incident, "summary": f"[playbook {ctx.playbook}] {p.message}"}
        note = {"id": f"{ctx.incident.get('id')}.pb.{ctx.run_id}.{ctx.step}", "incident_id": ctx.incident.get("id"),
                "event": "firing", "seq": 0, "alert": alert}
        sent, failed = [], []
        now = (ctx.now or time.time)()
        for out in ctx.outputs:
            if p.outputs and out.name not in p.outputs:
                continue
            if not p.outputs and not out.wants(note):
                continue
            outcome = out.send(note, 1, now)
            (sent if outcome.ok else failed).append(out.name if outcome.ok else outcome.error or out.name)
        if failed:
            raise ActionError(f"notify failed for {'; '.join(failed)}")
        return {"sent": sent}
