-- edgegov fleet archive, version 1: devices seen, the durable work queue, incidents.
-- Portable SQL: the same text runs on SQLite (>= 3.35) and PostgreSQL (>= 12).
-- Times are integers: *_wall_ms are Unix epoch milliseconds, *_t_ms device time.

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    status        TEXT NOT NULL,           -- online | offline
    state         TEXT,                    -- TRIPPED | DISARMED | ARMED | PAUSED
    mode          TEXT,
    link          TEXT,
    estop         INTEGER,
    trip_causes   TEXT,                    -- JSON list of cause names
    envelope      TEXT,                    -- SHA-256 hex of the compiled envelope
    firmware      TEXT,
    boot          INTEGER,
    state_doc     TEXT,                    -- the last state message, JSON
    seen_wall_ms  BIGINT NOT NULL,
    last_trip_wall_ms BIGINT,
    last_trip_cause   TEXT,
    decisions     BIGINT NOT NULL DEFAULT 0,
    clamps        BIGINT NOT NULL DEFAULT 0,
    rejects       BIGINT NOT NULL DEFAULT 0
);

-- One row per piece of work: a trip to archive, or a pull on request. The id is the
-- identity of the work (trip:DEVICE:BOOT:T_MS), so every collector that hears of the same
-- trip inserts the same row, once. Workers claim a row with a lease; a lease that ran out
-- (its collector died) is claimed again.
CREATE TABLE jobs (
    id            TEXT PRIMARY KEY,
    device        TEXT NOT NULL,
    kind          TEXT NOT NULL,           -- trip | request
    boot          INTEGER,
    trip_t_ms     BIGINT,
    cause         TEXT,
    heard_wall_ms BIGINT NOT NULL,         -- when a collector first heard of it
    state         TEXT NOT NULL,           -- pending | running | done | failed
    attempts      INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT,
    lease_until_ms BIGINT,
    not_before_ms BIGINT NOT NULL DEFAULT 0,
    done_wall_ms  BIGINT,
    note          TEXT,
    error         TEXT
);

-- An incident: a trip while the governor was not already tripped (the report's
-- definition), keyed by where it happened, so it is archived exactly once.
CREATE TABLE incidents (
    id            TEXT PRIMARY KEY,        -- DEVICE:BOOT:T_MS of the trip
    device        TEXT NOT NULL,
    boot          INTEGER NOT NULL,
    trip_t_ms     BIGINT NOT NULL,
    trip_wall_ms  BIGINT,
    cause         TEXT NOT NULL,
    cause_code    INTEGER,
    rule          TEXT,
    retrips       INTEGER NOT NULL DEFAULT 0,
    envelope      TEXT,
    firmware      TEXT,
    dump_sha256   TEXT NOT NULL,
    dump_bytes    BIGINT NOT NULL,
    records       INTEGER NOT NULL,
    verify_ok     INTEGER NOT NULL,
    macs_checked  INTEGER NOT NULL,
    verify_text   TEXT NOT NULL,
    replay_ok     INTEGER NOT NULL,
    replay_text   TEXT NOT NULL,
    report_sha256 TEXT,
    report_error  TEXT,
    job_id        TEXT NOT NULL,
    collector     TEXT NOT NULL,
    archived_wall_ms BIGINT NOT NULL
);
