"""Revoke a principal at a LiteLLM proxy: ``POST /key/block`` and, to revert, ``POST /key/unblock``.

LiteLLM's key management API takes ``{"key": "<key or its hashed token>"}`` with the proxy's
master key as ``Authorization: Bearer``; the master key comes from ``master_key_env``.
"""

from __future__ import annotations

from pydantic import Field

from . import Action, Context, Params, Settings, secret_from_env
from .http import call


class LiteLLMSettings(Settings):
    url: str = Field(default="http://127.0.0.1:4000", description="The LiteLLM proxy's base URL.")
    master_key_env: str = Field(default="RAMPARTS_LITELLM_MASTER_KEY",
                                description="Environment variable holding the proxy's master key.")
    timeout_seconds: float = Field(default=10.0, gt=0)


class KeyParams(Params):
    key: str = Field(description="The virtual key's hashed token (as LiteLLM's SpendLogs api_key) or key alias.")


class LiteLLMRevoke(Action):
    name = "litellm.revoke"
    settings_key = "litellm"
    Params = KeyParams
    Settings = LiteLLMSettings

    def target(self, p) -> str:
        return f"principal:{p.key}"

    def describe(self, p) -> str:
        return f"block key {p.key} at LiteLLM {self.settings.url}"

    def _post(self, path: str, p, ctx: Context) -> int:
        token = secret_from_env(ctx.env, self.settings.master_key_env, "litellm")
        status, _ = call("POST", self.settings.url.rstrip("/") + path, body={"key": p.key},
                         headers={"Authorization": f"Bearer {token}"}, timeout=self.settings.timeout_seconds,
                         secrets=[token])
        return status

    def execute(self, p, ctx: Context) -> dict:
        return {"status": self._post("/key/block", p, ctx)}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        return {"status": self._post("/key/unblock", p, ctx)}
