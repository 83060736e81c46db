"""Configuration: one YAML file, every key overridable from the environment, unknown keys rejected.

``ramparts.yaml`` (or ``--config FILE``) is read first; then every environment variable
``RAMPARTS_<KEY>`` or ``RAMPARTS_<SECTION>__<KEY>__...`` overrides the key at that path
(values are read as YAML scalars, so ``true`` and ``5`` keep their types). A key that the
schema does not know is an error whose message names the closest known key.

Each parser declares its own options model (``Parser.Options``); the ``parsers`` section is
validated against them, so the parser is the single source of truth for what it accepts.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from .errors import ConfigError

ENV_PREFIX = "RAMPARTS_"
DEFAULT_CONFIG_FILE = "ramparts.yaml"


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(StrictModel):
    """Where events, alerts and actions are stored (``sinks/clickhouse``)."""

    dsn: str = Field(
        default="ramparts-data",
        description="A directory (embedded chdb store) or a clickhouse:// / http(s):// server DSN.")
    database: str = Field(default="ramparts", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                          description="ClickHouse database that holds the tables.")
    retention_days: int = Field(
        default=90, ge=0, description="Rows are deleted this many days after they were stored; 0 keeps them.")
    max_batch_rows: int = Field(
        default=20000, ge=1,
        description="An insert is sent when a table buffers this many rows (bigger inserts cost less per row).")
    flush_interval_seconds: float = Field(
        default=1.0, gt=0, description="Buffered rows are sent at least this often.")
    password_env: str = Field(
        default="RAMPARTS_STORE_PASSWORD",
        description="Environment variable read for the server password when the DSN has none.")


class KafkaConfig(StrictModel):
    """The broker and topics of the streaming runtime (``streams/app.py``)."""

    bootstrap: str = Field(default="127.0.0.1:9092", description="host:port[,host:port...] of the brokers.")
    topic_prefix: str = Field(default="ramparts", pattern=r"^[A-Za-z0-9._-]+$",
                              description="Every topic is named <prefix>.<name>.")
    partitions: int = Field(default=4, ge=1, description="Partitions of the topics the runtime creates.")
    group: str = Field(default="ramparts-worker", description="Consumer group (Faust app id) of the workers.")
    batch_max_events: int = Field(default=5000, ge=1, description="A worker batch holds at most this many messages.")
    batch_max_seconds: float = Field(default=0.05, gt=0,
                                     description="A worker micro-batch waits at most this long to fill.")
    ship_max_records: int = Field(default=1000, ge=1, description="`ramparts ship` packs up to this many records per message.")
    fetch_max_wait_ms: int = Field(
        default=100, ge=1, description="Longest a worker's fetch waits for data (Faust's own is 1500).")
    raw_fetch_partition_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024,
        description="Most bytes the parse stage fetches from one raw partition at once: a backlog's micro-batches, "
                    "and so the detect batches, grow with it (Faust's own is 1 MiB).")
    session_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A worker that stops heartbeating loses its partitions after this long.")
    compression: str = Field(default="lz4", pattern=r"^(none|gzip|lz4|zstd|snappy)$",
                             description="Compression of the messages `ramparts ship` produces, and of the worker's "
                                         "unless worker_compression says otherwise.")
    worker_compression: str | None = Field(
        default=None, pattern=r"^(none|gzip|lz4|zstd|snappy)$",
        description="Compression of the messages the worker produces (the events topics, the tables' changelogs, "
                    "alerts, dead letters); unset: as compression. `none` saves the worker's CPU on a cluster-local "
                    "hop at the price of several times the bytes on the broker (docs/streaming.md).")


SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")
OUTPUT_TYPES = ("webhook", "slack", "pagerduty", "alertmanager", "grafana")


class OutputConfig(StrictModel):
    """One alert output (``sinks/<type>.py``) and which incidents it gets (docs/alerting.md)."""

    type: str = Field(description=f"One of: {', '.join(OUTPUT_TYPES)}.")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]+$",
                             description="Name in metrics, the outbox and `ramparts alerts show` (default: the type, "
                                         "numbered when several share it).")
    url: str | None = Field(default=None, description="Where to send (pagerduty: default https://events.pagerduty.com/"
                                                      "v2/enqueue). A Slack webhook URL is a secret: prefer url_env.")
    url_env: str | None = Field(default=None, description="Environment variable holding the URL.")
    secret: SecretStr | None = Field(
        default=None, description="Signing secret (webhook: whsec_...), PagerDuty routing key, or Grafana token.")
    secret_env: str | None = Field(default=None, description="Environment variable holding the secret.")
    previous_secret: SecretStr | None = Field(
        default=None, description="webhook: a second secret signed with too while receivers rotate to the new one.")
    previous_secret_env: str | None = Field(default=None, description="Environment variable holding previous_secret.")
    min_severity: str = Field(default="low", description="Incidents below this severity are not sent here.")
    detectors: list[str] = Field(default_factory=list,
                                 description="Only these detectors (glob patterns, e.g. extraction.*); empty: all.")
    exclude_detectors: list[str] = Field(default_factory=list, description="Never these detectors (glob patterns).")
    entities: list[str] = Field(default_factory=list,
                                description="Only these entities, as type:id glob patterns (principal:svc-*); empty: all.")
    exclude_entities: list[str] = Field(default_factory=list, description="Never these entities (type:id globs).")
    dashboard_url: str | None = Field(default=None, description="Link sent with each alert (default: alerting.dashboard_url).")
    dashboard_uid: str | None = Field(default=None, description="grafana: the dashboard the annotations belong to.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="One delivery attempt waits this long for an answer.")

    @model_validator(mode="after")
    def _check(self) -> "OutputConfig":
        if self.type not in OUTPUT_TYPES:
            raise ValueError(f"unknown output type {self.type!r}{_suggest(self.type, OUTPUT_TYPES)}")
        if self.min_severity not in SEVERITY_NAMES:
            raise ValueError(f"min_severity {self.min_severity!r} is not one of {', '.join(SEVERITY_NAMES)}")
        if self.url is None and self.url_env is None and self.type != "pagerduty":
            raise ValueError(f"output of type {self.type} needs url or url_env")
        if self.type == "pagerduty" and self.secret is None and self.secret_env is None:
            raise ValueError("a pagerduty output needs its routing key as secret or secret_env")
        return self

    def resolved_url(self, env: Mapping[str, str] | None = None) -> str:
        if self.url is None and self.url_env is None:  # pagerduty: its public Events API v2 endpoint
            return "https://events.pagerduty.com/v2/enqueue"
        return self._resolve(self.url, self.url_env, "url", env)

    def resolved_secrets(self, env: Mapping[str, str] | None = None) -> list[str]:
        """The secrets in use, the current one first (none for an unsigned output)."""
        out = []
        for value, name, what in ((self.secret, self.secret_env, "secret"),
                                  (self.previous_secret, self.previous_secret_env, "previous_secret")):
            if value is not None or name is not None:
                out.append(self._resolve(value, name, what, env))
        return out

    def _resolve(self, value, env_name, what, env) -> str:
        if value is not None:
            return value.get_secret_value() if isinstance(value, SecretStr) else value
        env = os.environ if env is None else env
        got = env.get(env_name or "")
        if not got:
            raise ConfigError(f"output {self.name or self.type}: {what}_env names {env_name}, which is not set")
        return got


class AlertingConfig(StrictModel):
    """Incidents, notifications and their delivery (``alerting/``, docs/alerting.md)."""

    incident_window_seconds: float = Field(
        default=3600.0, gt=0,
        description="Alerts of one detector about one entity within this long of the incident's last alert update "
                    "it (same id); after this long without one, the incident resolves.")
    renotify_seconds: float = Field(
        default=14400.0, ge=0, description="An open incident is sent again after this long (event time); 0: never.")
    outbox_dir: str = Field(default="ramparts-outbox",
                            description="Directory of the durable outbox (SQLite, WAL) the worker delivers from.")
    dashboard_url: str = Field(default="http://localhost:3000/d/ramparts-alerts",
                               description="The Grafana dashboard alerts link to.")
    retry_initial_seconds: float = Field(default=1.0, gt=0, description="First retry after this long, then doubling.")
    retry_max_seconds: float = Field(default=300.0, gt=0, description="Retries are at most this far apart.")
    give_up_after_seconds: float = Field(
        default=86400.0, gt=0, description="A notification not delivered this long after it was queued is dead-lettered.")
    max_attempts: int = Field(default=0, ge=0, description="Dead-letter after this many attempts; 0: no limit.")
    breaker_failures: int = Field(default=5, ge=1,
                                  description="Consecutive failures that open an output's circuit breaker.")
    breaker_open_seconds: float = Field(default=30.0, gt=0,
                                        description="An open breaker lets one trial through after this long.")
    delivered_retention_days: float = Field(default=7.0, ge=0,
                                            description="Delivered notifications are kept this long for dedup and `alerts show`.")
    seed: int | None = Field(default=None, description="Seed of the retry jitter (tests); default: random.")


class PlaybooksConfig(StrictModel):
    """Response playbooks (``playbooks/``, docs/playbooks.md)."""

    dir: str | None = Field(default=None, description="Directory of playbook YAML files (default: the shipped ones).")
    state_dir: str = Field(default="ramparts-playbooks",
                           description="Directory of the engine's state (SQLite): runs, steps, revert timers.")
    max_actions_per_target_per_hour: int = Field(
        default=3, ge=1, description="At most this many actions on one principal or model version per hour.")
    approval_listen: str = Field(default="127.0.0.1:8787", description="host:port of the approval HTTP endpoint.")
    approval_token_env: str = Field(default="RAMPARTS_APPROVAL_TOKEN",
                                    description="Environment variable holding the approval endpoint's bearer token.")
    tick_seconds: float = Field(default=1.0, gt=0, description="`playbook serve` checks revert timers this often.")
    actions: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-action settings (nginx, litellm, kong, http, mlflow, model_repo).")


class Config(StrictModel):
    hash_key: SecretStr | None = Field(
        default=None, description="Key of the HMAC that turns credentials into principal ids.")
    hash_key_env: str = Field(
        default="RAMPARTS_HASH_KEY", description="Environment variable read for hash_key when it is not set here.")
    parsers: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-format parser options, keyed by format name.")
    detectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per-detector options keyed by detector name; `enabled: false` turns one off.")
    store: StoreConfig = Field(default_factory=StoreConfig, description="ClickHouse storage.")
    kafka: KafkaConfig = Field(default_factory=KafkaConfig, description="Broker, topics and batching.")
    alerting: AlertingConfig = Field(default_factory=AlertingConfig, description="Incidents and delivery.")
    outputs: list[OutputConfig] = Field(default_factory=list, description="Where notifications go (SPEC.md, Outputs).")
    playbooks: PlaybooksConfig = Field(default_factory=PlaybooksConfig, description="Response playbooks.")

    @model_validator(mode="after")
    def _unique_output_names(self) -> "Config":
        seen: set[str] = set()
        for name in self.output_names():
            if name in seen:
                raise ValueError(f"two outputs are named {name!r}; give each a distinct name")
            seen.add(name)
        return self

    def output_names(self) -> list[str]:
        """Each output's name: its ``name``, else its type, numbered from the second of a type on."""
        names, per_type = [], {}
        for o in self.outputs:
            per_type[o.type] = per_type.get(o.type, 0) + 1
            names.append(o.name or (o.type if per_type[o.type] == 1 else f"{o.type}-{per_type[o.type]}"))
        return names

    def resolved_hash_key(self) -> str | None:
        if self.hash_key is not None:
            return self.hash_key.get_secret_value()
        return os.environ.get(self.hash_key_env) or None

    def parser_options(self, name: str) -> BaseModel:
        from ramparts.streams.parsers import get_parser_class

        cls = get_parser_class(name)
        try:
            return cls.Options(**self.parsers.get(name, {}))
        except ValidationError as e:
            raise ConfigError(_explain(e, cls.Options, prefix=f"parsers.{name}")) from None


    def detector_enabled(self, name: str) -> bool:
        return self.detectors.get(name, {}).get("enabled", True) is not False

    def detector_options(self, name: str) -> BaseModel:
        from ramparts.detectors import get_detector_class

        try:
            cls = get_detector_class(name)
        except KeyError as e:
            raise ConfigError(f"detectors.{name}: {e.args[0]}") from None
        section = {k: v for k, v in self.detectors.get(name, {}).items() if k != "enabled"}
        try:
            return cls.Options(**section)
        except ValidationError as e:
            raise ConfigError(_explain(e, cls.Options, prefix=f"detectors.{name}")) from None


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the config file (if any), apply environment overrides, validate."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must be a mapping of keys, got {type(loaded).__name__}")
        data = loaded
    _apply_env(data, env)
    try:
        config = Config(**data)
    except ValidationError as e:
        raise ConfigError(_explain(e, Config)) from None
    for name in config.detectors:
        config.detector_options(name)
    for name in config.parsers:  # validate every parser section now, not at first use
        try:
            config.parser_options(name)
        except KeyError as e:
            raise ConfigError(f"parsers.{name}: {e.args[0]}") from None
    return config


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    top = set(Config.model_fields)
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        # A plain RAMPARTS_FOO that names no key is someone's secret variable (secret_env,
        # hash_key_env), not an override; a nested one that names no section is a typo.
        if len(path) == 1 and path[0] not in top:
            continue
        if path[0] not in top:
            raise ConfigError(f"environment variable {name} names no config key{_suggest(path[0], top)}")
        if path[0] == "detectors" and len(path) > 2:
            path[1] = _detector_name(path[1])
        node = data
        for key in path[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[path[-1]] = raw if _is_text_field(path) or raw == "" else yaml.safe_load(raw)


def _detector_name(word: str) -> str:
    """``access_stuffing`` -> ``access.stuffing``: a shell cannot export a variable with a dot."""
    from ramparts.detectors import DETECTORS

    if word in DETECTORS:
        return word
    for name in DETECTORS:
        if name.replace(".", "_") == word:
            return name
    return word


def _is_text_field(path: list[str]) -> bool:
    """Whether the key at ``path`` holds text (a secret or a name): its value is taken as written.

    Read as YAML, a hash key of digits would become a number and ``no`` a boolean.
    """
    current: Any = Config
    for part in path:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return False
        current = field.annotation
    return current in (str, SecretStr, SecretStr | None, str | None)


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else f"; known keys: {', '.join(sorted(choices))}"


def _explain(err: ValidationError, model: type[BaseModel], prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        where = ".".join(([prefix] if prefix else []) + loc)
        if e["type"] == "extra_forbidden":
            known = _fields_at(model, e["loc"][:-1])
            lines.append(f"unknown key '{where}'{_suggest(loc[-1], known) if known else ''}")
        else:
            lines.append(f"{where}: {e['msg']}")
    return "invalid configuration: " + "; ".join(lines)


def _fields_at(model: type[BaseModel], loc) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):  # an item of a list (outputs.0): the list's item model
            args = getattr(current, "__args__", ())
            current = args[0] if args else None
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = field.annotation
    return list(getattr(current, "model_fields", {}))
