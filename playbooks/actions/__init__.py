"""Response actions, one file each, registered by name in :data:`ACTIONS`.

An action is a class with a ``Params`` model (what a playbook step gives it, after its
``${...}`` variables are filled in), a ``Settings`` model (where it acts: the
``playbooks.actions.<settings_key>`` section of the config, credentials through ``*_env``
variables only), and three verbs:

* ``target(params)``: the key or model it acts on (the per-target limit counts these);
* ``execute(params, ctx) -> restore``: act; return what ``revert`` needs (JSON, no secrets);
* ``revert(params, restore, ctx)``: undo, where the action allows (``revertible``).

``execute`` must be idempotent: the engine records a step as done after it acted, so a crash
in between runs it again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from pydantic import BaseModel, ConfigDict

from ramparts.errors import ActionError, ConfigError


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class Context:
    """What an action may use besides its parameters."""

    run_id: str
    incident: dict
    playbook: str
    step: str
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    outputs: list = field(default_factory=list)
    now: Callable[[], float] | None = None


class Action:
    name: ClassVar[str]
    settings_key: ClassVar[str]
    revertible: ClassVar[bool] = True
    Params: ClassVar[type[Params]] = Params
    Settings: ClassVar[type[Settings]] = Settings

    def __init__(self, settings: Settings):
        self.settings = settings

    def target(self, p) -> str:
        raise NotImplementedError

    def describe(self, p) -> str:
        return f"{self.name} {self.target(p)}"

    def execute(self, p, ctx: Context) -> dict:
        raise NotImplementedError

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        raise ActionError(f"{self.name} cannot be reverted")


def secret_from_env(env: Mapping[str, str], name: str | None, what: str) -> str | None:
    if not name:
        return None
    value = env.get(name)
    if not value:
        raise ActionError(f"{what}: the environment variable {name} is not set")
    return value


def action_classes() -> dict[str, type[Action]]:
    from . import http, kong, litellm, mlflow, model_repo, nginx, notify

    classes = [nginx.NginxRevoke, nginx.NginxRateLimit, litellm.LiteLLMRevoke, kong.KongRevoke, http.HttpRequest,
               mlflow.MlflowQuarantine, model_repo.ModelRepoQuarantine, notify.Notify]
    return {c.name: c for c in classes}


def action_params() -> dict[str, type[Params]]:
    return {n: c.Params for n, c in action_classes().items()}


def build_actions(settings: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Action]:
    """Every action with its settings section (``playbooks.actions``); unknown sections or keys are errors."""
    settings = dict(settings or {})
    classes = action_classes()
    keys = {c.settings_key: c.Settings for c in classes.values()}
    for k in settings:
        if k not in keys:
            import difflib
            close = difflib.get_close_matches(k, list(keys), n=1)
            raise ConfigError(f"playbooks.actions.{k}: unknown action settings"
                              + (f" (did you mean {close[0]!r}?)" if close else "")
                              + f"; sections are {', '.join(sorted(keys))}")
    built: dict[str, Action] = {}
    for name, cls in classes.items():
        try:
            s = cls.Settings.model_validate(settings.get(cls.settings_key) or {})
        except Exception as e:
            raise ConfigError(f"playbooks.actions.{cls.settings_key}: {e}") from None
        built[name] = cls(s)
    return built
