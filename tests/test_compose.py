"""docker-compose.yml, checked by reading it: there is no Docker engine where the tests run.

The validators below read the compose file the way ``docker compose`` does (YAML, then variable
interpolation in values), and each returns the list of what is wrong, so that every check is
also run against a deliberately broken copy of the stack in ``tmp_path`` and shown to fail.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shlex
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ramparts.config import load_config
from ramparts.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
HASH_KEY = "9f2c61d0a4b7e85c3f1d2a6b0c9e8f7a"
ENV = {"RAMPARTS_HASH_KEY": HASH_KEY, "RAMPARTS_APPROVAL_TOKEN": "approval-token-for-tests"}
IMAGES = {"kafka": "apache/kafka", "clickhouse": "clickhouse/clickhouse-server", "grafana": "grafana/grafana"}
DATASOURCE_TYPE = "grafana-clickhouse-datasource"
DATASOURCE_UID = "ramparts-clickhouse"
PROVISIONING = "/etc/grafana/provisioning"
# Ports the ClickHouse server listens on, by the protocol of Grafana's datasource.
CLICKHOUSE_PORTS = {"native": {9000, 9440}, "http": {8123, 8443}}


class ComposeError(ValueError):
    pass


# --- reading the compose file --------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR:?error}, ${VAR:+alt}.

    With the colon an empty value counts as unset, as in the shell and in compose.
    """

    def one(m: re.Match) -> str:
        if m["escaped"]:
            return "$"
        if m["invalid"] is not None:
            raise ComposeError(f"invalid interpolation format in {text!r}")
        name = m["braced"] or m["named"]
        value, op, arg = env.get(name), m["op"], m["arg"]
        present = value is not None and (value != "" or not (op or "").startswith(":"))
        if op is None:
            return value or ""
        if op.endswith("-"):
            return value if present else arg
        if op.endswith("?"):
            if not present:
                raise ComposeError(f"required variable {name} is missing a value: {arg}")
            return value
        return arg if present else ""  # op ends with "+"

    return _VARIABLE.sub(one, text)


def _interpolate_values(node, env):
    if isinstance(node, dict):
        return {k: _interpolate_values(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_values(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(root: Path = REPO, env: dict[str, str] = ENV) -> dict:
    # Compose parses YAML first and interpolates values after, so comments are never expanded.
    data = yaml.safe_load((root / "docker-compose.yml").read_text())
    return _interpolate_values(data, env)


def _strings(node):
    """Every string value under a YAML node: what compose interpolates."""
    if isinstance(node, dict):
        node = list(node.values())
    if isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in env.items()}


def bind_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(host source, container target, read only) of the service's bind mounts."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
            continue
        source, target, *options = volume.split(":")
        if source.startswith((".", "/", "~")):  # anything else names a volume
            mounts.append((source, target, "ro" in ",".join(options).split(",")))
    return mounts


def host_path(service: dict, container_path: str, root: Path) -> Path | None:
    """Where on the host a path inside the container comes from, through the bind mounts."""
    best = None
    for source, target, _ in bind_mounts(service):
        target = target.rstrip("/")
        if container_path == target or container_path.startswith(target + "/"):
            if best is None or len(target) > len(best[1]):
                best = (source, target)
    if best is None:
        return None
    return root / best[0] / container_path[len(best[1]):].lstrip("/")


def container_ports(service: dict) -> set[int]:
    ports = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    for port in service.get("ports") or []:
        target = port.get("target") if isinstance(port, dict) else str(port).split(":")[-1].split("/")[0]
        ports.add(int(target))
    return ports


def dockerfile_entrypoint(path: Path) -> list[str]:
    entrypoint: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            entrypoint = json.loads(line[len("ENTRYPOINT"):])
    return entrypoint


def dockerfile(build: str | dict) -> tuple[str, str]:
    """(context, Dockerfile name) of a service's ``build``, in its short or long form."""
    if isinstance(build, str):
        return build, "Dockerfile"
    return build.get("context", "."), build.get("dockerfile", "Dockerfile")


def _words(command: str | list | None) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else list(command or [])


def argv(compose: dict, name: str, root: Path) -> list[str]:
    """The command line a service's container runs: its entrypoint, then its command."""
    service = compose["services"][name]
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        context, file = dockerfile(service["build"])
        entrypoint = dockerfile_entrypoint(root / context / file)
    return _words(entrypoint) + _words(service.get("command"))


# --- validators: each returns what is wrong -----------------------------------------------------

def mount_problems(compose: dict, root: Path) -> list[str]:
    return [f"{name}: bind mount {source} -> {target}: {source} does not exist"
            for name, service in compose["services"].items()
            for source, target, _ in bind_mounts(service)
            if not (root / source).exists()]


def build_problems(compose: dict, root: Path) -> list[str]:
    problems = []
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        context, file = dockerfile(service["build"])
        if not (root / context / file).is_file():
            problems.append(f"{name}: build context {context} has no {file}")
    return problems


def ramparts_services(compose: dict) -> list[str]:
    """The services that run this repository's image (the workers, the playbook engine)."""
    return sorted(n for n, s in compose["services"].items() if s.get("build") == ".")


def worker_config(compose: dict, root: Path, name: str = "worker"):
    """A ramparts service's configuration exactly as it would load it, or ConfigError."""
    worker = compose["services"][name]
    args = argv(compose, name, root)
    if "--config" not in args:
        raise ComposeError(f"{name}: the command passes no --config")
    config_path = args[args.index("--config") + 1]
    source = host_path(worker, config_path, root)
    if source is None:
        raise ComposeError(f"{name}: --config {config_path} is not a mounted file")
    env = {k: v for k, v in environment(worker).items() if k.startswith("RAMPARTS_")}
    return load_config(source, env=env)


def command_problems(compose: dict, root: Path) -> list[str]:
    from ramparts.cli import build_parser

    problems = []
    for name in ramparts_services(compose):
        args = argv(compose, name, root)
        if not args or args[0] != "ramparts":
            problems.append(f"{name}: runs {args[:1]}, not ramparts")
            continue
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                build_parser().parse_args(args[1:])
        except SystemExit:
            last = stderr.getvalue().strip().splitlines()[-1:] or [""]
            problems.append(f"{name}: `{shlex.join(args)}` is not a ramparts command line: {last[0]}")
    return problems


def health_problems(compose: dict) -> list[str]:
    services, problems = compose["services"], []
    expected = {"kafka": ["kafka-topics.sh", "--list"], "clickhouse": [":8123/ping"]}
    for name, words in expected.items():
        test = (services[name].get("healthcheck") or {}).get("test")
        text = " ".join(test) if isinstance(test, list) else (test or "")
        if not all(w in text for w in words):
            problems.append(f"{name}: healthcheck does not run {' '.join(words)}")
    for service in ramparts_services(compose):
        depends = services[service].get("depends_on") or {}
        for name in expected:
            condition = depends.get(name, {}).get("condition") if isinstance(depends, dict) else None
            if condition != "service_healthy":
                problems.append(f"{service}: does not wait for {name} to be healthy")
    return problems


def address_problems(compose: dict, root: Path) -> list[str]:
    """The worker, Kafka, ClickHouse and Grafana agree on hosts, ports and the ClickHouse account."""
    services, problems = compose["services"], []
    config = worker_config(compose, root)
    advertised = {a.split("://", 1)[1] for a in environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for broker in config.kafka.bootstrap.split(","):
        if broker not in advertised:
            problems.append(f"worker: bootstrap {broker} is not a listener Kafka advertises ({sorted(advertised)})")
    dsn = urlsplit(config.store.dsn)
    clickhouse = environment(services["clickhouse"])
    worker_env = environment(services["worker"])
    if dsn.hostname not in services or dsn.port not in container_ports(services[dsn.hostname]):
        problems.append(f"worker: store DSN {config.store.dsn} is no port of a service")
    if dsn.username != clickhouse["CLICKHOUSE_USER"]:
        problems.append(f"worker: store user {dsn.username} is not CLICKHOUSE_USER {clickhouse['CLICKHOUSE_USER']}")
    if worker_env.get(config.store.password_env) != clickhouse["CLICKHOUSE_PASSWORD"]:
        problems.append(f"worker: {config.store.password_env} is not the ClickHouse password")
    if config.store.database != clickhouse.get("CLICKHOUSE_DB"):
        problems.append(f"worker: store.database {config.store.database} is not the database ClickHouse creates")
    return problems


def _yaml_files(directory: Path | None) -> list[dict]:
    if directory is None or not directory.is_dir():
        return []
    return [yaml.safe_load(p.read_text()) or {} for p in sorted(directory.glob("*.y*ml"))]


def datasource_problems(compose: dict, root: Path) -> list[str]:
    services = compose["services"]
    grafana = services["grafana"]
    env = environment(grafana)
    found = [d for f in _yaml_files(host_path(grafana, f"{PROVISIONING}/datasources", root))
             for d in f.get("datasources") or [] if d.get("uid") == DATASOURCE_UID]
    if len(found) != 1:
        return [f"grafana: {len(found)} provisioned datasources with uid {DATASOURCE_UID}, expected 1"]
    ds, problems = found[0], []
    plugins = env.get("GF_INSTALL_PLUGINS", "") + "," + env.get("GF_PLUGINS_PREINSTALL", "")
    if ds.get("type") != DATASOURCE_TYPE or DATASOURCE_TYPE not in plugins:
        problems.append(f"grafana: the datasource is not of the installed plugin type {DATASOURCE_TYPE}")
    # Grafana expands $VAR in provisioning files from its own environment; an unset one is "".
    missing = [m["named"] or m["braced"] for m in _VARIABLE.finditer(yaml.safe_dump(ds))
               if (m["named"] or m["braced"]) and (m["named"] or m["braced"]) not in env]
    if missing:
        problems.append(f"grafana: the datasource reads {missing}, which grafana's environment does not set")
    json_data = {k: interpolate(v, env) if isinstance(v, str) else v for k, v in (ds.get("jsonData") or {}).items()}
    secure = {k: interpolate(v, env) for k, v in (ds.get("secureJsonData") or {}).items()}
    host, port, protocol = json_data.get("host"), json_data.get("port"), json_data.get("protocol", "native")
    if host not in services:
        return problems + [f"grafana: datasource host {host} is not a service"]
    if port not in container_ports(services[host]) or port not in CLICKHOUSE_PORTS.get(protocol, ()):
        problems.append(f"grafana: datasource {protocol} port {port} is not one {host} exposes for it")
    account = environment(services[host])
    if (json_data.get("username"), secure.get("password")) != (account.get("CLICKHOUSE_USER"), account.get("CLICKHOUSE_PASSWORD")):
        problems.append(f"grafana: datasource user/password are not those of the {host} service")
    return problems


def provider_problems(compose: dict, root: Path) -> list[str]:
    grafana = compose["services"]["grafana"]
    providers = [p for f in _yaml_files(host_path(grafana, f"{PROVISIONING}/dashboards", root))
                 for p in f.get("providers") or []]
    if not providers:
        return ["grafana: no dashboard provider is provisioned"]
    mounted = {target.rstrip("/"): source.rstrip("/") for source, target, _ in bind_mounts(grafana)}
    return [f"grafana: dashboard provider {p.get('name')} reads {path}, where ./dashboards is not mounted"
            for p in providers for path in [str((p.get("options") or {}).get("path", "")).rstrip("/")]
            if mounted.get(path) != "./dashboards"]


# --- the stack as it is ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    return load_compose()


@pytest.mark.parametrize("name,image", sorted(IMAGES.items()))
def test_services_run_pinned_images(compose, name, image):
    repository, _, tag = compose["services"][name]["image"].partition(":")
    assert repository == image
    assert tag and tag != "latest" and re.match(r"\d", tag), f"{name}: pin a version, not {tag!r}"


def test_the_worker_is_built_from_this_repository(compose):
    assert compose["services"]["worker"]["build"] == "."
    assert build_problems(compose, REPO) == []


def test_every_bind_mount_exists(compose):
    assert mount_problems(compose, REPO) == []
    writable = [(name, target) for name, service in compose["services"].items()
                for _, target, read_only in bind_mounts(service) if not read_only]
    assert writable == [], "containers must not write into the repository"


def test_worker_environment_and_mounted_config_are_a_valid_configuration(compose):
    config = worker_config(compose, REPO)
    assert config.kafka.bootstrap == "kafka:9092"
    assert urlsplit(config.store.dsn).hostname == "clickhouse"
    assert config.resolved_hash_key() == HASH_KEY


def test_the_playbook_engine_runs_beside_the_workers_with_the_same_store_and_brokers(compose):
    """The playbooks service reads the workers' alerts topic and writes the audit log to the
    same ClickHouse: its configuration must name the same places, keep its state on a volume
    and take its approval token from the environment (no default)."""
    assert ramparts_services(compose) == ["playbooks", "worker"]
    assert argv(compose, "playbooks", REPO)[:4] == ["ramparts", "playbook", "serve", "--kafka"]
    worker, engine = worker_config(compose, REPO), worker_config(compose, REPO, "playbooks")
    assert engine.kafka.bootstrap == worker.kafka.bootstrap and engine.store.dsn == worker.store.dsn
    assert engine.kafka.topic_prefix == worker.kafka.topic_prefix
    state = engine.playbooks.state_dir
    assert any(target == state and not source.startswith(".") for source, target in
               (v.split(":")[:2] for v in compose["services"]["playbooks"]["volumes"]))
    outbox = worker.alerting.outbox_dir
    assert any(target == outbox for _, target in (v.split(":")[:2] for v in compose["services"]["worker"]["volumes"]))
    with pytest.raises(ComposeError, match="RAMPARTS_APPROVAL_TOKEN"):
        load_compose(env={k: v for k, v in ENV.items() if k != "RAMPARTS_APPROVAL_TOKEN"})


def test_the_hash_key_has_no_default():
    with pytest.raises(ComposeError, match="RAMPARTS_HASH_KEY"):
        load_compose(env={})
    with pytest.raises(ComposeError, match="RAMPARTS_HASH_KEY"):
        load_compose(env={"RAMPARTS_HASH_KEY": ""})


def test_services_agree_on_addresses_and_the_clickhouse_account(compose):
    assert address_problems(compose, REPO) == []
    # One variable feeds the server, the worker and Grafana: changing it changes all three.
    custom = load_compose(env={**ENV, "CLICKHOUSE_USER": "soc", "CLICKHOUSE_PASSWORD": "p@ss$word"})
    assert address_problems(custom, REPO) == [] and datasource_problems(custom, REPO) == []
    assert environment(custom["services"]["worker"])["RAMPARTS_STORE_PASSWORD"] == "p@ss$word"


def test_grafana_datasource_names_the_clickhouse_service_and_port(compose):
    assert datasource_problems(compose, REPO) == []


def test_dashboard_provider_reads_where_the_dashboards_are_mounted(compose):
    assert provider_problems(compose, REPO) == []


def test_worker_command_is_a_ramparts_subcommand(compose):
    assert argv(compose, "worker", REPO)[:2] == ["ramparts", "worker"]
    assert command_problems(compose, REPO) == []


def test_worker_waits_for_healthy_kafka_and_clickhouse(compose):
    assert health_problems(compose) == []


def test_every_worker_replica_can_own_a_partition(compose):
    config = worker_config(compose, REPO)
    replicas = compose["services"]["worker"].get("deploy", {}).get("replicas", 1)
    assert 1 <= replicas <= config.kafka.partitions
    # Topics that producers create get the broker's default partition count: keep it the same.
    assert int(environment(compose["services"]["kafka"])["KAFKA_NUM_PARTITIONS"]) == config.kafka.partitions


def test_every_variable_the_stack_reads_is_in_the_env_example():
    values = "\n".join(_strings(yaml.safe_load((REPO / "docker-compose.yml").read_text())))
    names = {m["braced"] or m["named"] for m in _VARIABLE.finditer(values) if m["braced"] or m["named"]}
    example = (REPO / "deploy" / "env.example").read_text()
    listed = set(re.findall(r"^#?([A-Z][A-Z0-9_]*)=", example, re.M))
    assert names and names <= listed, f"not in deploy/env.example: {sorted(names - listed)}"


def test_dockerfile_installs_without_dev_extras_and_runs_as_a_user():
    text = (REPO / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    assert all(s.startswith("python:3.11-slim") for s in stages)
    final = stages[-1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1] not in ("root", "0")
    assert dockerfile_entrypoint(REPO / "Dockerfile") == ["ramparts"]
    assert re.search(r'^CMD \["worker"\]$', final, re.M)
    assert not re.search(r"pip install[^\n]*\.\[", text), "the image installs no extras (tests, dev)"
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".env", "out"} <= ignored


# --- every check fails on a broken copy ----------------------------------------------------------

@pytest.fixture
def stack(tmp_path):
    """A copy of the files the stack reads, to break one at a time."""
    for name in ["docker-compose.yml", "Dockerfile"]:
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    shutil.copytree(REPO / "dashboards", tmp_path / "dashboards")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}: the negative test no longer breaks anything"
    path.write_text(text.replace(old, new))


def test_a_missing_mounted_file_is_reported(stack):
    compose = load_compose(stack)
    assert mount_problems(compose, stack) == []
    (stack / "deploy" / "ramparts.yaml").unlink()
    assert mount_problems(compose, stack) == [
        f"{name}: bind mount ./deploy/ramparts.yaml -> /etc/ramparts/ramparts.yaml: "
        "./deploy/ramparts.yaml does not exist" for name in ("worker", "playbooks")]


def test_a_build_context_without_its_dockerfile_is_reported(stack):
    (stack / "Dockerfile").unlink()
    assert build_problems(load_compose(stack), stack) == [f"{name}: build context . has no Dockerfile"
                                                          for name in ("worker", "playbooks")]


def test_a_misspelt_ramparts_variable_fails_the_configuration(stack):
    _edit(stack / "docker-compose.yml", "RAMPARTS_KAFKA__BOOTSTRAP:", "RAMPARTS_KAFKA__BOOTSTRAPS:")
    with pytest.raises(ConfigError, match="did you mean 'bootstrap'"):
        worker_config(load_compose(stack), stack)


def test_a_misspelt_key_in_the_mounted_config_fails_the_configuration(stack):
    _edit(stack / "deploy" / "ramparts.yaml", "  retention_days:", "  retention_day:")
    with pytest.raises(ConfigError, match="did you mean 'retention_days'"):
        worker_config(load_compose(stack), stack)


def test_a_config_that_is_not_mounted_is_reported(stack):
    _edit(stack / "docker-compose.yml", '"--config", "/etc/ramparts/ramparts.yaml"', '"--config", "/etc/ramparts.yaml"')
    with pytest.raises(ComposeError, match="not a mounted file"):
        worker_config(load_compose(stack), stack)


def test_a_worker_command_that_ramparts_does_not_know_is_reported(stack):
    _edit(stack / "docker-compose.yml", 'command: ["worker",', 'command: ["wrker",')
    problems = command_problems(load_compose(stack), stack)
    assert len(problems) == 1 and "ramparts wrker --config" in problems[0]


def test_missing_healthchecks_and_unconditional_dependencies_are_reported(compose):
    broken = copy.deepcopy(compose)
    del broken["services"]["kafka"]["healthcheck"]
    broken["services"]["worker"]["depends_on"] = ["kafka", "clickhouse"]
    assert health_problems(broken) == [
        "kafka: healthcheck does not run kafka-topics.sh --list",
        "worker: does not wait for kafka to be healthy",
        "worker: does not wait for clickhouse to be healthy"]


def test_services_that_disagree_are_reported(stack):
    _edit(stack / "docker-compose.yml", "RAMPARTS_KAFKA__BOOTSTRAP: kafka:9092", "RAMPARTS_KAFKA__BOOTSTRAP: kafka:9094")
    _edit(stack / "docker-compose.yml", "RAMPARTS_STORE_PASSWORD: ${CLICKHOUSE_PASSWORD:-ramparts}",
          "RAMPARTS_STORE_PASSWORD: ${CLICKHOUSE_PASSWORD:-changeme}")
    problems = address_problems(load_compose(stack), stack)
    assert [p.split(":")[1].split()[0] for p in problems] == ["bootstrap", "RAMPARTS_STORE_PASSWORD"]


@pytest.mark.parametrize("old,new,expected", [
    ("host: clickhouse", "host: localhost", "datasource host localhost is not a service"),
    ("port: 9000", "port: 8123", "datasource native port 8123 is not one clickhouse exposes for it"),
    ("uid: ramparts-clickhouse", "uid: clickhouse", "0 provisioned datasources with uid ramparts-clickhouse"),
    ("password: $CLICKHOUSE_PASSWORD", "password: $CH_PASSWORD", "reads ['CH_PASSWORD']"),
])
def test_a_broken_datasource_is_reported(stack, old, new, expected):
    _edit(stack / "dashboards" / "provisioning" / "datasources" / "clickhouse.yaml", old, new)
    problems = datasource_problems(load_compose(stack), stack)
    assert any(expected in p for p in problems), problems


def test_a_datasource_port_clickhouse_does_not_expose_is_reported(stack):
    _edit(stack / "docker-compose.yml", '      - "9000"  # native', '      - "9001"  # native')
    problems = datasource_problems(load_compose(stack), stack)
    assert problems == ["grafana: datasource native port 9000 is not one clickhouse exposes for it"]


def test_a_dashboard_provider_reading_an_unmounted_path_is_reported(stack):
    _edit(stack / "dashboards" / "provisioning" / "dashboards" / "ramparts.yaml",
          "path: /var/lib/grafana/dashboards", "path: /etc/dashboards")
    assert provider_problems(load_compose(stack), stack) == [
        "grafana: dashboard provider ramparts reads /etc/dashboards, where ./dashboards is not mounted"]


@pytest.mark.parametrize("text,env,expected", [
    ("${A:-x}", {}, "x"), ("${A:-x}", {"A": ""}, "x"), ("${A-x}", {"A": ""}, ""),
    ("${A:+y}", {"A": "1"}, "y"), ("${A:+y}", {}, ""), ("$$A $A", {"A": "v"}, "$A v"),
    ("a${A}b", {"A": "v"}, "avb"), ("${A?e}", {"A": ""}, ""),
])
def test_interpolation_follows_compose(text, env, expected):
    assert interpolate(text, env) == expected


def test_interpolation_rejects_what_compose_rejects():
    with pytest.raises(ComposeError, match="required variable A is missing a value: set A"):
        interpolate("${A:?set A}", {})
    with pytest.raises(ComposeError, match="invalid interpolation"):
        interpolate("cost: $5", {})
