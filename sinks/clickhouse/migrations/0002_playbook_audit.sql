-- 0002: the playbooks' audit log, append-only and hash-chained (docs/playbooks.md).
--
-- One row per decision or outcome of the playbook engine. `hash` is sha256 over `prev_hash`
-- and the record's canonical JSON, so an edited row breaks its own hash and a deleted row
-- breaks the chain (`seq` has a gap, or the next row's prev_hash no longer matches);
-- `ramparts playbook audit --verify` walks it. A plain MergeTree, not Replacing: nothing here
-- is ever meant to collapse or be replaced, and no retention TTL: the trail is kept.
CREATE TABLE IF NOT EXISTS {db}.playbook_audit
(
    seq UInt64,
    ts_ns Int64,
    run_id String,
    incident_id String,
    playbook LowCardinality(String),
    step String,
    action LowCardinality(String),
    target String,
    mode LowCardinality(String),
    decision LowCardinality(String),
    actor String,
    detail String,
    prev_hash String,
    hash String,
    ingested_at DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY seq;
