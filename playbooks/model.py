"""Playbook files: the YAML model, its validation and loading, with errors that say where.

A playbook (docs/playbooks.md)::

    name: extraction-response
    trigger: {detectors: ["extraction.*"], min_severity: medium, entity_types: [principal]}
    mode: auto                 # auto | approve | dry-run
    revert_after: 1h           # optional: every revertible step is undone this long after it acted
    steps:
      - action: nginx.rate_limit
        params: {principal: "${entity.id}"}
      - action: nginx.revoke
        when: {min_severity: high}      # runs once the incident reaches high (an escalation counts)
        params: {principal: "${entity.id}"}

An error names the file, the line and the field, and what was meant.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError,
                      field_validator, model_validator)

from ramparts.errors import ConfigError

from . import template

SEVERITIES = ("info", "low", "medium", "high", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}
MODES = ("auto", "approve", "dry-run")
ENTITY_TYPES = ("principal", "model", "gpu", "node", "pod", "src_ip")
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class PlaybookError(ConfigError):
    """A playbook file is invalid: the message names the file, line and field."""


def parse_duration(value: Any) -> float:
    """``90``, ``"30s"``, ``"15m"``, ``"1h"``, ``"2d"`` -> seconds.

    >>> parse_duration("15m"), parse_duration(90)
    (900.0, 90.0)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    m = _DURATION_RE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"{value!r} is not a duration: write a positive number with a unit, e.g. 30s, 15m, 1h, 2d")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _mode(v: str) -> str:
    if v not in MODES:
        raise ValueError(f"{v!r} is not a mode; one of {', '.join(MODES)}")
    return v


# A playbook's and a step's mode and revert_after are checked the same way.
Mode = Annotated[str, AfterValidator(_mode)]
Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _severity(v: str) -> str:
    if v not in RANK:
        raise ValueError(f"{v!r} is not a severity; one of {', '.join(SEVERITIES)}")
    return v


class Trigger(_Strict):
    detectors: list[str] = Field(default_factory=lambda: ["*"], description="Detector name globs (extraction.*).")
    min_severity: str = Field(default="low", description="Incidents below this severity do not trigger.")
    entity_types: list[str] = Field(default_factory=list, description="Entity types; empty: any.")

    _sev = field_validator("min_severity")(_severity)

    @field_validator("entity_types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        for t in v:
            if t not in ENTITY_TYPES:
                raise ValueError(f"{t!r} is not an entity type; one of {', '.join(ENTITY_TYPES)}")
        return v

    def matches(self, incident: dict) -> bool:
        det = str(incident.get("detector", ""))
        if not any(fnmatch.fnmatchcase(det, p) for p in self.detectors):
            return False
        if RANK.get(incident.get("severity"), -1) < RANK[self.min_severity]:
            return False
        etype = (incident.get("entity") or {}).get("type")
        return not self.entity_types or etype in self.entity_types


class When(_Strict):
    min_severity: str = Field(default="info", description="The step runs once the incident is at least this severe.")

    _sev = field_validator("min_severity")(_severity)


class Step(_Strict):
    action: str = Field(description="Action name (ramparts playbook actions lists them).")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$",
                             description="Step name in the audit log (default: <n>-<action>).")
    params: dict[str, Any] = Field(default_factory=dict, description="Action parameters; ${...} are variables.")
    when: When = Field(default_factory=When)
    mode: Mode | None = Field(default=None, description="Overrides the playbook's mode for this step.")
    revert_after: Duration | None = Field(default=None, description="Overrides the playbook's revert_after.")


class Playbook(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$", description="Unique name.")
    description: str = ""
    trigger: Trigger
    mode: Mode = Field(default="dry-run", description="auto, approve or dry-run (the safe default).")
    revert_after: Duration | None = None
    enabled: bool = True
    steps: list[Step] = Field(min_length=1)
    source: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _step_names(self) -> "Playbook":
        seen = set()
        for i, s in enumerate(self.steps):
            n = self.step_name(i)
            if n in seen:
                raise ValueError(f"two steps are named {n!r}")
            seen.add(n)
        return self

    def step_name(self, i: int) -> str:
        s = self.steps[i]
        return s.name or f"{i + 1}-{s.action}"

    def step_mode(self, i: int) -> str:
        return self.steps[i].mode or self.mode

    def step_revert_after(self, i: int) -> float | None:
        s = self.steps[i]
        return s.revert_after if s.revert_after is not None else self.revert_after


# -- loading -----------------------------------------------------------------------------

def _node_at(node: yaml.Node | None, loc: tuple) -> yaml.Node | None:
    """The YAML node at a pydantic error location, as deep as it exists (for its line)."""
    best = node
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == part:
                    nxt = v
                    break
            if nxt is None:
                # An unknown key: point at the key itself.
                for k, _ in node.value:
                    if k.value == part:
                        return k
                return best
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return best
        best = node
    return best


def _suggest(word: str, known) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _message(err: dict, model_fields: dict) -> str:
    loc = ".".join(str(p) for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    if err["type"] == "extra_forbidden":
        parent_known = _known_fields_at(err["loc"])
        return f"unknown field {loc!r}{_suggest(err['loc'][-1], parent_known)}"
    if err["type"] == "missing":
        return f"missing field {loc!r}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


def _known_fields_at(loc: tuple) -> list[str]:
    model: Any = Playbook
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        f = getattr(model, "model_fields", {}).get(part)
        if f is None:
            return []
        ann = f.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return []
    return list(getattr(model, "model_fields", {}))


def parse_playbook(text: str, source: str = "<string>", action_params=None) -> Playbook:
    """One playbook from YAML text; ``action_params`` maps action names to their Params model."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise PlaybookError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict):
        raise PlaybookError(f"{source}:1: a playbook is a mapping with name, trigger, mode and steps")
    try:
        pb = Playbook.model_validate({**data, "source": source})
    except ValidationError as e:
        err = e.errors()[0]
        node = _node_at(root, err["loc"])
        line = node.start_mark.line + 1 if node is not None else 1
        raise PlaybookError(f"{source}:{line}: {_message(err, {})}") from None
    for i, step in enumerate(pb.steps):
        step_node = _node_at(root, ("steps", i))
        line = step_node.start_mark.line + 1 if step_node is not None else 1
        if action_params is not None and step.action not in action_params:
            raise PlaybookError(f"{source}:{line}: steps.{i}.action: unknown action {step.action!r}"
                                f"{_suggest(step.action, action_params)}; actions are {', '.join(sorted(action_params))}")
        for name in template.variables(step.params):
            why = template.check(name)
            if why:
                pnode = _node_at(root, ("steps", i, "params"))
                raise PlaybookError(f"{source}:{pnode.start_mark.line + 1 if pnode else line}: steps.{i}.params: {why}")
        if action_params is not None:
            model = action_params[step.action]
            known = set(model.model_fields)
            for k in step.params:
                if k not in known:
                    knode = _node_at(root, ("steps", i, "params", k))
                    raise PlaybookError(f"{source}:{knode.start_mark.line + 1 if knode else line}: steps.{i}.params: "
                                        f"unknown parameter {k!r} of {step.action}{_suggest(k, known)}; "
                                        f"parameters are {', '.join(sorted(known))}")
            for k, f in model.model_fields.items():
                if f.is_required() and k not in step.params:
                    raise PlaybookError(f"{source}:{line}: steps.{i}.params: {step.action} needs parameter {k!r}"
                                        f" ({f.description or 'required'})")
    return pb


def default_dir() -> Path:
    """The playbooks shipped with Ramparts (this package's ``*.yaml``)."""
    return Path(str(resources.files("ramparts.playbooks")))


def load_playbooks(directory: str | Path | None = None, action_params=None) -> list[Playbook]:
    """Every ``*.yaml`` / ``*.yml`` of ``directory`` (default: the shipped ones), validated; names unique."""
    d = Path(directory) if directory else default_dir()
    if not d.is_dir():
        raise PlaybookError(f"playbooks directory {d} does not exist (playbooks.dir in the config)")
    out: list[Playbook] = []
    names: dict[str, str] = {}
    for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
        pb = parse_playbook(f.read_text(encoding="utf-8"), str(f), action_params)
        if pb.name in names:
            raise PlaybookError(f"{f}:1: name: playbook {pb.name!r} is also defined in {names[pb.name]}")
        names[pb.name] = str(f)
        out.append(pb)
    return out
