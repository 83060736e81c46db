"""Quarantine a model version in a filesystem model repository: move it aside, restorably.

Layout (KServe/Triton style): ``<root>/<model>/<version>`` (a file or a directory). The
version moves to ``<root>/.quarantine/<model>/<version>`` in one rename (same filesystem);
its SHA-256 (over every file's relative path and bytes, in order) is recorded, and checked
again before it is moved back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from pydantic import Field

from ramparts.errors import ActionError

from . import Action, Context, Params, Settings
from .mlflow import split_model


class ModelRepoSettings(Settings):
    root: str = Field(default="/var/lib/models", description="The repository: <root>/<model>/<version>.")
    quarantine_dir: str = Field(default=".quarantine", description="Where versions go, under root.")


class RepoParams(Params):
    model: str = Field(description="Model name, or name:version.")
    version: str | None = None


def checksum(path: Path) -> str:
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path) if f != path else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _safe(part: str) -> str:
    if not part or part in (".", "..") or "/" in part or "\0" in part:
        raise ActionError(f"{part!r} is not a model or version name that can be a path component")
    return part


class ModelRepoQuarantine(Action):
    name = "model_repo.quarantine"
    settings_key = "model_repo"
    Params = RepoParams
    Settings = ModelRepoSettings

    def _paths(self, p) -> tuple[str, str, Path, Path]:
        name, version = split_model(p)
        root = Path(self.settings.root)
        return name, version, root / _safe(name) / _safe(version), \
            root / self.settings.quarantine_dir / _safe(name) / _safe(version)

    def target(self, p) -> str:
        name, version = split_model(p)
        return f"model:{name}:{version}"

    def describe(self, p) -> str:
        _, _, live, aside = self._paths(p)
        return f"move {live} to {aside}"

    def execute(self, p, ctx: Context) -> dict:
        name, version, live, aside = self._paths(p)
        if not live.exists():
            if aside.exists():  # moved already (a retried step)
                return {"from": str(live), "to": str(aside), "sha256": checksum(aside)}
            raise ActionError(f"model {name} version {version} is not in the repository ({live} does not exist)")
        if aside.exists():
            raise ActionError(f"{aside} exists already: an earlier quarantine of this version was not restored")
        digest = checksum(live)
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.rename(live, aside)
        return {"from": str(live), "to": str(aside), "sha256": digest}

    def revert(self, p, restore: dict, ctx: Context) -> dict:
        live, aside = Path(restore["from"]), Path(restore["to"])
        if live.exists():
            raise ActionError(f"{live} exists again (a new copy was deployed): the quarantined one stays in {aside}")
        if not aside.exists():
            raise ActionError(f"{aside} is gone: nothing to restore")
        got = checksum(aside)
        if got != restore.get("sha256"):
            raise ActionError(f"{aside} changed while in quarantine (sha256 {got[:12]}..., recorded "
                              f"{str(restore.get('sha256'))[:12]}...): not restored")
        live.parent.mkdir(parents=True, exist_ok=True)
        os.rename(aside, live)
        return {"restored": str(live)}
