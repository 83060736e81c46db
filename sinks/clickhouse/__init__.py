"""ClickHouse storage (filled in by the streaming issue)."""
