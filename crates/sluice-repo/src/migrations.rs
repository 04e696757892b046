//! Versioned schema migrations of the repository, one list per backend. Each runs once, in order,
//! in its own transaction with the `schema_migration` row that records it. A repository whose
//! newest migration is unknown to this build (written by a newer sluice) is refused rather than
//! misread. Both lists keep the same version numbers for the same change, so a version means the
//! same tables and columns on SQLite and PostgreSQL.

/// SQLite: `(version, name, SQL)`, in order. Never edit a released migration; add the next one.
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
    (
        3,
        "fivetran face: connector settings and API keys",
        r#"
-- Settings of a connector (a channel with one source and one target location). A row is created
-- the first time the connector is read; channels without a row have the defaults below.
CREATE TABLE connector (
    hub_name               TEXT NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    chn_name               TEXT NOT NULL,
    created                TEXT NOT NULL,
    paused                 INTEGER NOT NULL DEFAULT 0,
    schedule_type          TEXT NOT NULL DEFAULT 'manual' CHECK (schedule_type IN ('auto', 'manual')),
    sync_frequency         INTEGER NOT NULL DEFAULT 360,
    daily_sync_time        TEXT NOT NULL DEFAULT '00:00',
    schema_change_handling TEXT NOT NULL DEFAULT 'ALLOW_ALL',
    schema_overlay         TEXT NOT NULL DEFAULT '{}',
    setup_state            TEXT NOT NULL DEFAULT 'connected',
    setup_tests            TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (hub_name, chn_name)
);

-- API keys of the Fivetran face (HTTP Basic key:secret); the secret only as its SHA-256.
CREATE TABLE api_key (
    key_id        TEXT PRIMARY KEY,
    secret_hash   TEXT NOT NULL,
    access_level  TEXT NOT NULL,
    created       TEXT NOT NULL,
    creator       TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT ''
);
"#,
    ),
    (
        4,
        "commit markers of job runs, events ended by a cancel",
        r#"
-- One row per table of a job run whose commit has begun: BEGUN while the commit runs, DONE once
-- the table is committed (a commit that fails removes its row). A cancel reads them in the
-- transaction that decides it: while a table commits it is too late, and a run with a
-- committed table never ends CANCELED.
CREATE TABLE event_commit (
    ev_id         TEXT NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    tbl_name      TEXT NOT NULL,
    commit_state  TEXT NOT NULL CHECK (commit_state IN ('BEGUN', 'DONE')),
    tstamp        TEXT NOT NULL,
    PRIMARY KEY (ev_id, tbl_name)
);

-- 1 when a cancel ended the event: CANCELED, or FAILED because a table had committed first.
ALTER TABLE event ADD COLUMN canceled INTEGER NOT NULL DEFAULT 0 CHECK (canceled IN (0, 1));
"#,
    ),
    (
        5,
        "property bags",
        r#"
-- Objects that are nothing but props (alerts, user props, job attributes, the hub server's props).
-- hub_name is '' for a bag of no hub, owner '' for a singleton; the row with prop_name '' marks
-- that the bag exists (a bag may have no props).
CREATE TABLE prop_bag (
    bag_kind      TEXT NOT NULL,
    hub_name      TEXT NOT NULL,
    owner         TEXT NOT NULL,
    prop_name     TEXT NOT NULL,
    prop_value    TEXT NOT NULL,
    PRIMARY KEY (bag_kind, hub_name, owner, prop_name)
);
CREATE INDEX prop_bag_hub ON prop_bag (hub_name);
"#,
    ),
];

/// PostgreSQL: `(version, name, SQL)`, in order, the same tables and columns as [`MIGRATIONS`] with
/// PostgreSQL types. Names and event ids are `text COLLATE "C"` so they sort byte-wise as they do
/// in SQLite (event ids `2024-05-01T10:11:12.123456Z` sort in time order); JSON stays text so it
/// round-trips exactly as written. Never edit a released migration; add the next one.
pub(crate) const PG_MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "definitions, jobs and events",
        r#"
CREATE TABLE hub (
    hub_name     text COLLATE "C" PRIMARY KEY,
    description  text NOT NULL DEFAULT '',
    hub_state    text NOT NULL DEFAULT 'LIVE' CHECK (hub_state IN ('LIVE', 'FROZEN')),
    created      timestamptz NOT NULL,
    creator      text NOT NULL
);

CREATE TABLE location (
    hub_name     text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    loc_name     text COLLATE "C" NOT NULL,
    loc_class    text NOT NULL,
    description  text NOT NULL DEFAULT '',
    PRIMARY KEY (hub_name, loc_name)
);

-- Property values are JSON (text, number or boolean), unresolved: secrets are ${ENV} references.
CREATE TABLE location_property (
    hub_name     text COLLATE "C" NOT NULL,
    loc_name     text COLLATE "C" NOT NULL,
    prop_name    text COLLATE "C" NOT NULL,
    prop_value   text NOT NULL,
    PRIMARY KEY (hub_name, loc_name, prop_name),
    FOREIGN KEY (hub_name, loc_name) REFERENCES location (hub_name, loc_name) ON DELETE CASCADE
);

CREATE TABLE channel (
    hub_name     text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    chn_name     text COLLATE "C" NOT NULL,
    description  text NOT NULL DEFAULT '',
    PRIMARY KEY (hub_name, chn_name)
);

CREATE TABLE loc_group (
    hub_name     text COLLATE "C" NOT NULL,
    chn_name     text COLLATE "C" NOT NULL,
    grp_name     text COLLATE "C" NOT NULL,
    PRIMARY KEY (hub_name, chn_name, grp_name),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

-- A location belongs to at most one group of a channel.
CREATE TABLE loc_group_member (
    hub_name     text COLLATE "C" NOT NULL,
    chn_name     text COLLATE "C" NOT NULL,
    grp_name     text COLLATE "C" NOT NULL,
    loc_name     text COLLATE "C" NOT NULL,
    member_seq   integer NOT NULL,
    PRIMARY KEY (hub_name, chn_name, loc_name),
    FOREIGN KEY (hub_name, chn_name, grp_name) REFERENCES loc_group (hub_name, chn_name, grp_name) ON DELETE CASCADE,
    FOREIGN KEY (hub_name, loc_name) REFERENCES location (hub_name, loc_name)
);

CREATE TABLE channel_table (
    hub_name      text COLLATE "C" NOT NULL,
    chn_name      text COLLATE "C" NOT NULL,
    tbl_name      text COLLATE "C" NOT NULL,
    tbl_base_name text,
    tbl_group     text,
    discover_cols boolean NOT NULL,
    PRIMARY KEY (hub_name, chn_name, tbl_name),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

CREATE TABLE channel_column (
    hub_name      text COLLATE "C" NOT NULL,
    chn_name      text COLLATE "C" NOT NULL,
    tbl_name      text COLLATE "C" NOT NULL,
    col_name      text COLLATE "C" NOT NULL,
    col_sequence  integer NOT NULL,
    col_key       integer NOT NULL DEFAULT 0,
    col_datatype  text NOT NULL,
    col_nullable  boolean NOT NULL,
    PRIMARY KEY (hub_name, chn_name, tbl_name, col_name),
    FOREIGN KEY (hub_name, chn_name, tbl_name) REFERENCES channel_table (hub_name, chn_name, tbl_name) ON DELETE CASCADE
);

CREATE TABLE action (
    hub_name      text COLLATE "C" NOT NULL,
    chn_name      text COLLATE "C" NOT NULL,
    action_seq    integer NOT NULL,
    act_name      text NOT NULL,
    loc_scope     text NOT NULL,
    tbl_scope     text NOT NULL,
    act_params    text NOT NULL,
    PRIMARY KEY (hub_name, chn_name, action_seq),
    FOREIGN KEY (hub_name, chn_name) REFERENCES channel (hub_name, chn_name) ON DELETE CASCADE
);

-- Event ids are µs timestamps written 2024-05-01T10:11:12.123456Z, so text order is time order.
CREATE TABLE event (
    ev_id         text COLLATE "C" PRIMARY KEY,
    hub_name      text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    ev_type       text NOT NULL,
    user_name     text NOT NULL,
    description   text NOT NULL,
    chn_name      text COLLATE "C",
    loc_name      text COLLATE "C",
    loc_name_2    text COLLATE "C",
    job_name      text COLLATE "C",
    ev_state      text NOT NULL CHECK (ev_state IN ('ACTIVE', 'DONE', 'FAILED', 'CANCELED')),
    num_retries   integer NOT NULL DEFAULT 0,
    response      text,
    start_tstamp  timestamptz NOT NULL,
    finish_tstamp timestamptz,
    body          text NOT NULL DEFAULT '{}',
    last_updated  timestamptz NOT NULL
);
CREATE INDEX event_by_channel ON event (hub_name, chn_name, ev_type, ev_id);
CREATE INDEX event_by_job ON event (hub_name, job_name, ev_id);

-- Event-level results use the table name '' (no table). res_seq keeps the order results were
-- first stored in (SQLite's rowid).
CREATE TABLE event_result (
    ev_id         text COLLATE "C" NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    tbl_name      text COLLATE "C" NOT NULL,
    res_name      text COLLATE "C" NOT NULL,
    res_value     text NOT NULL,
    res_seq       bigint GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (ev_id, tbl_name, res_name)
);

CREATE TABLE event_log (
    ev_id         text COLLATE "C" NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    line_no       bigint NOT NULL,
    tstamp        timestamptz NOT NULL,
    message       text NOT NULL,
    PRIMARY KEY (ev_id, line_no)
);

-- One row per job. owner_id/heartbeat say which process runs it and whether that process is alive;
-- heartbeats are the database's clock, so processes on hosts with skewed clocks agree.
CREATE TABLE job (
    hub_name      text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    job_name      text COLLATE "C" NOT NULL,
    job_state     text NOT NULL,
    last_ev_id    text COLLATE "C",
    run_begin     timestamptz,
    run_end       timestamptz,
    num_runs      bigint NOT NULL DEFAULT 0,
    owner_id      text,
    owner_host    text,
    owner_pid     bigint,
    heartbeat     timestamptz,
    PRIMARY KEY (hub_name, job_name)
);
"#,
    ),
    (
        2,
        "hub server: hub state and properties, users, tokens, settings",
        r#"
ALTER TABLE hub ADD COLUMN freeze_time timestamptz;
ALTER TABLE hub ADD COLUMN def_version bigint NOT NULL DEFAULT 0;

-- Values are JSON.
CREATE TABLE hub_property (
    hub_name     text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    prop_name    text COLLATE "C" NOT NULL,
    prop_value   text NOT NULL,
    PRIMARY KEY (hub_name, prop_name)
);

-- Passwords only as Argon2id PHC strings.
CREATE TABLE app_user (
    user_name     text COLLATE "C" PRIMARY KEY,
    access_level  text NOT NULL,
    password_hash text NOT NULL,
    created       timestamptz NOT NULL,
    creator       text NOT NULL
);

-- Refresh tokens and API keys, only as SHA-256 hashes.
CREATE TABLE token (
    token_hash    text COLLATE "C" PRIMARY KEY,
    user_name     text COLLATE "C" NOT NULL REFERENCES app_user (user_name) ON DELETE CASCADE,
    kind          text NOT NULL,
    created       timestamptz NOT NULL,
    expires       timestamptz NOT NULL
);
CREATE INDEX token_by_user ON token (user_name, kind);

CREATE TABLE setting (
    name          text COLLATE "C" PRIMARY KEY,
    value         text NOT NULL
);
"#,
    ),
    (
        3,
        "fivetran face: connector settings and API keys",
        r#"
-- Settings of a connector (a channel with one source and one target location). A row is created
-- the first time the connector is read; channels without a row have the defaults below.
CREATE TABLE connector (
    hub_name               text COLLATE "C" NOT NULL REFERENCES hub (hub_name) ON DELETE CASCADE,
    chn_name               text COLLATE "C" NOT NULL,
    created                timestamptz NOT NULL,
    paused                 boolean NOT NULL DEFAULT false,
    schedule_type          text NOT NULL DEFAULT 'manual' CHECK (schedule_type IN ('auto', 'manual')),
    sync_frequency         integer NOT NULL DEFAULT 360,
    daily_sync_time        text NOT NULL DEFAULT '00:00',
    schema_change_handling text NOT NULL DEFAULT 'ALLOW_ALL',
    schema_overlay         text NOT NULL DEFAULT '{}',
    setup_state            text NOT NULL DEFAULT 'connected',
    setup_tests            text NOT NULL DEFAULT '[]',
    PRIMARY KEY (hub_name, chn_name)
);

-- API keys of the Fivetran face (HTTP Basic key:secret); the secret only as its SHA-256.
CREATE TABLE api_key (
    key_id        text COLLATE "C" PRIMARY KEY,
    secret_hash   text NOT NULL,
    access_level  text NOT NULL,
    created       timestamptz NOT NULL,
    creator       text NOT NULL,
    description   text NOT NULL DEFAULT ''
);
"#,
    ),
    (
        4,
        "commit markers of job runs, events ended by a cancel",
        r#"
-- One row per table of a job run whose commit has begun: BEGUN while the commit runs, DONE once
-- the table is committed (a commit that fails removes its row). A cancel reads them in the
-- transaction that decides it, holding the job's row as the start of a commit does: while a
-- table commits it is too late, and a run with a committed table never ends CANCELED.
CREATE TABLE event_commit (
    ev_id         text COLLATE "C" NOT NULL REFERENCES event (ev_id) ON DELETE CASCADE,
    tbl_name      text COLLATE "C" NOT NULL,
    commit_state  text NOT NULL CHECK (commit_state IN ('BEGUN', 'DONE')),
    tstamp        timestamptz NOT NULL,
    PRIMARY KEY (ev_id, tbl_name)
);

-- true when a cancel ended the event: CANCELED, or FAILED because a table had committed first.
ALTER TABLE event ADD COLUMN canceled boolean NOT NULL DEFAULT false;
"#,
    ),
    (
        5,
        "property bags",
        r#"
-- Objects that are nothing but props (alerts, user props, job attributes, the hub server's props).
-- hub_name is '' for a bag of no hub, owner '' for a singleton; the row with prop_name '' marks
-- that the bag exists (a bag may have no props).
CREATE TABLE prop_bag (
    bag_kind      text COLLATE "C" NOT NULL,
    hub_name      text COLLATE "C" NOT NULL,
    owner         text COLLATE "C" NOT NULL,
    prop_name     text COLLATE "C" NOT NULL,
    prop_value    text NOT NULL,
    PRIMARY KEY (bag_kind, hub_name, owner, prop_name)
);
CREATE INDEX prop_bag_hub ON prop_bag (hub_name);
"#,
    ),
];
