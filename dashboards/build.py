"""The Grafana dashboards, built in Python and exported as the JSON files beside this module.

Every panel queries the ClickHouse tables of ``sinks/clickhouse/migrations`` through the
grafana-clickhouse-datasource plugin (uid :data:`DATASOURCE_UID`, provisioned by
``provisioning/datasources/clickhouse.yaml``). Queries use the plugin's macros
(``$__timeFilter(col)``, ``$__timeInterval(col)``, ``$__fromTime``, ``$__toTime``) and its
``$__conditionalAll(condition, $var)``, which becomes ``1=1`` when the variable is 'All', so
a dashboard left on 'All' reads no filter at all. Variables are written ``${name:sqlstring}``:
Grafana quotes each value and doubles its single quotes, so a value cannot end the string.

Macro arguments hold no parentheses: the plugin's backend (grafana/sqlds ``getMacroRegex``)
takes a macro's arguments up to the first ``)``. Every table is read with ``FINAL``: rows
written twice by an at-least-once worker collapse at read time (docs/storage.md).

>>> d = dashboards()
>>> sorted(d)[:3]
['ramparts-alerts', 'ramparts-compute', 'ramparts-drift']
>>> d["ramparts-alerts"]["title"]
'Ramparts: SOC overview'
"""

from __future__ import annotations

from typing import Any

DATASOURCE_UID = "ramparts-clickhouse"
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
PLUGIN_VERSION = "4.8.0"  # the plugin docker-compose.yml installs (GF_INSTALL_PLUGINS)
SCHEMA_VERSION = 39  # Grafana 11.x dashboards
DS = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
EVIDENCE_UID = "ramparts-evidence"
# An incident is open while its detector keeps alerting within alerting.incident_window_seconds
# (docs/alerting.md); the store keeps the incident's last alert, so "open at the end of the
# range" is "last alert within the window before $__toTime".
INCIDENT_WINDOW_SECONDS = 3600
BUSY_UTIL_PCT = 10  # detectors.compute busy_util_pct: a GPU at or above this is busy

SEVERITY_COLORS = {"info": "blue", "low": "green", "medium": "yellow", "high": "orange", "critical": "red"}
SEVERITY_RANK = "indexOf(['info', 'low', 'medium', 'high', 'critical'], severity)"

# Filters of the alerts table by the dashboard variables. Alerts name the entity they are about;
# the model, node and source of an alert about something else are in its evidence.
ALERT_FILTERS = (
    "$__conditionalAll(entity_type = 'principal' AND entity_id IN (${principal:sqlstring}), $principal)\n"
    "  AND $__conditionalAll((JSONExtractString(evidence, 'model') IN (${model:sqlstring})"
    " OR splitByChar(':', entity_id)[1] IN (${model:sqlstring}) AND entity_type = 'model'), $model)\n"
    "  AND $__conditionalAll((JSONExtractString(evidence, 'node') IN (${node:sqlstring})"
    " OR entity_type = 'node' AND entity_id IN (${node:sqlstring})), $node)")
SOC_FILTERS = (ALERT_FILTERS
               + "\n  AND $__conditionalAll(entity_type IN (${entity_type:sqlstring}), $entity_type)"
                 "\n  AND $__conditionalAll(entity_id = ${entity:sqlstring}, $entity)")


def _q(sql: str, fmt: str = "table", ref: str = "A") -> dict:
    # format: the plugin's Format enum (0 time series, 1 table); a time series result in long
    # form (time, label columns, values) is turned into one series per label by the plugin.
    return {"refId": ref, "datasource": DS, "editorType": "sql", "pluginVersion": PLUGIN_VERSION,
            "format": 0 if fmt == "timeseries" else 1, "queryType": fmt, "rawSql": sql.strip()}


def _thresholds(*steps: tuple[float | None, str]) -> dict:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


def _panel(kind: str, title: str, sql: str, grid: tuple[int, int, int, int], *, unit: str = "short",
           thresholds: dict | None = None, description: str = "", fmt: str | None = None,
           options: dict | None = None, overrides: list | None = None, custom: dict | None = None,
           decimals: int | None = None, minimum: float | None = None, maximum: float | None = None) -> dict:
    x, y, w, h = grid
    defaults: dict[str, Any] = {"unit": unit, "thresholds": thresholds or _thresholds((None, "green"))}
    if thresholds is not None:
        defaults["color"] = {"mode": "thresholds"}
    for key, value in (("decimals", decimals), ("min", minimum), ("max", maximum), ("custom", custom)):
        if value is not None:
            defaults[key] = value
    return {"type": kind, "title": title, "description": description, "datasource": DS,
            "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "targets": [_q(sql, fmt or ("timeseries" if kind == "timeseries" else "table"))],
            "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
            "options": options or {}}


def _text(title: str, markdown: str, grid: tuple[int, int, int, int]) -> dict:
    x, y, w, h = grid
    return {"type": "text", "title": title, "gridPos": {"x": x, "y": y, "w": w, "h": h},
            "options": {"mode": "markdown", "content": markdown.strip()}}


def _evidence_link(field: str = "id") -> dict:
    """A table column whose values open the evidence dashboard of that alert."""
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "links", "value": [{
                "title": "Evidence of alert ${__value.raw}",
                "url": f"/d/{EVIDENCE_UID}/ramparts-alert-evidence?var-alert_id=${{__value.raw}}&${{__url_time_range}}"}]}]}


def _severity_colors(field: str = "severity") -> dict:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": "mappings", "value": [{"type": "value", "options": {
                s: {"color": c, "index": i} for i, (s, c) in enumerate(SEVERITY_COLORS.items())}}]},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}


def _severity_series(matcher: str, pattern: str) -> list[dict]:
    """One fixed colour per severity, for series or slices whose name ``pattern`` (a format with
    one ``{}`` for the severity) matches with Grafana's ``matcher`` (byName, byRegexp)."""
    return [{"matcher": {"id": matcher, "options": pattern.format(s)},
             "properties": [{"id": "color", "value": {"mode": "fixed", "fixedColor": c}}]}
            for s, c in SEVERITY_COLORS.items()]


# The SOC overview's "Top ..." bar gauges: one horizontal bar per row of the query.
TOP_BARS = {"orientation": "horizontal", "displayMode": "basic",
            "reduceOptions": {"values": True, "calcs": [], "fields": ""}}


def _variable(name: str, label: str, sql: str) -> dict:
    # refresh 2: on time range change; multi + includeAll so that values are a list that
    # ${name:sqlstring} quotes, and 'All' reaches $__conditionalAll as $__all.
    return {"name": name, "label": label, "type": "query", "datasource": DS, "query": sql.strip(),
            "definition": sql.strip(), "refresh": 2, "multi": True, "includeAll": True, "sort": 1,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]}, "options": [], "hide": 0}


VARIABLES = {
    "model": _variable("model", "Model", """
SELECT DISTINCT assumeNotNull(model) FROM ramparts.requests FINAL WHERE $__timeFilter(ts) AND model IS NOT NULL
UNION DISTINCT
SELECT DISTINCT assumeNotNull(model) FROM ramparts.predictions FINAL WHERE $__timeFilter(ts) AND model IS NOT NULL"""),
    "principal": _variable("principal", "Principal", """
SELECT DISTINCT assumeNotNull(principal) FROM ramparts.requests FINAL WHERE $__timeFilter(ts) AND principal IS NOT NULL
UNION DISTINCT
SELECT DISTINCT entity_id FROM ramparts.alerts FINAL WHERE $__timeFilter(ts) AND entity_type = 'principal'"""),
    "node": _variable("node", "Node", """
SELECT DISTINCT assumeNotNull(node) FROM ramparts.gpu FINAL WHERE $__timeFilter(ts) AND node IS NOT NULL"""),
}


def _entity_variables() -> list[dict]:
    """entity_type and entity: what the links of Slack messages set (sinks/outputs.dashboard_link)."""
    types = ["principal", "model", "gpu", "node", "pod", "src_ip"]
    return [
        {"name": "entity_type", "label": "Entity type", "type": "custom", "query": ",".join(types),
         "multi": True, "includeAll": True, "hide": 0,
         "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
         "options": [{"selected": False, "text": t, "value": t} for t in types]},
        {"name": "entity", "label": "Entity id", "type": "textbox", "query": "", "hide": 0,
         "current": {"text": "", "value": ""}, "options": []},
    ]


def _dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
               tags: list[str], annotations: list[dict] | None = None, time_from: str = "now-6h") -> dict:
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {
        "uid": uid, "title": title, "description": description, "tags": ["ramparts", *tags],
        "schemaVersion": SCHEMA_VERSION, "version": 1, "editable": False, "graphTooltip": 1,
        "timezone": "utc", "refresh": "1m", "time": {"from": time_from, "to": "now"},
        "timepicker": {}, "fiscalYearStartMonth": 0, "liveNow": False, "weekStart": "",
        "templating": {"list": variables},
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}, *(annotations or [])]},
        "links": [{"title": "Ramparts", "type": "dashboards", "tags": ["ramparts"], "asDropdown": True,
                   "includeVars": False, "keepTime": True, "icon": "external link"}],
        "panels": panels,
    }


# --- SOC overview ------------------------------------------------------------------------------

def soc_overview() -> dict:
    open_cond = f"ts > $__toTime - INTERVAL {INCIDENT_WINDOW_SECONDS} SECOND AND ts <= $__toTime"
    panels = [
        _panel("stat", "Open incidents", f"""
SELECT count() AS open_incidents
FROM ramparts.alerts FINAL
WHERE {open_cond}
  AND {SOC_FILTERS}""", (0, 0, 4, 4), thresholds=_thresholds((None, "green"), (1, "red")),
               description=f"Incidents whose last alert is less than {INCIDENT_WINDOW_SECONDS} s "
                           "(alerting.incident_window_seconds) before the end of the range."),
        _panel("stat", "Open high and critical", f"""
SELECT countIf(severity IN ('high', 'critical')) AS open_high_critical
FROM ramparts.alerts FINAL
WHERE {open_cond}
  AND {SOC_FILTERS}""", (4, 0, 4, 4), thresholds=_thresholds((None, "green"), (1, "red"))),
        _panel("stat", "Incidents and events in range", f"""
SELECT count() AS incidents, sum(event_count) AS events
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts)
  AND {SOC_FILTERS}""", (8, 0, 6, 4), thresholds=_thresholds((None, "blue"))),
        _panel("piechart", "Incidents by severity", f"""
SELECT severity, count() AS incidents
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts)
  AND {SOC_FILTERS}
GROUP BY severity
ORDER BY {SEVERITY_RANK} DESC""", (14, 0, 10, 8),
               options={"reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": ""},
                        "pieType": "donut", "legend": {"displayMode": "table", "placement": "right",
                                                       "values": ["value"]}},
               overrides=_severity_series("byName", "{}")),
        _panel("timeseries", "Alerts by severity", f"""
SELECT $__timeInterval(ts) AS time, severity, count() AS alerts
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts)
  AND {SOC_FILTERS}
GROUP BY time, severity
ORDER BY time""", (0, 4, 14, 8), custom={"drawStyle": "bars", "stacking": {"mode": "normal"},
                                          "fillOpacity": 80},
               description="Incidents by the time of their latest alert, one series per severity.",
               overrides=_severity_series("byRegexp", ".*{}.*")),
        _panel("timeseries", "Alerts by detector", f"""
SELECT $__timeInterval(ts) AS time, detector, count() AS alerts
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts)
  AND {SOC_FILTERS}
GROUP BY time, detector
ORDER BY time""", (0, 12, 24, 8), custom={"drawStyle": "bars", "stacking": {"mode": "normal"},
                                           "fillOpacity": 80}),
        _panel("table", "Open incidents, worst first", f"""
SELECT id, severity, detector, entity_type, entity_id, summary, score, event_count,
       ifNull(first_event_ts, ts) AS first_event, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE {open_cond}
  AND {SOC_FILTERS}
ORDER BY {SEVERITY_RANK} DESC, ts DESC
LIMIT 200""", (0, 20, 24, 9), overrides=[_evidence_link(), _severity_colors()],
               description="Click an id for the alert's evidence and the events behind it."),
        _panel("bargauge", "Top principals", f"""
SELECT entity_id AS principal, count() AS incidents
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND entity_type = 'principal'
  AND {SOC_FILTERS}
GROUP BY principal
ORDER BY incidents DESC, principal
LIMIT 10""", (0, 29, 8, 9), thresholds=_thresholds((None, "yellow"), (3, "red")),
               options=TOP_BARS),
        _panel("bargauge", "Top models", f"""
SELECT if(entity_type = 'model', splitByChar(':', entity_id)[1], JSONExtractString(evidence, 'model')) AS model,
       count() AS incidents
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND (entity_type = 'model' OR JSONExtractString(evidence, 'model') != '')
  AND {SOC_FILTERS}
GROUP BY model
ORDER BY incidents DESC, model
LIMIT 10""", (8, 29, 8, 9), thresholds=_thresholds((None, "yellow"), (3, "red")),
               options=TOP_BARS),
        _panel("bargauge", "Top GPUs", f"""
SELECT if(entity_type = 'gpu', entity_id, JSONExtractString(evidence, 'gpu_uuid')) AS gpu, count() AS incidents
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND (entity_type = 'gpu' OR JSONExtractString(evidence, 'gpu_uuid') != '')
  AND {SOC_FILTERS}
GROUP BY gpu
ORDER BY incidents DESC, gpu
LIMIT 10""", (16, 29, 8, 9), thresholds=_thresholds((None, "yellow"), (2, "red")),
               options=TOP_BARS),
        _panel("table", "Incidents in range", f"""
SELECT id, severity, detector, entity_type, entity_id, summary, score, event_count, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts)
  AND {SOC_FILTERS}
ORDER BY ts DESC
LIMIT 500""", (0, 38, 24, 10), overrides=[_evidence_link(), _severity_colors()]),
    ]
    annotation = {
        "name": "High and critical incidents", "enable": True, "hide": False, "iconColor": "red",
        "datasource": DS, "target": _q(f"""
SELECT ifNull(window_start, ts) AS time, ts AS timeEnd, concat(detector, ': ', summary) AS text,
       [detector, severity, entity_type] AS tags
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND severity IN ('high', 'critical')
  AND {SOC_FILTERS}
ORDER BY time""", "table", ref="Anno")}
    return _dashboard("ramparts-alerts", "Ramparts: SOC overview",
                      "Alerts by severity and detector, open incidents, the most alerted principals, models and GPUs.",
                      panels, [VARIABLES["model"], VARIABLES["principal"], VARIABLES["node"], *_entity_variables()],
                      ["soc"], [annotation])


# --- extraction ----------------------------------------------------------------------------------

REQUEST_FILTERS = ("$__conditionalAll(principal IN (${principal:sqlstring}), $principal)\n"
                   "  AND $__conditionalAll(model IN (${model:sqlstring}), $model)")


def extraction() -> dict:
    extraction_alerts = "detector LIKE 'extraction.%'"
    panels = [
        _panel("timeseries", "Answered queries per principal", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(principal) AS principal, count() AS queries
FROM ramparts.predictions FINAL
WHERE $__timeFilter(ts) AND principal IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, principal
ORDER BY time""", (0, 0, 12, 8), unit="short",
               description="Prediction records (KServe payload logs, native lines) per principal."),
        _panel("timeseries", "Gateway requests per principal", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(principal) AS principal, count() AS requests
FROM ramparts.requests FINAL
WHERE $__timeFilter(ts) AND principal IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, principal
ORDER BY time""", (12, 0, 12, 8)),
        _panel("table", "Volume per principal and model", f"""
SELECT assumeNotNull(principal) AS principal, assumeNotNull(model) AS model, count() AS requests,
       countIf(status >= 200 AND status < 300) AS answered,
       countIf(status IN (401, 403)) AS refused,
       sum(ifNull(tokens_in, 0)) AS tokens_in, sum(ifNull(tokens_out, 0)) AS tokens_out,
       round(count() / greatest(dateDiff('second', min(ts), max(ts)), 1) * 60, 1) AS per_minute
FROM ramparts.requests FINAL
WHERE $__timeFilter(ts) AND principal IS NOT NULL AND model IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY principal, model
ORDER BY requests DESC
LIMIT 100""", (0, 8, 24, 8),
               overrides=[{"matcher": {"id": "byName", "options": "refused"}, "properties": [
                   {"id": "thresholds", "value": _thresholds((None, "green"), (20, "red"))},
                   {"id": "custom.cellOptions", "value": {"type": "color-text"}}]}]),
        _panel("table", "Extraction statistics against thresholds", f"""
SELECT id, severity, detector, entity_type, entity_id,
       JSONExtractString(evidence, 'model') AS model,
       JSONExtractString(evidence, 'statistic') AS statistic,
       JSONExtractFloat(evidence, 'value') AS value,
       JSONExtractFloat(evidence, 'threshold') AS threshold,
       if(threshold > 0, value / threshold, 0) AS times_threshold,
       JSONExtractInt(evidence, 'queries') AS queries,
       ts AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND {extraction_alerts}
  AND {ALERT_FILTERS}
ORDER BY times_threshold DESC
LIMIT 200""", (0, 16, 24, 9), overrides=[
            _evidence_link(), _severity_colors(),
            {"matcher": {"id": "byName", "options": "times_threshold"}, "properties": [
                {"id": "unit", "value": "x"}, {"id": "decimals", "value": 1},
                {"id": "thresholds", "value": _thresholds((None, "green"), (1, "orange"), (3, "red"))},
                {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}}]}],
               description="The statistic behind each extraction alert, its value and the threshold it crossed."),
        _panel("bargauge", "Statistic / threshold, worst per principal", f"""
SELECT entity_id AS entity, max(if(JSONExtractFloat(evidence, 'threshold') > 0,
       JSONExtractFloat(evidence, 'value') / JSONExtractFloat(evidence, 'threshold'), 0)) AS times_threshold
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND {extraction_alerts}
  AND {ALERT_FILTERS}
GROUP BY entity
ORDER BY times_threshold DESC
LIMIT 15""", (0, 25, 12, 8), unit="x", decimals=1, minimum=0,
               thresholds=_thresholds((None, "green"), (1, "orange"), (3, "red")),
               options={"orientation": "horizontal", "displayMode": "gradient",
                        "reduceOptions": {"values": True, "calcs": [], "fields": ""}}),
        _panel("timeseries", "Error share per model", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(model) AS model,
       countIf(status >= 400) / count() AS error_share
FROM ramparts.requests FINAL
WHERE $__timeFilter(ts) AND model IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, model
ORDER BY time""", (12, 25, 12, 8), unit="percentunit", minimum=0, maximum=1,
               thresholds=_thresholds((None, "green"), (0.2, "red")),
               custom={"thresholdsStyle": {"mode": "line"}},
               description="Share of gateway requests answered with an error, per model."),
    ]
    return _dashboard("ramparts-extraction", "Ramparts: model extraction",
                      "Query volume per principal and the statistics of extraction alerts against their thresholds.",
                      panels, [VARIABLES["model"], VARIABLES["principal"]], ["extraction"])


# --- GPU compute ---------------------------------------------------------------------------------

GPU_FILTERS = "$__conditionalAll(node IN (${node:sqlstring}), $node)"
# GPUs held by authorized workloads that are active at some point of the range, per node: a pod
# that names its GPUs holds those; one that does not holds its gpu_count (docs/compute.md).
AUTHORIZED_PER_NODE = """
SELECT node, sum(gpus) AS authorized_gpus, count() AS workloads
FROM (
    SELECT assumeNotNull(node) AS node, namespace, pod,
           greatest(uniqExact(gpu_uuid), max(JSONExtractInt(extra, 'gpu_count'))) AS gpus
    FROM ramparts.workloads FINAL
    WHERE node IS NOT NULL AND ifNull(start, ts) <= $__toTime AND (`end` IS NULL OR `end` >= $__fromTime)
    GROUP BY node, namespace, pod
)
GROUP BY node"""


def compute() -> dict:
    panels = [
        _panel("timeseries", "Busy GPUs against authorized GPUs per node", f"""
SELECT $__timeInterval(g.ts) AS time, g.node AS node,
       uniqExactIf(g.gpu_uuid, g.util_pct >= {BUSY_UTIL_PCT}) AS busy_gpus,
       any(w.authorized_gpus) AS authorized_gpus
FROM (SELECT ts, assumeNotNull(node) AS node, gpu_uuid, util_pct FROM ramparts.gpu FINAL
      WHERE $__timeFilter(ts) AND node IS NOT NULL AND {GPU_FILTERS}) AS g
LEFT JOIN ({AUTHORIZED_PER_NODE.strip()}) AS w ON g.node = w.node
GROUP BY time, node
ORDER BY time""", (0, 0, 24, 9), minimum=0, decimals=0,
               description=f"A GPU is busy at {BUSY_UTIL_PCT}% utilisation or more. Busy above authorized "
                           "means a GPU works for no authorized workload (gpu.unauthorized)."),
        _panel("timeseries", "GPU utilisation", f"""
SELECT $__timeInterval(ts) AS time, concat(assumeNotNull(node), ' ', assumeNotNull(gpu_uuid)) AS gpu,
       avg(util_pct) AS avg_util_pct
FROM ramparts.gpu FINAL
WHERE $__timeFilter(ts) AND gpu_uuid IS NOT NULL AND {GPU_FILTERS}
GROUP BY time, gpu
ORDER BY time""", (0, 9, 24, 9), unit="percent", minimum=0, maximum=100,
               thresholds=_thresholds((None, "green"), (BUSY_UTIL_PCT, "yellow"), (95, "red")),
               custom={"thresholdsStyle": {"mode": "dashed"}}),
        _panel("table", "GPUs: utilisation, authorization and alerts", f"""
SELECT g.node AS node, g.gpu_uuid AS gpu_uuid, g.avg_util AS avg_util, g.max_util AS max_util,
       g.busy_share AS busy_share, g.pods AS pods_on_gpu,
       ifNull(w.authorized_gpus, 0) AS authorized_gpus_on_node,
       ifNull(a.alerts, 0) AS alerts, a.detectors AS detectors
FROM (SELECT assumeNotNull(node) AS node, assumeNotNull(gpu_uuid) AS gpu_uuid, avg(util_pct) AS avg_util,
             max(util_pct) AS max_util, countIf(util_pct >= {BUSY_UTIL_PCT}) / count() AS busy_share,
             arrayStringConcat(groupUniqArray(concat(assumeNotNull(namespace), '/', assumeNotNull(pod))), ', ') AS pods
      FROM ramparts.gpu FINAL
      WHERE $__timeFilter(ts) AND node IS NOT NULL AND gpu_uuid IS NOT NULL AND {GPU_FILTERS}
      GROUP BY node, gpu_uuid) AS g
LEFT JOIN ({AUTHORIZED_PER_NODE.strip()}) AS w ON g.node = w.node
LEFT JOIN (SELECT entity_id AS gpu_uuid, count() AS alerts, arrayStringConcat(groupUniqArray(detector), ', ') AS detectors
           FROM ramparts.alerts FINAL
           WHERE $__timeFilter(ts) AND entity_type = 'gpu'
           GROUP BY gpu_uuid) AS a ON g.gpu_uuid = a.gpu_uuid
ORDER BY alerts DESC, busy_share DESC
LIMIT 500""", (0, 18, 24, 10), overrides=[
            {"matcher": {"id": "byRegexp", "options": "avg_util|max_util"}, "properties": [
                {"id": "unit", "value": "percent"}, {"id": "decimals", "value": 1}]},
            {"matcher": {"id": "byName", "options": "busy_share"}, "properties": [
                {"id": "unit", "value": "percentunit"},
                {"id": "custom.cellOptions", "value": {"type": "gauge", "mode": "basic"}}, {"id": "max", "value": 1}]},
            {"matcher": {"id": "byName", "options": "alerts"}, "properties": [
                {"id": "thresholds", "value": _thresholds((None, "green"), (1, "red"))},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}]),
        _panel("table", "GPU alerts", f"""
SELECT id, severity, detector, entity_type, entity_id, JSONExtractString(evidence, 'node') AS node,
       JSONExtractString(evidence, 'reason') AS reason, summary, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND (detector LIKE 'gpu.%' OR detector = 'runtime.falco')
  AND {ALERT_FILTERS}
ORDER BY ts DESC
LIMIT 200""", (0, 28, 24, 8), overrides=[_evidence_link(), _severity_colors()]),
        _panel("timeseries", "Power draw per node", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(node) AS node, sum(power_w) / uniqExact(ts) AS node_power_w
FROM ramparts.gpu FINAL
WHERE $__timeFilter(ts) AND node IS NOT NULL AND power_w IS NOT NULL AND {GPU_FILTERS}
GROUP BY time, node
ORDER BY time""", (0, 36, 12, 8), unit="watt", minimum=0),
        _panel("table", "Authorized workloads", f"""
SELECT assumeNotNull(node) AS node, namespace, pod, ifNull(gpu_uuid, '') AS gpu_uuid,
       JSONExtractInt(extra, 'gpu_count') AS gpu_count, source, start, `end`
FROM ramparts.workloads FINAL
WHERE node IS NOT NULL AND ifNull(start, ts) <= $__toTime AND (`end` IS NULL OR `end` >= $__fromTime)
  AND {GPU_FILTERS}
ORDER BY node, namespace, pod
LIMIT 500""", (12, 36, 12, 8)),
    ]
    return _dashboard("ramparts-compute", "Ramparts: GPU compute",
                      "GPU utilisation against the authorized workloads, per node and GPU.",
                      panels, [VARIABLES["node"]], ["gpu"])


# --- drift ---------------------------------------------------------------------------------------

def drift() -> dict:
    version = "concat(assumeNotNull(model), ':', ifNull(model_version, 'default'))"
    drift_alerts = "(detector LIKE 'drift.%' OR detector LIKE 'anomaly.%')"
    panels = [
        _panel("table", "Drift per model version", f"""
SELECT JSONExtractString(evidence, 'model') AS model,
       if(JSONExtractString(evidence, 'version') = '', 'default', JSONExtractString(evidence, 'version')) AS version,
       count() AS incidents, max(score) AS max_score,
       argMax(JSONExtractString(evidence, 'family'), score) AS family,
       argMax(JSONExtractString(evidence, 'feature'), score) AS feature,
       argMax(JSONExtractString(evidence, 'statistic'), score) AS statistic,
       argMax(JSONExtractFloat(evidence, 'value'), score) AS value,
       argMax(JSONExtractFloat(evidence, 'threshold'), score) AS threshold,
       max(ts) AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND detector LIKE 'drift.%'
  AND {ALERT_FILTERS}
GROUP BY model, version
ORDER BY max_score DESC""", (0, 0, 24, 8), overrides=[
            {"matcher": {"id": "byName", "options": "max_score"}, "properties": [
                {"id": "thresholds", "value": _thresholds((None, "green"), (1, "yellow"), (5, "red"))},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}, {"id": "decimals", "value": 2}]}],
               description="The worst finding of each model version: the statistic (PSI, KS...), its value and threshold."),
        _panel("timeseries", "Drift score per model version", f"""
SELECT $__timeInterval(ts) AS time, entity_id AS model_version, max(score) AS score
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND {drift_alerts}
  AND {ALERT_FILTERS}
GROUP BY time, model_version
ORDER BY time""", (0, 8, 12, 8), thresholds=_thresholds((None, "green"), (1, "red")),
               custom={"drawStyle": "points", "pointSize": 8, "thresholdsStyle": {"mode": "line"}},
               description="Score is the statistic over its threshold: above 1 is drift."),
        _panel("timeseries", "Predictions per model version", f"""
SELECT $__timeInterval(ts) AS time, {version} AS model_version, count() AS predictions
FROM ramparts.predictions FINAL
WHERE $__timeFilter(ts) AND model IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, model_version
ORDER BY time""", (12, 8, 12, 8)),
        _panel("timeseries", "Latency p95 per model", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(model) AS model, quantile(0.95)(latency_ms) AS latency_p95_ms
FROM ramparts.requests FINAL
WHERE $__timeFilter(ts) AND model IS NOT NULL AND latency_ms IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, model
ORDER BY time""", (0, 16, 12, 8), unit="ms", minimum=0,
               thresholds=_thresholds((None, "green"), (2000, "red")), custom={"thresholdsStyle": {"mode": "dashed"}}),
        _panel("timeseries", "Output tokens per request", f"""
SELECT $__timeInterval(ts) AS time, assumeNotNull(model) AS model, avg(tokens_out) AS avg_tokens_out
FROM ramparts.requests FINAL
WHERE $__timeFilter(ts) AND model IS NOT NULL AND tokens_out IS NOT NULL
  AND {REQUEST_FILTERS}
GROUP BY time, model
ORDER BY time""", (12, 16, 12, 8), minimum=0),
        _panel("table", "Drift and metric anomaly alerts", f"""
SELECT id, severity, detector, entity_id AS model_version, summary, score, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND {drift_alerts}
  AND {ALERT_FILTERS}
ORDER BY ts DESC
LIMIT 200""", (0, 24, 24, 8), overrides=[_evidence_link(), _severity_colors()]),
    ]
    return _dashboard("ramparts-drift", "Ramparts: drift per model version",
                      "Input and output drift and metric anomalies per model version.",
                      panels, [VARIABLES["model"], VARIABLES["principal"]], ["drift"])


# --- playbooks -----------------------------------------------------------------------------------

# The actions table of migration 0001, written by the playbook engine (playbooks/engine.py,
# _record_action): one row per step of a run, rewritten as its status changes
# (awaiting_approval, done, dry_run, limited, failed, denied, reverted, revert_failed); the
# latest updated_at wins. The audit trail is playbook_audit (migration 0002).
ACTION_FILTERS = "$__conditionalAll(target IN (${principal:sqlstring}), $principal)"


def playbooks() -> dict:
    panels = [
        _panel("stat", "Approvals pending", f"""
SELECT countIf(status = 'awaiting_approval') AS approvals_pending
FROM ramparts.actions FINAL
WHERE {ACTION_FILTERS}""", (0, 0, 6, 4), thresholds=_thresholds((None, "green"), (1, "orange")),
               description="Steps of playbooks in approve mode waiting for `ramparts playbook approve`, whatever their age."),
        _panel("stat", "Actions in range", f"""
SELECT count() AS actions, countIf(status = 'done') AS done, countIf(status = 'failed') AS failed,
       countIf(status = 'reverted') AS reverted
FROM ramparts.actions FINAL
WHERE $__timeFilter(ts) AND {ACTION_FILTERS}""", (6, 0, 12, 4), thresholds=_thresholds((None, "blue"))),
        _panel("stat", "Failed actions", f"""
SELECT countIf(status IN ('failed', 'revert_failed')) AS failed
FROM ramparts.actions FINAL
WHERE $__timeFilter(ts) AND {ACTION_FILTERS}""", (18, 0, 6, 4), thresholds=_thresholds((None, "green"), (1, "red"))),
        _panel("timeseries", "Actions by status", f"""
SELECT $__timeInterval(ts) AS time, status, count() AS actions
FROM ramparts.actions FINAL
WHERE $__timeFilter(ts) AND {ACTION_FILTERS}
GROUP BY time, status
ORDER BY time""", (0, 4, 12, 8), custom={"drawStyle": "bars", "stacking": {"mode": "normal"}, "fillOpacity": 80}),
        _panel("piechart", "Actions by type and mode", f"""
SELECT concat(action, ' (', mode, ')') AS action_mode, count() AS actions
FROM ramparts.actions FINAL
WHERE $__timeFilter(ts) AND {ACTION_FILTERS}
GROUP BY action_mode
ORDER BY actions DESC""", (12, 4, 12, 8),
               options={"reduceOptions": {"values": True, "calcs": ["lastNotNull"], "fields": ""},
                        "pieType": "donut", "legend": {"displayMode": "table", "placement": "right", "values": ["value"]}}),
        _panel("table", "Steps waiting for approval", f"""
SELECT alert_id AS id, playbook, step, action, target, ts AS requested, detail
FROM ramparts.actions FINAL
WHERE status = 'awaiting_approval' AND {ACTION_FILTERS}
ORDER BY ts
LIMIT 200""", (0, 12, 24, 7), overrides=[_evidence_link()]),
        _panel("table", "Actions and their outcome", f"""
SELECT a.alert_id AS id, a.playbook AS playbook, a.step AS step, a.action AS action, a.target AS target,
       a.mode AS mode, a.status AS status, a.ts AS started, a.updated_at AS updated,
       al.severity AS alert_severity, al.detector AS alert_detector
FROM (SELECT * FROM ramparts.actions FINAL WHERE $__timeFilter(ts) AND {ACTION_FILTERS}) AS a
LEFT JOIN (SELECT id, severity, detector FROM ramparts.alerts FINAL) AS al ON a.alert_id = al.id
ORDER BY a.updated_at DESC
LIMIT 500""", (0, 19, 24, 9), overrides=[
            _evidence_link(),
            {"matcher": {"id": "byName", "options": "status"}, "properties": [
                {"id": "mappings", "value": [{"type": "value", "options": {
                    "done": {"color": "green", "index": 0}, "awaiting_approval": {"color": "orange", "index": 1},
                    "failed": {"color": "red", "index": 2}, "reverted": {"color": "blue", "index": 3},
                    "revert_failed": {"color": "red", "index": 4}, "denied": {"color": "purple", "index": 5},
                    "limited": {"color": "yellow", "index": 6}, "dry_run": {"color": "text", "index": 7}}}]},
                {"id": "custom.cellOptions", "value": {"type": "color-background"}}]}]),
        _panel("table", "Reverts", f"""
SELECT alert_id AS id, playbook, step, action, target, ts AS acted, updated_at AS reverted_at,
       dateDiff('second', ts, updated_at) AS held_seconds
FROM ramparts.actions FINAL
WHERE $__timeFilter(updated_at) AND status = 'reverted' AND {ACTION_FILTERS}
ORDER BY updated_at DESC
LIMIT 200""", (0, 28, 16, 8), overrides=[
            _evidence_link(), {"matcher": {"id": "byName", "options": "held_seconds"},
                               "properties": [{"id": "unit", "value": "s"}]}]),
        _panel("stat", "Audit trail", """
SELECT count() AS records, max(seq) - min(seq) + 1 - count() AS missing_seq,
       countIf(prev_hash = '') AS unchained
FROM ramparts.playbook_audit""", (16, 28, 8, 8), thresholds=_thresholds((None, "green"), (1, "red")),
               overrides=[{"matcher": {"id": "byName", "options": "records"},
                           "properties": [{"id": "thresholds", "value": _thresholds((None, "blue"))}]}],
               description="Records of the hash-chained audit log; a gap in seq means a deleted record. An edited "
                           "record only shows in `ramparts playbook audit --verify`, which recomputes the hashes."),
    ]
    return _dashboard("ramparts-playbooks", "Ramparts: playbooks",
                      "Playbook actions, approvals pending, reverts and the audit trail.",
                      panels, [VARIABLES["principal"]], ["playbooks"], time_from="now-24h")


# --- the evidence of one alert -------------------------------------------------------------------

# The alert named by $alert_id; the events behind it are those of its entity in its window, with
# a minute either side (the window is the incident's first to last event).
# any(): an aggregate answers one row even when no alert has that id (a scalar subquery
# without rows is an error), so an unknown or empty id shows empty panels.
_ALERT = "(SELECT any({col}) FROM ramparts.alerts FINAL WHERE id = ${{alert_id:sqlstring}})"
_FROM = ("(SELECT any(ifNull(window_start, ts)) - INTERVAL 60 SECOND FROM ramparts.alerts FINAL "
         "WHERE id = ${alert_id:sqlstring})")
_TO = ("(SELECT any(greatest(ifNull(window_end, ts), ts)) + INTERVAL 60 SECOND FROM ramparts.alerts FINAL "
       "WHERE id = ${alert_id:sqlstring})")


def evidence() -> dict:
    etype, eid = _ALERT.format(col="entity_type"), _ALERT.format(col="entity_id")
    in_window = f"ts >= {_FROM} AND ts <= {_TO}"
    panels = [
        _panel("table", "Alert", """
SELECT id, severity, detector, entity_type, entity_id, summary, score, event_count,
       first_event_ts, window_start, window_end, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE id = ${alert_id:sqlstring}""", (0, 0, 24, 4), overrides=[_severity_colors()]),
        _panel("table", "Evidence", """
SELECT kv.1 AS name, kv.2 AS value
FROM ramparts.alerts FINAL
ARRAY JOIN JSONExtractKeysAndValuesRaw(evidence) AS kv
WHERE id = ${alert_id:sqlstring}""", (0, 4, 10, 12),
               description="The numbers behind the alert (its evidence object), one per row."),
        _panel("table", "Events of the entity in the alert's window", f"""
SELECT ts AS time, 'request' AS kind, ifNull(principal, '') AS who, ifNull(src_ip, '') AS src_ip,
       concat(ifNull(model, ''), ' ', ifNull(path, ''), ' ', toString(ifNull(status, 0))) AS what,
       latency_ms AS value
FROM ramparts.requests FINAL
WHERE {in_window}
  AND ({etype} = 'principal' AND principal = {eid} OR {etype} = 'src_ip' AND src_ip = {eid})
UNION ALL
SELECT ts AS time, 'prediction' AS kind, ifNull(principal, '') AS who, ifNull(src_ip, '') AS src_ip,
       concat(ifNull(model, ''), ':', ifNull(model_version, 'default'), ' ', left(ifNull(input, ''), 120)) AS what,
       NULL AS value
FROM ramparts.predictions FINAL
WHERE {in_window}
  AND ({etype} = 'principal' AND principal = {eid} OR {etype} = 'src_ip' AND src_ip = {eid}
       OR {etype} = 'model' AND concat(ifNull(model, ''), ':', ifNull(model_version, 'default')) = {eid}
       OR {etype} = 'model' AND ifNull(model, '') = {eid})
UNION ALL
SELECT ts AS time, 'gpu' AS kind, concat(ifNull(node, ''), ' ', ifNull(gpu_uuid, '')) AS who, '' AS src_ip,
       concat(ifNull(namespace, ''), '/', ifNull(pod, ''), ' ', ifNull(processes, '')) AS what, util_pct AS value
FROM ramparts.gpu FINAL
WHERE {in_window}
  AND ({etype} = 'gpu' AND gpu_uuid = {eid} OR {etype} = 'node' AND node = {eid})
UNION ALL
SELECT ts AS time, 'runtime' AS kind, ifNull(user, '') AS who, ifNull(src_ip, '') AS src_ip,
       concat(ifNull(rule, ifNull(verb, '')), ' ', ifNull(namespace, ''), '/', ifNull(pod, ''), ' ', ifNull(process, '')) AS what,
       NULL AS value
FROM ramparts.runtime FINAL
WHERE {in_window}
  AND ({etype} = 'pod' AND concat(ifNull(namespace, ''), '/', ifNull(pod, '')) = {eid}
       OR {etype} = 'src_ip' AND src_ip = {eid})
ORDER BY time
LIMIT 1000""", (10, 4, 14, 12),
               description="Requests, predictions, GPU samples and runtime events of the alert's entity, "
                           "from a minute before its first event to a minute after its last alert."),
        _panel("table", "Playbook actions on this alert", """
SELECT playbook, step, action, target, mode, status, ts AS started, updated_at AS updated, detail
FROM ramparts.actions FINAL
WHERE alert_id = ${alert_id:sqlstring}
ORDER BY ts""", (0, 16, 24, 6)),
        _panel("table", "Other incidents of the entity", f"""
SELECT id, severity, detector, summary, ts AS last_alert
FROM ramparts.alerts FINAL
WHERE $__timeFilter(ts) AND entity_type = {etype} AND entity_id = {eid} AND id != ${{alert_id:sqlstring}}
ORDER BY ts DESC
LIMIT 100""", (0, 22, 24, 6), overrides=[_evidence_link(), _severity_colors()]),
    ]
    variable = {"name": "alert_id", "label": "Alert id", "type": "textbox", "query": "", "hide": 0,
                "current": {"text": "", "value": ""}, "options": []}
    return _dashboard(EVIDENCE_UID, "Ramparts: alert evidence",
                      "One alert: its evidence, the events behind it and the playbook actions it triggered.",
                      panels, [variable], ["soc"], time_from="now-24h")


def dashboards() -> dict[str, dict]:
    """Every dashboard by uid."""
    built = [soc_overview(), extraction(), compute(), drift(), playbooks(), evidence()]
    return {d["uid"]: d for d in built}


FILE_NAMES = {
    "ramparts-alerts": "soc-overview.json",
    "ramparts-extraction": "extraction.json",
    "ramparts-compute": "gpu-compute.json",
    "ramparts-drift": "drift.json",
    "ramparts-playbooks": "playbooks.json",
    EVIDENCE_UID: "alert-evidence.json",
}
