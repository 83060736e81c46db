"""``ramparts dashboards export|push``: the dashboards as files, or into a running Grafana.

``export`` writes every dashboard of :mod:`build` as ``DIR/<name>.json`` and the provisioning
files that docker-compose.yml mounts (``DIR/provisioning/...``); the files committed under
``dashboards/`` are its output, and ``tests/dashboards`` checks that they still are.

``push`` uploads them through grafana-client: the datasource (created, or updated under its
uid), the "Ramparts" folder, then each dashboard with ``overwrite``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ramparts.errors import RampartsError

from .build import DATASOURCE_TYPE, DATASOURCE_UID, FILE_NAMES, dashboards

FOLDER_TITLE, FOLDER_UID = "Ramparts", "ramparts"

DATASOURCE_YAML = """\
# Grafana datasource for the clickhouse service of docker-compose.yml (plugin
# grafana-clickhouse-datasource, installed through GF_INSTALL_PLUGINS). Dashboards in
# dashboards/*.json refer to it by its uid, which therefore never changes.
# $CLICKHOUSE_USER and $CLICKHOUSE_PASSWORD are expanded by Grafana from its environment, so the
# password is not in this file.
apiVersion: 1

datasources:
  - name: ClickHouse
    uid: ramparts-clickhouse
    type: grafana-clickhouse-datasource
    isDefault: true
    editable: false
    jsonData:
      host: clickhouse
      port: 9000
      protocol: native
      secure: false
      username: $CLICKHOUSE_USER
      defaultDatabase: ramparts
    secureJsonData:
      password: $CLICKHOUSE_PASSWORD
"""

PROVIDER_YAML = """\
# Loads every dashboards/*.json into the "Ramparts" folder. docker-compose.yml mounts ./dashboards
# read-only at /var/lib/grafana/dashboards; the provider only reads .json files, so this folder's
# YAML, Python and README are ignored. The JSON is written by `ramparts dashboards export` from
# dashboards/build.py: change build.py and export again, not the JSON and not the UI.
apiVersion: 1

providers:
  - name: ramparts
    orgId: 1
    folder: Ramparts
    type: file
    disableDeletion: true
    allowUiUpdates: false
    updateIntervalSeconds: 30
    options:
      path: /var/lib/grafana/dashboards
      foldersFromFilesStructure: false
"""

PROVISIONING = {
    "provisioning/datasources/clickhouse.yaml": DATASOURCE_YAML,
    "provisioning/dashboards/ramparts.yaml": PROVIDER_YAML,
}


class DashboardError(RampartsError):
    """A dashboard could not be exported or pushed."""


def dashboard_json(dashboard: dict) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def files() -> dict[str, str]:
    """Every file ``export`` writes, by path relative to its directory."""
    out = {FILE_NAMES[uid]: dashboard_json(d) for uid, d in dashboards().items()}
    out.update(PROVISIONING)
    return out


def export(directory: str | os.PathLike) -> list[Path]:
    root = Path(directory)
    written = []
    for rel, text in files().items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def datasource_model(host: str, port: int, protocol: str, user: str, password: str | None,
                     database: str = "ramparts") -> dict[str, Any]:
    """The datasource as Grafana's HTTP API takes it: what the provisioning file sets."""
    model: dict[str, Any] = {
        "name": "ClickHouse", "uid": DATASOURCE_UID, "type": DATASOURCE_TYPE, "access": "proxy",
        "isDefault": True,
        "jsonData": {"host": host, "port": port, "protocol": protocol, "secure": False,
                     "username": user, "defaultDatabase": database},
    }
    if password is not None:
        model["secureJsonData"] = {"password": password}
    return model


def push(url: str, token: str, datasource: dict | None, timeout: float = 10.0) -> list[str]:
    """Upload the datasource (unless None), the folder and every dashboard; returns what was done."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException

    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    done = []
    try:
        if datasource is not None:
            try:
                api.datasource.get_datasource_by_uid(DATASOURCE_UID)
            except GrafanaClientError as e:
                if e.status_code != 404:
                    raise
                api.datasource.create_datasource(datasource)
                done.append(f"datasource {DATASOURCE_UID}: created")
            else:
                api.datasource.update_datasource_by_uid(DATASOURCE_UID, datasource)
                done.append(f"datasource {DATASOURCE_UID}: updated")
        try:
            api.folder.get_folder(FOLDER_UID)
        except GrafanaClientError as e:
            if e.status_code != 404:
                raise
            api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
            done.append(f"folder {FOLDER_UID}: created")
        for uid, d in dashboards().items():
            body = {"dashboard": {**d, "id": None}, "folderUid": FOLDER_UID, "overwrite": True,
                    "message": "ramparts dashboards push"}
            answer = api.dashboard.update_dashboard(body)
            done.append(f"dashboard {uid}: {answer.get('status', 'success')} ({answer.get('url', '')})")
    except GrafanaException as e:
        status = getattr(e, "status_code", None)
        raise DashboardError(f"Grafana at {url} refused the upload"
                             + (f" (HTTP {status})" if status else "") + f": {e.message}") from None
    except OSError as e:
        raise DashboardError(f"cannot reach Grafana at {url}: {e}") from None
    return done


def add_arguments(sub) -> None:
    p = sub.add_parser("dashboards", help="export the Grafana dashboards, or push them into Grafana",
                       description="Grafana dashboards for the ClickHouse store (docs/dashboards.md).")
    dsub = p.add_subparsers(dest="dashboards_command", required=True, metavar="ACTION")
    e = dsub.add_parser("export", help="write the dashboards JSON and provisioning files",
                        description="Write every dashboard as JSON and the provisioning files for the "
                                    "datasource and the dashboards into DIR (default: dashboards).")
    e.add_argument("--out", metavar="DIR", default="dashboards", help="directory (default: dashboards)")
    e.set_defaults(func=run_export)
    q = dsub.add_parser("push", help="upload the datasource and dashboards to Grafana",
                        description="Create or update the ClickHouse datasource (uid %s) and every "
                                    "dashboard in the Ramparts folder through Grafana's HTTP API." % DATASOURCE_UID)
    q.add_argument("--url", required=True, help="Grafana's URL, e.g. http://localhost:3000")
    q.add_argument("--token", default=None, help="service account token (default: $GRAFANA_TOKEN)")
    q.add_argument("--clickhouse-host", default="clickhouse", help="the datasource's ClickHouse host (default: clickhouse)")
    q.add_argument("--clickhouse-port", type=int, default=9000, help="its port (default: 9000, native)")
    q.add_argument("--clickhouse-protocol", choices=["native", "http"], default="native")
    q.add_argument("--clickhouse-user", default="ramparts")
    q.add_argument("--clickhouse-password-env", default="CLICKHOUSE_PASSWORD", metavar="VAR",
                   help="environment variable holding the ClickHouse password (default: CLICKHOUSE_PASSWORD)")
    q.add_argument("--no-datasource", action="store_true", help="leave the datasource alone")
    q.set_defaults(func=run_push)


def run_export(args) -> int:
    for path in export(args.out):
        print(path)
    return 0


def run_push(args) -> int:
    token = args.token or os.environ.get("GRAFANA_TOKEN")
    if not token:
        raise DashboardError("no Grafana token: pass --token or set GRAFANA_TOKEN (a service account token)")
    datasource = None
    if not args.no_datasource:
        password = os.environ.get(args.clickhouse_password_env)
        if password is None:
            print(f"ramparts: warning: {args.clickhouse_password_env} is not set; the datasource gets no password",
                  file=sys.stderr)
        datasource = datasource_model(args.clickhouse_host, args.clickhouse_port, args.clickhouse_protocol,
                                      args.clickhouse_user, password)
    for line in push(args.url, token, datasource):
        print(line)
    return 0
