"""Revoke or rate-limit a principal at NGINX: a map file NGINX includes, reloaded safely.

The action owns one file (``map_file``), rendered from its own state (``<map_file>.json``)::

    map $http_x_api_key $ramparts_deny { default 0; "key-1" 1; }
    map $http_x_api_key $ramparts_limit_key { default ""; "key-2" $http_x_api_key; }

The server's config includes it in ``http {}`` and uses the two variables
(``if ($ramparts_deny) { return 403; }``; ``limit_req_zone $ramparts_limit_key ...``: an empty
key is never limited). A change is written next to the file and renamed over it, checked with
``nginx -t``, then applied with ``nginx -s reload``; when either fails the previous file is put
back, so a bad change never reaches a running NGINX nor the next restart.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

from pydantic import Field

from ramparts.errors import ActionError

from . import Action, Context, Params, Settings

_SAFE_KEY = re.compile(r"^[A-Za-z0-9._:@+/=-]{1,256}$")


class NginxSettings(Settings):
    map_file: str = Field(default="/etc/nginx/ramparts/principals.map",
                          description="The map file the action owns; NGINX includes it in http {}.")
    key_variable: str = Field(default="$http_x_api_key", pattern=r"^\$[A-Za-z0-9_]+$",
                              description="NGINX variable that holds the principal (a header, or one set by auth).")
    nginx_bin: str = Field(default="nginx", description="The nginx binary.")
    conf: str | None = Field(default=None, description="nginx -c: the main config (default: nginx's own).")
    prefix: str | None = Field(default=None, description="nginx -p: the prefix (default: nginx's own).")
    timeout_seconds: float = Field(default=20.0, gt=0, description="nginx -t / -s reload wait this long.")


class PrincipalParams(Params):
    principal: str = Field(description="The principal (API key id) as NGINX sees it in key_variable.")


class _NginxAction(Action):
    settings_key = "nginx"
    Params = PrincipalParams
    Settings = NginxSettings
    kind = ""  # "deny" or "limit"

    def target(self, p) -> str:
        return f"principal:{p.principal}"

    def describe(self, p) -> str:
        verb = "deny" if self.kind == "deny" else "rate-limit"
        return f"{verb} principal {p.principal} at NGINX ({self.settings.map_file})"

    def execute(self, p, ctx: Context) -> dict:
        _check_key(p.principal)
        with self._locked():
            state = self._state()
            had = p.principal in state[self.kind]
            state[self.kind][p.principal] = ctx.run_id
            if not had:
                self._apply(state)
        return {"added": not had}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        with self._locked():
            state = self._state()
            # Only what this action added comes out: a principal denied before it ran stays denied.
            if restore.get("added") and p.principal in state[self.kind]:
                del state[self.kind][p.principal]
                self._apply(state)
                return {"removed": True}
        return {"removed": False}

    # -- the file ----------------------------------------------------------------------
    @property
    def _path(self) -> Path:
        return Path(self.settings.map_file)

    @contextmanager
    def _locked(self):
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(str(self._path) + ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _state(self) -> dict:
        p = Path(str(self._path) + ".json")
        if p.exists():
            s = json.loads(p.read_text())
            return {"deny": s.get("deny", {}), "limit": s.get("limit", {})}
        return {"deny": {}, "limit": {}}

    def _apply(self, state: dict) -> None:
        path = self._path
        previous = path.read_bytes() if path.exists() else None
        _atomic_write(path, render_map(state, self.settings.key_variable).encode())
        try:
            self._nginx("-t")
            self._nginx("-s", "reload")
        except ActionError:
            if previous is None:
                path.unlink(missing_ok=True)
            else:
                _atomic_write(path, previous)
            raise
        _atomic_write(Path(str(path) + ".json"), json.dumps(state, sort_keys=True, indent=1).encode())

    def _nginx(self, *args: str) -> None:
        cmd = [self.settings.nginx_bin]
        if self.settings.prefix:
            cmd += ["-p", self.settings.prefix]
        if self.settings.conf:
            cmd += ["-c", self.settings.conf]
        cmd += list(args)
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=self.settings.timeout_seconds)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise ActionError(f"nginx {' '.join(args)} could not run: {e}; the previous map file was restored") from None
        if r.returncode != 0:
            err = (r.stderr or r.stdout).strip().splitlines()
            raise ActionError(f"nginx {' '.join(args)} failed ({err[-1] if err else r.returncode}); "
                              "the previous map file was restored")


class NginxRevoke(_NginxAction):
    name = "nginx.revoke"
    kind = "deny"


class NginxRateLimit(_NginxAction):
    name = "nginx.rate_limit"
    kind = "limit"


def _check_key(key: str) -> None:
    # The key is written into NGINX config text: nothing that could close the string or the block.
    if not _SAFE_KEY.match(key):
        raise ActionError(f"principal {key[:40]!r} cannot go into an NGINX map (letters, digits and ._:@+/=- only)")


def render_map(state: dict, variable: str) -> str:
    """The map file's text for ``state`` (``{"deny": {key: run}, "limit": {key: run}}``).

    >>> print(render_map({"deny": {"k1": "r"}, "limit": {}}, "$http_x_api_key"), end="")
    # Written by Ramparts playbooks (nginx.revoke, nginx.rate_limit). Do not edit: changes are overwritten.
    map $http_x_api_key $ramparts_deny {
        default 0;
        "k1" 1;
    }
    map $http_x_api_key $ramparts_limit_key {
        default "";
    }
    """
    lines = ["# Written by Ramparts playbooks (nginx.revoke, nginx.rate_limit). Do not edit: changes are overwritten.",
             f"map {variable} $ramparts_deny {{", "    default 0;"]
    lines += [f'    "{k}" 1;' for k in sorted(state["deny"])]
    lines += ["}", f"map {variable} $ramparts_limit_key {{", '    default "";']
    lines += [f'    "{k}" {variable};' for k in sorted(state["limit"])]
    lines += ["}"]
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
