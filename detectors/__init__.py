"""Online detectors: each reads batches of events and per-entity state and raises alerts.

The registry below is what config (``detectors.<name>``) and the pipeline refer to; its
order is the order detectors run in.
"""

from __future__ import annotations

import difflib

from .access import (
    CredentialStuffing, InferenceShell, NewModel, NewSource, PodExec, PrivilegedPod, SecretRead,
)
from .anomaly import GpuMetrics, ModelMetrics
from .base import Detector
from .compute import MinerSignature, UnauthorizedCompute
from .compute_model import GpuWindowModel
from .drift import DriftDetector
from .extraction import ExtractionDetector
from .runtime import FalcoCritical
from .volume import VolumeDetector

DETECTOR_CLASSES: list[type[Detector]] = [
    CredentialStuffing, FalcoCritical, PodExec, NewSource, NewModel, SecretRead, PrivilegedPod, InferenceShell,
    UnauthorizedCompute, MinerSignature, GpuWindowModel,
    ExtractionDetector, VolumeDetector, ModelMetrics, GpuMetrics, DriftDetector]
DETECTORS: dict[str, type[Detector]] = {c.name: c for c in DETECTOR_CLASSES}


def get_detector_class(name: str) -> type[Detector]:
    try:
        return DETECTORS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(DETECTORS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; known: {', '.join(DETECTORS)}"
        raise KeyError(f"no detector named {name!r}{hint}") from None


def build_detectors(config=None) -> list[Detector]:
    """The enabled detectors, with their options from ``config`` (defaults without one)."""
    out = []
    for cls in DETECTOR_CLASSES:
        if config is None:
            out.append(cls())
        elif config.detector_enabled(cls.name):
            out.append(cls(config.detector_options(cls.name)))
    return out
