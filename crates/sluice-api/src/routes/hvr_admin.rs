//! The document of HVR's hub server (props, tests, environment), the repository and its props,
//! the wallet (sluice's sealed secrets), hub props replaced and deleted, and hub snapshots.

use utoipa::openapi::RefOr;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};

use super::{Auth, Doc, Face, HVR_ERRORS, Op, count, string};
use crate::hvr::admin::{
    KeyHistoryDelete, PropsTest, SnapshotRef, SnapshotRestore, SnapshotSave, WalletConfig,
    WalletForce,
};
use crate::hvr::hubs::PropsDelete;

const API: &str = "/api/latest";

/// `{name: value}`: props by name (a value is a number, text, a boolean or an object).
fn props() -> RefOr<Schema> {
    ObjectBuilder::new()
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true)))
        .build()
        .into()
}

fn object() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Object)
}

fn closed(o: ObjectBuilder) -> RefOr<Schema> {
    o.additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}

pub(super) fn document(doc: &mut Doc) {
    hub_server(doc);
    repository(doc);
    wallet(doc);
    hub_props(doc);
    snapshots(doc);
    backups(doc);
}

fn hub_server(doc: &mut Doc) {
    let p = format!("{API}/hubserver/props");
    let delete = doc.schema::<PropsDelete>();
    const KEPT: &str = "Props sluice discovers (Hub_Server_HVR_Version, Hub_Server_Operating_System, \
        Hub_Server_Platform, …) and those of `sluice serve`'s configuration (HTTP_Port, \
        Repository_Class, Database_Host, Database_Port, Database_Name, Database_User; never a \
        password) are answered as they are and cannot be changed over the API (writing the value \
        they have changes nothing). The other props HVR documents for the hub server are kept as \
        given; sluice does not act on them. Secrets (Database_Password, \
        HTTPS_Private_Key_Password, …) are refused: sluice keeps none as props. An unknown name \
        is refused.";
    doc.add(
        Op::new(
            HttpMethod::Get,
            &p,
            "hub server",
            Auth::Bearer("any"),
            "Hub server props",
        )
        .description(KEPT)
        .query_list("fetch", "only these props")
        .json(200, "props by name", props())
        .errors(Face::Hvr, &[400, 401]),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &p,
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Change hub server props (null deletes one)",
        )
        .description(KEPT)
        .body(props(), false)
        .empty(204, "changed")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &p,
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Replace the hub server's kept props",
        )
        .description(KEPT)
        .body(props(), false)
        .empty(204, "replaced")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/hubserver/props_delete"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Delete hub server props",
        )
        .body(delete, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/hubserver/test"),
            "hub server",
            Auth::Bearer("any"),
            "Test the hub server: its repository answers",
        )
        .empty(200, "the hub server works")
        .errors(Face::Hvr, &[400, 401]),
    );
    let test = doc.schema::<PropsTest>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/hubserver/props_test"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Test a change of hub server props (nothing is stored) and the repository connection",
        )
        .body(test, false)
        .json(
            200,
            "the props sluice discovers",
            closed(
                object()
                    .property("discovered_props", props())
                    .required("discovered_props"),
            ),
        )
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{API}/hubserver/env/vars"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Environment variables of the hub server",
        )
        .description(
            "Only variables that are safe to show: DB2INSTANCE, II_SYSTEM, INSTHOME, ORACLE_HOME, \
             ORACLE_SID, GOOGLE_APPLICATION_CREDENTIALS, PATH, HOME, TZ, LANG, LC_ALL, USER, \
             HOSTNAME and SLUICE_* variables whose names do not mark a secret (PASSWORD, SECRET, \
             KEY, TOKEN, CREDENTIAL, REPOSITORY…). Any other name is refused (400). A variable \
             that is not set answers \"\".",
        )
        .query_list("vars", "the variables (at least one)")
        .json(
            200,
            "values by name",
            ObjectBuilder::new()
                .additional_properties(Some(AdditionalProperties::RefOr(string().build().into())))
                .build()
                .into(),
        )
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{API}/hubserver/env/odbc_drivers"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "ODBC drivers of the hub server",
        )
        .description(
            "Always \"\": sluice's connectors use native drivers, so no ODBC driver is installed \
             or used.",
        )
        .query("odbcinst", string(), "ignored")
        .query("odbcsysini", string(), "ignored")
        .json(200, "none", string().build().into())
        .errors(Face::Hvr, &[401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{API}/hubserver/env/oratab"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Oracle installations of the hub server",
        )
        .description("Always empty: sluice has no Oracle connector and reads no oratab.")
        .json(
            200,
            "none",
            closed(
                object()
                    .property("oracle_sid", string())
                    .required("oracle_sid")
                    .property("oracle_home", string())
                    .required("oracle_home"),
            ),
        )
        .errors(Face::Hvr, &[401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{API}/hubserver/dirs"),
            "hub server",
            Auth::Bearer("SysAdmin"),
            "Not in sluice: browse the hub server's files",
        )
        .description(crate::hvr::admin::DIRS)
        .query("path", string(), "ignored")
        .query("pattern", string(), "ignored")
        .errors(Face::Hvr, &[401, 403, 501]),
    );
}

fn repository(doc: &mut Doc) {
    let r = format!("{API}/repos");
    let version = closed(
        object()
            .property("current", count())
            .required("current")
            .property("required", count())
            .required("required"),
    );
    let level = closed(
        object()
            .property(
                "level",
                string().enum_values(Some(["SysAdmin", "HubCreation", "None"])),
            )
            .required("level"),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &r,
            "repository",
            Auth::Bearer("any"),
            "The repository",
        )
        .description(
            "The repository the hub server runs on: its schema version, its class \
                 (postgresql or sqlite) and, for SysAdmins, where it is (database, host, port, \
                 user; never the password).",
        )
        .json(
            200,
            "the repository",
            closed(
                object()
                    .property("current_user_access", level)
                    .required("current_user_access")
                    .property("version", version)
                    .required("version")
                    .property(
                        "class",
                        string().enum_values(Some(["postgresql", "sqlite"])),
                    )
                    .property("database", string())
                    .property("host", string())
                    .property("port", count())
                    .property("user", string()),
            ),
        )
        .errors(Face::Hvr, &[401]),
    );
    for (method, summary) in [
        (
            HttpMethod::Post,
            "Create the repository (refused: it exists)",
        ),
        (HttpMethod::Delete, "Drop the repository (refused)"),
    ] {
        doc.add(
            Op::new(method, &r, "repository", Auth::Bearer("SysAdmin"), summary)
                .description(
                    "The repository is chosen when `sluice serve` starts (--repository): sluice \
                     creates and migrates its tables then, and a running server never drops \
                     them. Always 400.",
                )
                .errors(Face::Hvr, &[400, 401, 403]),
        );
    }
    const KEPT: &str = "The props HVR documents for the repository are kept as given; sluice does \
        not act on them. `Wallet` (the wallet's configuration) is answered as it is and cannot \
        be set. Secrets (Agent_Client_Private_Key, Registration_Access_Key, …) are refused. An \
        unknown name is refused.";
    let p = format!("{API}/repos/props");
    doc.add(
        Op::new(
            HttpMethod::Get,
            &p,
            "repository",
            Auth::Bearer("any"),
            "Repository props",
        )
        .description(KEPT)
        .query_list("fetch", "only these props")
        .json(200, "props by name", props())
        .errors(Face::Hvr, &[400, 401]),
    );
    for (method, summary) in [
        (
            HttpMethod::Patch,
            "Change repository props (null deletes one)",
        ),
        (HttpMethod::Put, "Replace the repository's kept props"),
    ] {
        doc.add(
            Op::new(method, &p, "repository", Auth::Bearer("SysAdmin"), summary)
                .description(KEPT)
                .body(props(), false)
                .empty(204, "changed")
                .errors(Face::Hvr, &[400, 401, 403]),
        );
    }
    let delete = doc.schema::<PropsDelete>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/repos/props_delete"),
            "repository",
            Auth::Bearer("SysAdmin"),
            "Delete repository props",
        )
        .body(delete, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
}

fn wallet(doc: &mut Doc) {
    const WALLET: &str = "sluice's wallet is its master key (SLUICE_SECRET_KEY or the key file, \
        given to `sluice serve`; type SOFTWARE, no password) and the wallet keys it wraps, kept in \
        the repository. Location passwords are stored sealed under the current wallet key. Another \
        wallet type (KMS, …) or a password is refused (400).";
    let config = doc.schema::<WalletConfig>();
    let force = doc.schema::<WalletForce>();
    let w = |s: &str| format!("{API}/wallet{s}");
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w(""),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Create the wallet (it exists with the master key: checks the configuration)",
        )
        .description(WALLET)
        .body(config.clone(), false)
        .empty(204, "the wallet is as asked")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &w("/props"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Wallet props",
        )
        .description(
            "Wallet_Type, Wallet_Key_Source (SLUICE_SECRET_KEY or key file), Encryption, \
             Encryption_Key_Sequence (the current key), Encryption_Keys (each key: created, \
             secrets it seals, current; never key material), Reencrypt_State (PENDING while a \
             re-seal has not finished). 400 when the server has no secret key.",
        )
        .query_list("fetch", "only these props")
        .json(200, "props by name", props())
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/change"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Change the wallet's configuration (only to what it is)",
        )
        .description(WALLET)
        .body(config.clone(), false)
        .empty(204, "the wallet is as asked")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/migrate"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Migrate the wallet (only to what it is; rotate_encryption_key rotates)",
        )
        .description(WALLET)
        .body(config, false)
        .empty(204, "done")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/disable"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Disable the wallet (refused)",
        )
        .description("sluice always stores location passwords sealed: always 400.")
        .body(force.clone(), true)
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/key_rotate"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Rotate the encryption key",
        )
        .description(
            "A new wallet key becomes current, and every stored secret is re-sealed under it, hub \
             by hub (a Reencrypt_Secrets event each), while the server keeps working: old keys \
             stay readable, so a crash half-way leaves every secret readable and \
             reencrypt_continue finishes. 400 while a re-seal has not finished.",
        )
        .empty(204, "rotated")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/reencrypt_continue"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Re-seal every stored secret not sealed under the current key",
        )
        .body(force, true)
        .empty(200, "every stored secret is sealed under the current key")
        .errors(Face::Hvr, &[400, 401, 403]),
    );
    let history = doc.schema::<KeyHistoryDelete>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &w("/key_history_delete"),
            "wallet",
            Auth::Bearer("SysAdmin"),
            "Delete old encryption keys",
        )
        .description(
            "Deletes old wallet keys (before the sequence, made before the time, when given); \
             never the current one. Refused (400, nothing deleted) while one of them still seals \
             a stored secret or a re-seal has not finished.",
        )
        .body(history, true)
        .json(
            200,
            "how many were deleted",
            closed(
                object()
                    .property("key_history_deleted", count())
                    .required("key_history_deleted"),
            ),
        )
        .errors(Face::Hvr, &[400, 401, 403]),
    );
}

fn hub_props(doc: &mut Doc) {
    let h = format!("{API}/hubs/{{hub}}");
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{h}/props"),
            "hubs",
            Auth::Bearer("HubOwner"),
            "Replace hub props",
        )
        .description(
            "The props set by users become exactly those given (Description empty when not \
             given); read-only props (Hub_State, Created, …) given with the value they have are \
             ignored, others refused.",
        )
        .body(props(), false)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    let delete = doc.schema::<PropsDelete>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{h}/props_delete"),
            "hubs",
            Auth::Bearer("HubOwner"),
            "Delete hub props",
        )
        .body(delete, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

fn snapshots(doc: &mut Doc) {
    let save = doc.schema::<SnapshotSave>();
    let restore = doc.schema::<SnapshotRestore>();
    let reference = doc.schema::<SnapshotRef>();
    let trim = || string().enum_values(Some(["all", "none"]));
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/hubs/{{hub}}/snapshot"),
            "hubs",
            Auth::Bearer("HubOwner"),
            "Save the hub to a snapshot",
        )
        .description(
            "The hub's definitions and props, kept in the repository under a reference. Sealed \
             location passwords are left out (give them again after a restore); events, logs and \
             statistics are not saved (the trims are always all).",
        )
        .body(save, true)
        .json(
            200,
            "the snapshot's reference",
            closed(object().property("ref", string()).required("ref")),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/snapshot"),
            "hubs",
            Auth::Bearer("SysAdmin"),
            "Restore a snapshot as a new hub",
        )
        .description(
            "Creates the hub and its definitions (compiled as an import over the API, under the \
             same location policy) and props; a Restore_Hub_Snapshot event records it. Nothing \
             is left when it fails.",
        )
        .body(restore, false)
        .empty(200, "restored")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{API}/snapshot_inspect"),
            "hubs",
            Auth::Bearer("ReadOnly"),
            "What a snapshot holds",
        )
        .description("Needs ReadOnly on the hub the snapshot was saved from.")
        .body(reference, false)
        .json(
            200,
            "the snapshot",
            closed(
                object()
                    .property("original_hub", string())
                    .required("original_hub")
                    .property("original_hvr_version", string())
                    .required("original_hvr_version")
                    .property("original_repository_version", string())
                    .required("original_repository_version")
                    .property("save_user", string())
                    .required("save_user")
                    .property("save_tstamp", string())
                    .required("save_tstamp")
                    .property("reason", string())
                    .property("channel_focus", string())
                    .property("event_trim", trim())
                    .property("log_trim", trim())
                    .property("stats_trim", trim())
                    .property("definition_trim", trim())
                    .property("hub_props", props())
                    .required("hub_props"),
            ),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
}

/// `GET /api/latest/backup` and `POST /api/latest/restore`.
fn backups(doc: &mut Doc) {
    let archive = || {
        RefOr::from(Schema::from(
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
                .build(),
        ))
    };
    let hub_param = "a hub to back up or restore (repeat for several; none: every hub)";
    let backup = Op::new(
        HttpMethod::Get,
        &format!("{API}/backup"),
        "backup",
        Auth::Bearer("HubOwner"),
        "A backup archive of hubs' definitions and settings",
    )
    .description(
        "A gzip'd tar (`sluice-backup-<YYYYmmddTHHMMSSZ>.tar.gz`) holding manifest.json (format, \
         creation time, sluice version, backend, hubs, SHA-256 and size of every other member), \
         hubs/<hub>/definitions.json (secrets as stored: sealed or ${VAR}), \
         hubs/<hub>/settings.json, and optionally server.json (server props, wallet settings and \
         wrapped keys) and identity.json (users and API keys, hashes as stored). HubOwner on each \
         hub named; SysAdmin for every hub (no `hub`), `with_users` or `with_server`.",
    )
    .query_list("hub", hub_param)
    .query(
        "with_users",
        bool_schema(),
        "also the users and API keys (SysAdmin)",
    )
    .query(
        "with_server",
        bool_schema(),
        "also the server settings and wallet keys (SysAdmin; default: true when no hub is named)",
    )
    .reply(200, "the archive", "application/gzip", archive())
    .errors(Face::Hvr, HVR_ERRORS);
    doc.add(backup);
    let mut restore = Op::new(
        HttpMethod::Post,
        &format!("{API}/restore"),
        "backup",
        Auth::Bearer("HubOwner"),
        "Restore a backup archive (or, with plan=true, show what it would change)",
    )
    .description(
        "The body is an archive from GET /api/latest/backup, as raw bytes (Content-Type \
         application/octet-stream or application/gzip). Its manifest and every checksum are \
         verified first: a corrupted or truncated archive is refused (400) and nothing changes. \
         Each hub's definitions are applied with prune (the hub becomes what the archive holds; \
         a missing hub is created, which needs SysAdmin), then its settings, then (with_users) \
         the users and API keys. HubOwner on each existing hub restored; SysAdmin for \
         with_users, with_server or a hub that does not exist.",
    )
    .query_list("hub", hub_param)
    .query("with_users", bool_schema(), "also restore the users and API keys (SysAdmin)")
    .query(
        "with_server",
        bool_schema(),
        "also restore the server settings and wallet keys (SysAdmin)",
    )
    .query("plan", bool_schema(), "only answer what restoring would change")
    .query_list(
        "expect",
        "HUB:VERSION (or HUB:new) as the plan found each hub: a hub changed since refuses the restore, changing nothing",
    )
    .json(
        200,
        "the plan (plan=true: manifest, hubs, settings, identity, server) or what was restored (hubs, notes)",
        object().additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(true))).build().into(),
    )
    .errors(Face::Hvr, &[400, 401, 403, 404, 413]);
    restore.builder = restore.builder.request_body(Some(
        utoipa::openapi::request_body::RequestBodyBuilder::new()
            // Sent as raw bytes: the handler reads the body whatever its content type
            // (sluice's client says application/gzip); octet-stream is what generic clients
            // and API fuzzers know how to send.
            .content(
                "application/octet-stream",
                utoipa::openapi::Content::new(Some(archive())),
            )
            .required(Some(utoipa::openapi::Required::True))
            .build(),
    ));
    doc.add(restore);
}

fn bool_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Boolean)
}
