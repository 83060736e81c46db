"""What Grafana and the ClickHouse plugin do to a panel's SQL before ClickHouse sees it.

There is no Grafana here: the dashboards' queries are expanded by this re-implementation and run
in chdb. Sources, grafana/clickhouse-datasource 4.x:

1. the frontend (``src/data/CHDatasource.ts``, ``applyTemplateVariables``): first
   ``applyConditionalAll``: ``$__conditionalAll(condition, $var)`` becomes ``1=1`` when the
   variable's current value is '' or ``$__all``, else the condition (arguments found by counting
   brackets, from the last macro backwards); then Grafana's template service replaces
   ``$var``, ``${var}``, ``${var:format}`` and ``[[var]]``, the plugin's own format quoting a
   list as ``'a','b'`` and leaving a single value as it is; ``sqlstring`` quotes every value and
   doubles its single quotes; 'All' without a custom all value is every option;
2. the backend (``pkg/macros/macros.go``, through grafana/sqlds ``interpolate``): each macro
   matches ``\\$__name(?:\\((.*?)\\))?`` (arguments up to the first ``)``, split on commas and
   trimmed): ``$__timeFilter(c)`` -> ``c >= toDateTime(FROM) AND c <= toDateTime(TO)`` in unix
   seconds, ``$__timeFilter_ms`` with ``fromUnixTimestamp64Milli(ms)``, ``$__fromTime`` /
   ``$__toTime`` -> ``toDateTime(s)``, ``$__timeInterval(c)`` ->
   ``toStartOfInterval(toDateTime(c), INTERVAL n second)`` with n the panel interval (at least
   1), ``$__interval_s`` -> n.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ALL = "$__all"


@dataclass
class Request:
    from_ms: int
    to_ms: int
    interval_s: int = 60
    variables: dict[str, list[str] | str] = field(default_factory=dict)  # name -> values, or ALL
    options: dict[str, list[str]] = field(default_factory=dict)  # name -> every value ('All')


def _macro_args(query: str, start: int) -> list[str] | None:
    """CHDatasource.getMacroArgs: arguments of the macro whose '(' is at ``start``."""
    depth, last, args = 0, start + 1, []
    for m in re.finditer(r"[(),]", query[start:]):
        i = start + m.start()
        if m.group() == "(":
            depth += 1
        elif m.group() == ")":
            depth -= 1
        if m.group() == "," and depth == 1:
            args.append(query[last:i])
            last = i + 1
        if depth == 0:
            args.append(query[last:i])
            return args
    return None


def conditional_all(query: str, req: Request) -> str:
    macro = "$__conditionalAll("
    idx = query.rfind(macro)
    while idx != -1:
        args = _macro_args(query, idx + len(macro) - 1)
        if args is None or len(args) != 2:
            return query
        phrase = args[0]
        m = re.search(r"(?<=\$\{)[\w\d]+(?=\})|(?<=\$)[\w\d]+", args[1].strip())
        if m:
            value = req.variables.get(m.group(0), "")
            text = ",".join(value) if isinstance(value, list) else value  # JS Array.toString
            if text in ("", ALL):
                phrase = "1=1"
        query = query.replace(f"{macro}{args[0]},{args[1]})", phrase)
        idx = query.rfind(macro)
    return query


def _values(name: str, req: Request) -> list[str] | str:
    value = req.variables.get(name, "")
    if value == ALL or value == [ALL]:
        return list(req.options.get(name, []))
    return value


def _format(value: list[str] | str, fmt: str | None) -> str:
    if fmt == "sqlstring":
        items = value if isinstance(value, list) else [value]
        return ",".join("'" + v.replace("'", "''") + "'" for v in items)
    if fmt not in (None, ""):
        raise ValueError(f"format {fmt!r} is not implemented here")
    if isinstance(value, list):  # the plugin's format(): a list is quoted, a value is not
        return "'" + "','".join(value) + "'"
    return value


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::([\w]+))?\}|\[\[(\w+)\]\]")


def template_variables(query: str, req: Request) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(4)
        if name.startswith("__"):  # $__macros are the backend's; ${__from} and co. are not used
            return m.group(0)
        if name not in req.variables:
            raise KeyError(f"variable {name!r} is not defined on the dashboard")
        return _format(_values(name, req), m.group(3))

    return _VAR.sub(one, query)


def _seconds(ms: int) -> int:
    return ms // 1000


BACKEND_MACROS = {
    "fromTime": lambda r, a: f"toDateTime({_seconds(r.from_ms)})",
    "toTime": lambda r, a: f"toDateTime({_seconds(r.to_ms)})",
    "fromTime_ms": lambda r, a: f"fromUnixTimestamp64Milli({r.from_ms})",
    "toTime_ms": lambda r, a: f"fromUnixTimestamp64Milli({r.to_ms})",
    "timeFilter": lambda r, a: _one(a) and f"{a[0]} >= toDateTime({_seconds(r.from_ms)}) AND {a[0]} <= toDateTime({_seconds(r.to_ms)})",
    "timeFilter_ms": lambda r, a: _one(a) and f"{a[0]} >= fromUnixTimestamp64Milli({r.from_ms}) AND {a[0]} <= fromUnixTimestamp64Milli({r.to_ms})",
    "timeInterval": lambda r, a: _one(a) and f"toStartOfInterval(toDateTime({a[0]}), INTERVAL {max(r.interval_s, 1)} second)",
    "interval_s": lambda r, a: str(max(r.interval_s, 1)),
}


def _one(args: list[str]) -> bool:
    if len(args) != 1:
        raise ValueError(f"unexpected number of arguments: expected 1, received {len(args)}")
    return True


def backend_macros(query: str, req: Request) -> str:
    # Longest names first: sqlds' pattern has no word boundary, so in Go's random map order
    # $__timeFilter could also match the start of $__timeFilter_ms; the dashboards use neither
    # _ms variant, and a test checks that nothing of the form $__ is left.
    for name in sorted(BACKEND_MACROS, key=len, reverse=True):
        rgx = re.compile(r"\$__" + re.escape(name) + r"(?![\w])(?:\((.*?)\))?")
        def one(m, name=name):
            args = [a.strip() for a in m.group(1).split(",")] if m.group(1) is not None else []
            return BACKEND_MACROS[name](req, args)
        query = rgx.sub(one, query)
    return query


def expand(sql: str, req: Request) -> str:
    """A panel's rawSql as the ClickHouse server receives it."""
    return backend_macros(template_variables(conditional_all(sql, req), req), req)
