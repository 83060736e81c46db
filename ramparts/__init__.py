"""Ramparts: security telemetry and anomaly detection for AI infrastructure."""

__version__ = "0.1.0"
