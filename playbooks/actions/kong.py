"""Revoke a consumer at Kong through its Admin API: put it in an ACL group the routes deny.

Kong has no "disable consumer" verb; the documented way is the ACL plugin with
``config.deny: [<group>]`` on the service or route, and the consumer added to that group:
``POST /consumers/{consumer}/acls {"group": ...}``. Revert: ``DELETE
/consumers/{consumer}/acls/{group}``. An admin token (Kong Enterprise RBAC,
``Kong-Admin-Token``) comes from ``token_env`` when set.
"""

from __future__ import annotations

import urllib.parse

from pydantic import Field

from . import Action, Context, Params, Settings, secret_from_env
from .http import call


class KongSettings(Settings):
    admin_url: str = Field(default="http://127.0.0.1:8001", description="Kong's Admin API.")
    deny_group: str = Field(default="ramparts-revoked", description="The ACL group the ACL plugin denies.")
    token_env: str | None = Field(default=None, description="Environment variable holding a Kong-Admin-Token.")
    timeout_seconds: float = Field(default=10.0, gt=0)


class ConsumerParams(Params):
    consumer: str = Field(description="Kong consumer username or id.")


class KongRevoke(Action):
    name = "kong.revoke"
    settings_key = "kong"
    Params = ConsumerParams
    Settings = KongSettings

    def target(self, p) -> str:
        return f"principal:{p.consumer}"

    def describe(self, p) -> str:
        return f"add consumer {p.consumer} to ACL group {self.settings.deny_group} at Kong {self.settings.admin_url}"

    def _headers(self, ctx):
        token = secret_from_env(ctx.env, self.settings.token_env, "kong")
        return ({"Kong-Admin-Token": token} if token else {}), [token] if token else []

    def _base(self, p) -> str:
        return f"{self.settings.admin_url.rstrip('/')}/consumers/{urllib.parse.quote(p.consumer, safe='')}/acls"

    def execute(self, p, ctx: Context) -> dict:
        h, s = self._headers(ctx)
        # 409: the consumer is already in the group (a unique violation): nothing to add.
        status, _ = call("POST", self._base(p), body={"group": self.settings.deny_group}, headers=h,
                         timeout=self.settings.timeout_seconds, secrets=s, ok_statuses=(409,))
        return {"added": status != 409}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        if not restore.get("added", True):
            return {"removed": False}
        h, s = self._headers(ctx)
        status, _ = call("DELETE", f"{self._base(p)}/{urllib.parse.quote(self.settings.deny_group, safe='')}",
                         headers=h, timeout=self.settings.timeout_seconds, secrets=s, ok_statuses=(404,))
        return {"removed": status != 404}
