//! Versioned schema migrations of the SQLite repository. Each runs once, in order, in its own
//! transaction with the `schema_migration` row that records it. A repository whose newest migration
//! is unknown to this build (written by a newer sluice) is refused rather than misread.

/// `(version, name, SQL)`, in order. Never edit a released migration; add the next one.
pub(crate) const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
    1,
    "definitions, jobs and events",
    r#"
CREATE TABLE hub (
    hub_name     TEXT PRIMARY KEY,
    description  TEXT NOT NULL DEFAULT '',
    hub_state    TEXT NOT NULL DEFAULT 'LIVE' CHECK (hub_state IN ('LIVE', 'FROZEN')),
    created      TEXT NOT NULL,
    creator      TEXT NOT NULL
);

CREATE TABLE location (
    hub_name     TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    loc_name     TEXT NOT NULL,
    loc_class    TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (hub_name, loc_name)
);

-- Property values are JSON (text, number or boolean), unresolved: secrets are ${ENV} references.
CREATE TABLE location_property (
    hub_name     TEXT NOT NULL,
    loc_name     TEXT NOT NULL,
    prop_name    TEXT NOT NULL,
    prop_value   TEXT NOT NULL,
    PRIMARY KEY (hub_name, loc_name, prop_name),
    FOREIGN KEY (hub_name, loc_name) REFERENCES location (hub_name, loc_name) ON DELETE CASCADE
);

CREATE TABLE channel (
    hub_name     TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    chn_name     TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (hub_name, chn_name)
);

CREATE TABLE loc_group (
    hub_name     TEXT NOT NULL,
    chn_name     TEXT NOT NULL,
    grp_name     TEXT NOT NULL,
    PRIMARY KEY (hub_name, chn_name, grp_name),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

-- A location belongs to at most one group of a channel.
CREATE TABLE loc_group_member (
    hub_name     TEXT NOT NULL,
    chn_name     TEXT NOT NULL,
    grp_name     TEXT NOT NULL,
    loc_name     TEXT NOT NULL,
    member_seq   INTEGER NOT NULL,
    PRIMARY KEY (hub_name, chn_name, loc_name),
    FOREIGN KEY (hub_name, chn_name, grp_name) REFERENCES loc_group (hub_name, chn_name, grp_name) ON DELETE CASCADE,
    FOREIGN KEY (hub_name, loc_name) REFERENCES location (hub_name, loc_name)
);

CREATE TABLE channel_table (
    hub_name      TEXT NOT NULL,
    chn_name      TEXT NOT NULL,
    tbl_name      TEXT NOT NULL,
    tbl_base_name TEXT,
    tbl_group     TEXT,
    discover_cols INTEGER NOT NULL CHECK (discover_cols IN (0, 1)),
    PRIMARY KEY (hub_name, chn_name, tbl_name),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

CREATE TABLE channel_column (
    hub_name      TEXT NOT NULL,
    chn_name      TEXT NOT NULL,
    tbl_name      TEXT NOT NULL,
    col_name      TEXT NOT NULL,
    col_sequence  INTEGER NOT NULL,
    col_key       INTEGER NOT NULL DEFAULT 0,
    col_datatype  TEXT NOT NULL,
    col_nullable  INTEGER NOT NULL CHECK (col_nullable IN (0, 1)),
    PRIMARY KEY (hub_name, chn_name, tbl_name, col_name),
    FOREIGN KEY (hub_name, chn_name, tbl_name) REFERENCES channel_table (hub_name, chn_name, tbl_name) ON DELETE CASCADE
);

CREATE TABLE action (
    hub_name      TEXT NOT NULL,
    chn_name      TEXT NOT NULL,
    action_seq    INTEGER NOT NULL,
    act_name      TEXT NOT NULL,
    loc_scope     TEXT NOT NULL,
    tbl_scope     TEXT NOT NULL,
    act_params    TEXT NOT NULL,
    PRIMARY KEY (hub_name, chn_name, action_seq),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

-- Event ids are µs timestamps written 2024-05-01T10:11:12.123456Z, so text order is time order.
CREATE TABLE event (
    ev_id         TEXT PRIMARY KEY,
    hub_name      TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    ev_type       TEXT NOT NULL,
    user_name     TEXT NOT NULL,
    description   TEXT NOT NULL,
    chn_name      TEXT,
    loc_name      TEXT,
    loc_name_2    TEXT,
    job_name      TEXT,
    ev_state      TEXT NOT NULL CHECK (ev_state IN ('ACTIVE', 'DONE', 'FAILED', 'CANCELED')),
    num_retries   INTEGER NOT NULL DEFAULT 0,
    response      TEXT,
    start_tstamp  TEXT NOT NULL,
    finish_tstamp TEXT,
    body          TEXT NOT NULL DEFAULT '{}',
    last_updated  TEXT NOT NULL
);
CREATE INDEX event_by_channel ON event (hub_name, chn_name, ev_type, ev_id);
CREATE INDEX event_by_job ON event (hub_name, job_name, ev_id);

-- Event-level results use the table name '' (no table).
CREATE TABLE event_result (
    ev_id         TEXT NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    tbl_name      TEXT NOT NULL,
    res_name      TEXT NOT NULL,
    res_value     TEXT NOT NULL,
    PRIMARY KEY (ev_id, tbl_name, res_name)
);

CREATE TABLE event_log (
    ev_id         TEXT NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    line_no       INTEGER NOT NULL,
    tstamp        TEXT NOT NULL,
    message       TEXT NOT NULL,
    PRIMARY KEY (ev_id, line_no)
);

-- One row per job. owner_id/heartbeat say which process runs it and whether that process is alive.
CREATE TABLE job (
    hub_name      TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    job_name      TEXT NOT NULL,
    job_state     TEXT NOT NULL,
    last_ev_id    TEXT,
    run_begin     TEXT,
    run_end       TEXT,
    num_runs      INTEGER NOT NULL DEFAULT 0,
    owner_id      TEXT,
    owner_host    TEXT,
    owner_pid     INTEGER,
    heartbeat     TEXT,
    PRIMARY KEY (hub_name, job_name)
);
"#,
),
    (
        2,
        "hub server: hub state and properties, users, tokens, settings",
        r#"
ALTER TABLE hub ADD COLUMN freeze_time TEXT;
ALTER TABLE hub ADD COLUMN def_version INTEGER NOT NULL DEFAULT 0;

-- Values are JSON.
CREATE TABLE hub_property (
    hub_name     TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    prop_name    TEXT NOT NULL,
    prop_value   TEXT NOT NULL,
    PRIMARY KEY (hub_name, prop_name)
);

-- Passwords only as Argon2id PHC strings.
CREATE TABLE app_user (
    user_name     TEXT PRIMARY KEY,
    access_level  TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created       TEXT NOT NULL,
    creator       TEXT NOT NULL
);

-- Refresh tokens and API keys, only as SHA-256 hashes.
CREATE TABLE token (
    token_hash    TEXT PRIMARY KEY,
    user_name     TEXT NOT NULL REFERENCES app_user (user_name) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    created       TEXT NOT NULL,
    expires       TEXT NOT NULL
);
CREATE INDEX token_by_user ON token (user_name, kind);

CREATE TABLE setting (
    name          TEXT PRIMARY KEY,
    value         TEXT NOT NULL
);
"#,
    ),
];
