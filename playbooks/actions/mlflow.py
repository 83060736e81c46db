"""Quarantine a model version in an MLflow model registry (REST API 2.0), restorably.

Quarantine: read the version's aliases (``GET model-versions/get``), remove the serving ones
(``DELETE registered-models/alias``), tag the version ``ramparts.quarantined`` (the incident
id) and ``ramparts.restore_aliases`` (what was removed). The restore record goes to the
engine's state and the audit log too. Revert: set each alias back to this version
(``POST registered-models/alias``) unless it has since been pointed elsewhere, and delete the
tags.
"""

from __future__ import annotations

import json
import urllib.parse

from pydantic import Field

from ramparts.errors import ActionError

from . import Action, Context, Params, Settings, secret_from_env
from .http import call

TAG = "ramparts.quarantined"
RESTORE_TAG = "ramparts.restore_aliases"


class MlflowSettings(Settings):
    tracking_uri: str = Field(default="http://127.0.0.1:5000", description="The MLflow server.")
    token_env: str | None = Field(default=None, description="Environment variable holding a bearer token.")
    timeout_seconds: float = Field(default=10.0, gt=0)


class QuarantineParams(Params):
    model: str = Field(description="Registered model name, or name:version (a drift.* entity id).")
    version: str | None = Field(default=None, description="Model version (default: after the ':' in model).")
    aliases: list[str] = Field(default_factory=list, description="Aliases to remove; empty: every alias of the version.")


def split_model(p) -> tuple[str, str]:
    name, version = p.model, p.version
    if version is None:
        if ":" not in p.model:
            raise ActionError(f"model {p.model!r} names no version: give version, or model as name:version")
        name, version = p.model.rsplit(":", 1)
    return name, str(version)


class MlflowQuarantine(Action):
    name = "mlflow.quarantine"
    settings_key = "mlflow"
    Params = QuarantineParams
    Settings = MlflowSettings

    def target(self, p) -> str:
        name, version = split_model(p)
        return f"model:{name}:{version}"

    def describe(self, p) -> str:
        name, version = split_model(p)
        return f"quarantine {name} version {version} in MLflow {self.settings.tracking_uri}"

    def _api(self, method: str, path: str, ctx: Context, body=None, query=None, ok=()):
        token = secret_from_env(ctx.env, self.settings.token_env, "mlflow")
        url = f"{self.settings.tracking_uri.rstrip('/')}/api/2.0/mlflow/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        return call(method, url, body=body, headers={"Authorization": f"Bearer {token}"} if token else {},
                    timeout=self.settings.timeout_seconds, secrets=[token] if token else [], ok_statuses=ok)

    def execute(self, p, ctx: Context) -> dict:
        name, version = split_model(p)
        _, got = self._api("GET", "model-versions/get", ctx, query={"name": name, "version": version})
        mv = (got or {}).get("model_version", {})
        tags = {t["key"]: t["value"] for t in mv.get("tags", [])}
        if TAG in tags and RESTORE_TAG in tags:  # already quarantined (a retried step): keep the first record
            return {"model": name, "version": version, "aliases": json.loads(tags[RESTORE_TAG])}
        aliases = [a for a in mv.get("aliases", []) if not p.aliases or a in p.aliases]
        self._api("POST", "model-versions/set-tag", ctx,
                  body={"name": name, "version": version, "key": RESTORE_TAG, "value": json.dumps(aliases)})
        for a in aliases:
            self._api("DELETE", "registered-models/alias", ctx, body={"name": name, "alias": a}, ok=(404,))
        self._api("POST", "model-versions/set-tag", ctx,
                  body={"name": name, "version": version, "key": TAG, "value": str(ctx.incident.get("id", ""))})
        return {"model": name, "version": version, "aliases": aliases}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        name, version = restore.get("model"), restore.get("version")
        if not name:
            name, version = split_model(p)
        restored, skipped = [], []
        for a in restore.get("aliases", []):
            # An alias that is not set is a 404 (RESOURCE_DOES_NOT_EXIST); some versions answer 400.
            status, got = self._api("GET", "registered-models/alias", ctx, query={"name": name, "alias": a},
                                    ok=(400, 404))
            current = (got or {}).get("model_version", {}).get("version") if status < 300 else None
            if current is not None and str(current) != str(version):
                skipped.append(a)  # moved to another version since: do not take it back
                continue
            self._api("POST", "registered-models/alias", ctx, body={"name": name, "alias": a, "version": version})
            restored.append(a)
        for key in (TAG, RESTORE_TAG):
            self._api("DELETE", "model-versions/delete-tag", ctx,
                      body={"name": name, "version": version, "key": key}, ok=(404,))
        return {"restored": restored, "skipped": skipped}
