-- 0001: one table per event kind, alerts, playbook actions and dead letters.
--
-- {db} is the database; {ttl} is the retention clause ("TTL ingested_at + INTERVAL n DAY"),
-- empty when rows are kept. Retention counts from when a row was stored, not from its event
-- time: a replay of January's logs into a store with a 30-day retention must not vanish on
-- the first merge.
--
-- Every table is a ReplacingMergeTree whose sorting key ends with `id`: the streaming worker
-- delivers at least once, and a row written again under the same id collapses into one
-- (exact at read time with FINAL). Events sort by (hour, the kind's main entity, ts, id):
-- dashboards read a time range per principal, model, namespace or GPU. Nullable columns
-- cannot be sorting keys, hence ifNull(..., '').
--
-- Times travel as Int64 nanoseconds into EPHEMERAL *_ns columns (not stored) and become
-- DateTime64(9, 'UTC') by DEFAULT: the writer sends the integers it already has, and no
-- value depends on how a server parses date text.
--
-- Integers are Int64: no value a parser produces wraps silently (ClickHouse wraps an
-- out-of-range JSON number). JSON-valued fields (input, output, processes, evidence, detail,
-- extra) are String columns holding JSON text. `extra` holds every field of a record that has
-- no column of its own, so nothing a parser produced is lost.
--
-- Statements are separated by a semicolon at the end of a line, and each is idempotent
-- (IF NOT EXISTS), so that two workers migrating at once both succeed.

CREATE TABLE IF NOT EXISTS {db}.requests
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    principal Nullable(String),
    src_ip Nullable(String),
    model LowCardinality(Nullable(String)),
    path Nullable(String),
    status Nullable(Int64),
    latency_ms Nullable(Float64),
    tokens_in Nullable(Int64),
    tokens_out Nullable(Int64),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), ifNull(principal, ''), ts, id)
{ttl};

CREATE TABLE IF NOT EXISTS {db}.predictions
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    principal Nullable(String),
    src_ip Nullable(String),
    model LowCardinality(Nullable(String)),
    model_version LowCardinality(Nullable(String)),
    input Nullable(String),
    output Nullable(String),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), ifNull(model, ''), ts, id)
{ttl};

CREATE TABLE IF NOT EXISTS {db}.runtime
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    rule LowCardinality(Nullable(String)),
    verb LowCardinality(Nullable(String)),
    priority LowCardinality(Nullable(String)),
    namespace LowCardinality(Nullable(String)),
    pod Nullable(String),
    container LowCardinality(Nullable(String)),
    image LowCardinality(Nullable(String)),
    process Nullable(String),
    user Nullable(String),
    src_ip Nullable(String),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), ifNull(namespace, ''), ts, id)
{ttl};

CREATE TABLE IF NOT EXISTS {db}.gpu
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    node LowCardinality(Nullable(String)),
    gpu_uuid LowCardinality(Nullable(String)),
    util_pct Nullable(Float64),
    mem_used_mib Nullable(Float64),
    power_w Nullable(Float64),
    processes Nullable(String),
    namespace LowCardinality(Nullable(String)),
    pod Nullable(String),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (toStartOfHour(ts), ifNull(gpu_uuid, ''), ts, id)
{ttl};

CREATE TABLE IF NOT EXISTS {db}.workloads
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    node LowCardinality(Nullable(String)),
    gpu_uuid LowCardinality(Nullable(String)),
    namespace LowCardinality(Nullable(String)),
    pod Nullable(String),
    start_ns Nullable(Int64) EPHEMERAL,
    start Nullable(DateTime64(9, 'UTC')) DEFAULT fromUnixTimestamp64Nano(start_ns, 'UTC'),
    end_ns Nullable(Int64) EPHEMERAL,
    `end` Nullable(DateTime64(9, 'UTC')) DEFAULT fromUnixTimestamp64Nano(end_ns, 'UTC'),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(ts)
ORDER BY (ifNull(gpu_uuid, ''), ts, id)
{ttl};

-- An open incident is written again as it grows: the row with the latest updated_at wins.
-- Not partitioned, so that an incident spanning a month boundary still collapses to one row.
CREATE TABLE IF NOT EXISTS {db}.alerts
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    detector LowCardinality(String),
    severity LowCardinality(String),
    entity_type LowCardinality(String),
    entity_id String,
    score Nullable(Float64),
    summary String,
    evidence String,
    window_start_ns Nullable(Int64) EPHEMERAL,
    window_start Nullable(DateTime64(9, 'UTC')) DEFAULT fromUnixTimestamp64Nano(window_start_ns, 'UTC'),
    window_end_ns Nullable(Int64) EPHEMERAL,
    window_end Nullable(DateTime64(9, 'UTC')) DEFAULT fromUnixTimestamp64Nano(window_end_ns, 'UTC'),
    first_event_ts_ns Nullable(Int64) EPHEMERAL,
    first_event_ts Nullable(DateTime64(9, 'UTC')) DEFAULT fromUnixTimestamp64Nano(first_event_ts_ns, 'UTC'),
    event_count Int64,
    updated_at_ns Int64 EPHEMERAL,
    updated_at DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(updated_at_ns, 'UTC'),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id
{ttl};

-- One row per playbook step run for an alert (the id is the playbook's idempotency key);
-- a step that changes status (pending, done, failed, reverted) is written again and the
-- latest updated_at wins.
CREATE TABLE IF NOT EXISTS {db}.actions
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    alert_id String,
    playbook LowCardinality(String),
    step String,
    action LowCardinality(String),
    target String,
    mode LowCardinality(String),
    status LowCardinality(String),
    detail String,
    updated_at_ns Int64 EPHEMERAL,
    updated_at DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(updated_at_ns, 'UTC'),
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY id
{ttl};

-- Records that could not be parsed or stored. ts is when the record was written; raw is
-- already scrubbed of credentials by the caller.
CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    id String,
    ts_ns Int64 EPHEMERAL,
    ts DateTime64(9, 'UTC') DEFAULT fromUnixTimestamp64Nano(ts_ns, 'UTC'),
    source LowCardinality(String),
    file String,
    line Nullable(Int64),
    item Nullable(Int64),
    reason String,
    raw String,
    extra String DEFAULT '',
    ingested_at DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree
ORDER BY (source, id)
{ttl};
