"""Grafana dashboards and provisioning for the ClickHouse store (docs/dashboards.md).

``build.py`` defines the dashboards; ``export.py`` writes them as JSON beside the provisioning
files (``ramparts dashboards export``) and uploads them (``ramparts dashboards push``).
"""
