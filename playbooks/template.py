"""Step parameters with the incident's fields as variables: ``${entity.id}``, ``${evidence.rate}``.

A deliberately small language (no expressions, no code): ``${path}`` is replaced by the value
at that dotted path of the incident (SPEC.md alert object) plus ``playbook`` and ``run_id``.
A parameter that is exactly one ``${...}`` keeps the value's type; inside other text the value
is written as text. ``$$`` is a literal dollar.

>>> render("${entity.type}:${entity.id}", {"entity": {"type": "principal", "id": "k1"}})
'principal:k1'
>>> render({"n": "${event_count}"}, {"event_count": 7})
{'n': 7}
>>> variables("rate ${evidence.rate} for ${entity.id}")
['evidence.rate', 'entity.id']
"""

from __future__ import annotations

import re
from typing import Any

from ramparts.errors import ActionError

VAR_RE = re.compile(r"\$\$|\$\{([^}]*)\}")
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)*$")

# The roots a template may name: the alert object's fields (SPEC.md "Alerts") and the run's.
ROOTS = frozenset({"id", "ts", "detector", "severity", "entity", "score", "summary", "evidence", "window",
                   "first_event_ts", "event_count", "playbook", "run_id", "incident_id"})


def variables(value: Any) -> list[str]:
    """Every ``${name}`` in a parameter value (strings inside lists and dicts too)."""
    out: list[str] = []
    if isinstance(value, str):
        out += [m.group(1) for m in VAR_RE.finditer(value) if m.group(0) != "$$"]
    elif isinstance(value, dict):
        for v in value.values():
            out += variables(v)
    elif isinstance(value, list):
        for v in value:
            out += variables(v)
    return out


def check(name: str) -> str | None:
    """Why ``name`` is not a valid variable, or None."""
    if not NAME_RE.match(name):
        return f"${{{name}}} is not a variable name (letters, digits, _ and dots, e.g. ${{entity.id}})"
    root = name.split(".", 1)[0]
    if root not in ROOTS:
        return f"${{{name}}}: unknown variable {root!r}; variables are {', '.join(sorted(ROOTS))}"
    return None


def lookup(name: str, context: dict) -> Any:
    cur: Any = context
    for part in name.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            raise ActionError(f"variable ${{{name}}} has no value in this incident")
    return cur


def render(value: Any, context: dict) -> Any:
    """``value`` with every ``${name}`` replaced from ``context``; raises ActionError on a missing one."""
    if isinstance(value, str):
        m = VAR_RE.fullmatch(value)
        if m and m.group(0) != "$$":
            return lookup(m.group(1), context)

        def one(m: re.Match) -> str:
            if m.group(0) == "$$":
                return "$"
            v = lookup(m.group(1), context)
            return v if isinstance(v, str) else ("" if v is None else str(v))
        return VAR_RE.sub(one, value)
    if isinstance(value, dict):
        return {k: render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, context) for v in value]
    return value
