"""Outputs: ClickHouse, webhooks, Grafana annotations. Filled by the runtime and alerting issues."""
