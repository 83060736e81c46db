"""The playbook engine: incidents in, steps decided, acted, audited, reverted on time.

* A run is one playbook for one incident: ``run_id`` is a hash of (incident id, playbook), so
  every update of an incident (redelivered, escalated) lands on the same run, and a step is
  keyed by (run, step index): a step that has been decided is never decided again, so a
  redelivered incident never acts twice. An escalation can let a later step (``when:
  {min_severity: high}``) run.
* Steps run in order; a step whose ``when`` is not met yet, one waiting for approval, or one
  that failed or hit the limit holds the steps after it.
* Modes: ``dry-run`` records what would be done; ``approve`` waits for ``approve(run)`` (CLI
  or the HTTP endpoint); ``auto`` acts.
* Per-target limit: at most ``max_per_target`` actions on one target (principal, model
  version) per hour, across runs: a step over it is ``limited`` (no loops).
* Reverts: ``revert_after`` sets a due time on a done step, stored with it; :meth:`tick` runs
  the due ones, in this process or the next one after a restart.
* Every decision and outcome goes to the audit log, and each step's state to the store's
  ``actions`` table (the dashboards' playbook panel).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Callable, Iterable

from pydantic import ValidationError

from ramparts.errors import ActionError, RampartsError

from . import template
from .actions import Action, Context
from .audit import AuditLog
from .model import RANK, Playbook
from .state import State

log = logging.getLogger("ramparts.playbooks")

HOUR = 3600.0
# Statuses after which a step is never decided again.
# "acting" is not settled: a crash between acting and recording it runs the (idempotent) action again.
SETTLED = {"done", "dry_run", "failed", "limited", "denied", "reverted", "revert_failed"}


def run_id_of(incident_id: str, playbook: str) -> str:
    return "run-" + hashlib.sha256(f"{incident_id}\0{playbook}".encode()).hexdigest()[:16]


class Engine:
    def __init__(self, playbooks: Iterable[Playbook], actions: dict[str, Action], state: State, audit: AuditLog, *,
                 sink=None, outputs: list | None = None, max_per_target: int = 3,
                 clock: Callable[[], float] = time.time, env=None, actor: str = "engine"):
        self.playbooks = {p.name: p for p in playbooks}
        self.actions = actions
        self.state = state
        self.audit = audit
        self.sink = sink
        self.outputs = outputs or []
        self.max_per_target = max_per_target
        self.clock = clock
        self.env = env
        self.actor = actor
        self._lock = threading.RLock()

    # -- incidents -----------------------------------------------------------------------
    def handle(self, incident: dict) -> list[str]:
        """Run every enabled playbook whose trigger matches; returns the run ids touched."""
        touched = []
        if not incident.get("id"):
            # Runs and steps are keyed by the incident id: without one, idempotency cannot hold.
            log.error("incident without an id (detector %s): no playbook runs on it", incident.get("detector"))
            return touched
        with self._lock:
            for pb in self.playbooks.values():
                if pb.enabled and pb.trigger.matches(incident):
                    touched.append(self._start(pb, incident))
        return touched

    def run_playbook(self, name: str, incident: dict) -> str:
        """Run one playbook on an incident whether its trigger matches or not (``ramparts playbook run``)."""
        pb = self._playbook(name)
        with self._lock:
            return self._start(pb, incident)

    def _playbook(self, name: str) -> Playbook:
        if name not in self.playbooks:
            raise RampartsError(f"no playbook named {name!r}; playbooks: {', '.join(sorted(self.playbooks))}")
        return self.playbooks[name]

    def _start(self, pb: Playbook, incident: dict) -> str:
        now = self.clock()
        rid = run_id_of(str(incident.get("id", "")), pb.name)
        run = self.state.run(rid)
        if run is None:
            self.state.create_run(rid, incident, pb.name, now)
            self._audit(rid, incident, pb, None, "matched", detail={
                "detector": incident.get("detector"), "severity": incident.get("severity"),
                "entity": incident.get("entity"), "mode": pb.mode})
        else:
            # The worst severity seen so far decides `when`; the latest incident fills the variables.
            prev = run["incident"]
            if RANK.get(prev.get("severity"), -1) > RANK.get(incident.get("severity"), -1):
                incident = {**incident, "severity": prev["severity"]}
            self.state.update_run(rid, now, incident=incident)
        self._advance(rid, pb)
        return rid

    # -- steps ---------------------------------------------------------------------------
    def _advance(self, rid: str, pb: Playbook) -> None:
        run = self.state.run(rid)
        incident = run["incident"]
        status = "done"
        for i, step in enumerate(pb.steps):
            st = self.state.step(rid, i)
            if st is not None and st["status"] in SETTLED:
                if st["status"] in ("failed", "limited", "denied"):
                    status = st["status"]
                    break
                continue
            if RANK.get(incident.get("severity"), -1) < RANK[step.when.min_severity]:
                status = "waiting"
                break
            mode = pb.step_mode(i)
            if mode == "approve" and run["approval"] != "approved":
                if run["approval"] == "denied":
                    self.state.put_step(rid, i, self.clock(), name=pb.step_name(i), action=step.action, mode=mode,
                                        status="denied")
                    # the actions table (dashboards) showed this step awaiting approval: say it is settled
                    self._record_action(rid, i, pb, incident, "denied", f"denied by {run['approved_by']}")
                    status = "denied"
                    break
                if st is None:
                    self.state.put_step(rid, i, self.clock(), name=pb.step_name(i), action=step.action, mode=mode,
                                        status="awaiting_approval")
                    params, described = self._preview(pb, i, incident, rid)
                    self._audit(rid, incident, pb, i, "approval_requested", mode=mode,
                                detail={"would": described, "params": params})
                    self._record_action(rid, i, pb, incident, "awaiting_approval", described)
                status = "awaiting_approval"
                break
            if not self._act(rid, pb, i, incident, mode):
                st = self.state.step(rid, i)
                status = st["status"] if st else "failed"
                break
        self.state.update_run(rid, self.clock(), status=status)

    def _ctx(self, rid: str, pb: Playbook, i: int, incident: dict) -> Context:
        kw = {} if self.env is None else {"env": self.env}
        return Context(run_id=rid, incident=incident, playbook=pb.name, step=pb.step_name(i), outputs=self.outputs,
                       now=self.clock, **kw)

    def _params(self, pb: Playbook, i: int, incident: dict, rid: str):
        step = pb.steps[i]
        action = self.actions[step.action]
        ctx = {**incident, "playbook": pb.name, "run_id": rid, "incident_id": incident.get("id")}
        raw = template.render(step.params, ctx)
        try:
            return action, action.Params.model_validate(raw), raw
        except ValidationError as e:
            err = e.errors()[0]
            raise ActionError(f"playbook {pb.name} step {pb.step_name(i)}: parameter "
                              f"{'.'.join(map(str, err['loc']))}: {err['msg']}") from None

    def _preview(self, pb: Playbook, i: int, incident: dict, rid: str) -> tuple[dict, str]:
        try:
            action, p, raw = self._params(pb, i, incident, rid)
            return raw, action.describe(p)
        except ActionError as e:
            return {}, f"(cannot render: {e})"

    def _act(self, rid: str, pb: Playbook, i: int, incident: dict, mode: str) -> bool:
        step = pb.steps[i]
        name = pb.step_name(i)
        now = self.clock()
        try:
            action, p, raw = self._params(pb, i, incident, rid)
            target = action.target(p)
        except ActionError as e:
            self.state.put_step(rid, i, now, name=name, action=step.action, mode=mode, status="failed", error=str(e))
            self._audit(rid, incident, pb, i, "failed", mode=mode, detail={"error": str(e)})
            self._record_action(rid, i, pb, incident, "failed", str(e))
            return False
        described = action.describe(p)
        if mode == "dry-run":
            self.state.put_step(rid, i, now, name=name, action=step.action, mode=mode, status="dry_run", target=target,
                                params=raw)
            self._audit(rid, incident, pb, i, "dry_run", mode=mode, target=target,
                        detail={"would": described, "params": raw})
            self._record_action(rid, i, pb, incident, "dry_run", described, target)
            return True
        limited = action.name != "notify"
        if limited and self.state.acts_since(target, now - HOUR) >= self.max_per_target:
            self.state.put_step(rid, i, now, name=name, action=step.action, mode=mode, status="limited", target=target,
                                params=raw)
            self._audit(rid, incident, pb, i, "limited", mode=mode, target=target, detail={
                "would": described, "limit": f"{self.max_per_target} actions per target per hour"})
            self._record_action(rid, i, pb, incident, "limited", described, target)
            return False
        self.state.put_step(rid, i, now, name=name, action=step.action, mode=mode, status="acting", target=target,
                            params=raw)
        started = time.perf_counter()
        try:
            restore = action.execute(p, self._ctx(rid, pb, i, incident))
        except ActionError as e:
            self.state.put_step(rid, i, self.clock(), status="failed", error=str(e))
            self._audit(rid, incident, pb, i, "failed", mode=mode, target=target,
                        detail={"action": described, "error": str(e)})
            self._record_action(rid, i, pb, incident, "failed", str(e), target)
            log.error("playbook %s step %s failed: %s", pb.name, name, e)
            return False
        done = self.clock()
        if limited:
            self.state.record_act(target, done)
        after = pb.step_revert_after(i)
        due = done + after if (after is not None and action.revertible) else None
        self.state.put_step(rid, i, done, status="done", restore=restore, acted_at=done, revert_due=due)
        self._audit(rid, incident, pb, i, "executed", mode=mode, target=target, detail={
            "action": described, "restore": restore, "revert_due": due,
            "seconds": round(time.perf_counter() - started, 6)})
        self._record_action(rid, i, pb, incident, "done", described, target)
        return True

    # -- approval ------------------------------------------------------------------------
    def approve(self, rid: str, by: str) -> dict:
        return self._decide(rid, by, "approved")

    def deny(self, rid: str, by: str) -> dict:
        return self._decide(rid, by, "denied")

    def _decide(self, rid: str, by: str, decision: str) -> dict:
        with self._lock:
            run = self.state.run(rid)
            if run is None:
                raise RampartsError(f"no playbook run {rid!r} (ramparts playbook list --runs shows them)")
            if run["approval"] is not None:
                raise RampartsError(f"run {rid} was already {run['approval']} by {run['approved_by']}")
            if run["status"] != "awaiting_approval":
                raise RampartsError(f"run {rid} is not waiting for approval (it is {run['status']})")
            pb = self._playbook(run["playbook"])
            self.state.update_run(rid, self.clock(), approval=decision, approved_by=by)
            self._audit(rid, run["incident"], pb, None, decision, actor=by)
            for st in self.state.steps(rid):
                if st["status"] == "awaiting_approval":
                    self.state.put_step(rid, st["idx"], self.clock(), status="pending")
            self._advance(rid, pb)
            return self.state.run(rid)

    # -- revert --------------------------------------------------------------------------
    def revert(self, rid: str, by: str = "engine", *, only_idx: int | None = None) -> list[dict]:
        """Undo the run's done, revertible steps, last first."""
        with self._lock:
            run = self.state.run(rid)
            if run is None:
                raise RampartsError(f"no playbook run {rid!r}")
            pb = self._playbook(run["playbook"])
            out = []
            for st in reversed(self.state.steps(rid)):
                if st["status"] != "done" or (only_idx is not None and st["idx"] != only_idx):
                    continue
                action = self.actions[st["action"]]
                if not action.revertible:
                    continue
                out.append(self._revert_step(rid, pb, run["incident"], st, action, by))
            return out

    def _revert_step(self, rid, pb, incident, st, action, by) -> dict:
        i = st["idx"]
        try:
            p = action.Params.model_validate(st["params"])
            result = action.revert(p, st["restore"] or {}, self._ctx(rid, pb, i, incident))
        except (ActionError, ValidationError) as e:
            self.state.put_step(rid, i, self.clock(), status="revert_failed", error=str(e), revert_due=None)
            self._audit(rid, incident, pb, i, "revert_failed", actor=by, target=st["target"], detail={"error": str(e)})
            self._record_action(rid, i, pb, incident, "revert_failed", str(e), st["target"])
            return {"step": st["name"], "status": "revert_failed", "error": str(e)}
        self.state.put_step(rid, i, self.clock(), status="reverted", revert_due=None)
        self._audit(rid, incident, pb, i, "reverted", actor=by, target=st["target"], detail={"result": result})
        self._record_action(rid, i, pb, incident, "reverted", action.describe(p), st["target"])
        return {"step": st["name"], "status": "reverted", "result": result}

    def tick(self) -> list[dict]:
        """Run the reverts that are due (timers survive restarts: they are rows in the state)."""
        out = []
        with self._lock:
            for st in self.state.due_reverts(self.clock()):
                out += self.revert(st["run_id"], by="revert_after", only_idx=st["idx"])
        return out

    # -- records -------------------------------------------------------------------------
    def _audit(self, rid, incident, pb, i, decision, *, mode=None, target="", actor=None, detail=None) -> None:
        step = pb.steps[i] if i is not None else None
        self.audit.append([{
            "ts_ns": int(self.clock() * 1e9), "run_id": rid, "incident_id": str(incident.get("id", "")),
            "playbook": pb.name, "step": pb.step_name(i) if i is not None else "",
            "action": step.action if step else "", "target": target or "", "mode": mode or pb.mode,
            "decision": decision, "actor": actor or self.actor, "detail": detail or {}}])

    def _record_action(self, rid, i, pb, incident, status, detail, target="") -> None:
        if self.sink is None:
            return
        now = int(self.clock() * 1e9)
        self.sink.write_actions([{
            "id": f"{rid}.{i}", "ts": now, "alert_id": str(incident.get("id", "")), "playbook": pb.name,
            "step": pb.step_name(i), "action": pb.steps[i].action, "target": target, "mode": pb.step_mode(i),
            "status": status, "detail": {"text": detail, "run_id": rid}, "updated_at": now}])
        self.sink.flush()
