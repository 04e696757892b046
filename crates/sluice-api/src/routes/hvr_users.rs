//! The document of HVR's User Config Interface (users, their props, their props and access
//! level on one hub, passwords) and of the first-run set-up (`POST /auth/v1/setup`, `POST /auth`).

#![allow(dead_code, reason = "shapes of the document only")]

use std::collections::BTreeMap;

use serde_json::Value as Json;
use utoipa::ToSchema;
use utoipa::openapi::path::HttpMethod;

use super::{Auth, Doc, Face, HVR_ERRORS, Op};
use crate::hvr::shapes as hvr;
use crate::hvr::users as handlers;
use crate::shapes::{AccessLevel, Timestamp};

/// A user as answered (`authentication` and `props` as `?fetch=` asks: both without it).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
struct User {
    /// sluice: the server-wide level (a hub's access entry may set another there).
    level: AccessLevel,
    created: Timestamp,
    /// Who created the user.
    creator: String,
    /// Always `local`.
    #[serde(default)]
    #[schema(pattern = "^local$", nullable = false)]
    authentication: Option<String>,
    #[serde(default)]
    #[schema(nullable = false)]
    props: Option<handlers::UserProps>,
}

/// Users by name (all of them for a SysAdmin; the caller alone for anyone else).
#[derive(ToSchema)]
struct Users(BTreeMap<String, User>);

/// A PATCH of props: `null` deletes one.
#[derive(ToSchema)]
struct PropsChange(BTreeMap<String, Json>);

/// A user's props on one hub. `Access_Level` (None, ReadOnly, ReadExec, ReadExecRefresh,
/// ReadWrite or HubOwner), when present, is the user's level on that hub instead of their
/// server-wide level; only a SysAdmin sets or deletes it.
#[derive(ToSchema)]
struct HubUserProps(BTreeMap<String, Json>);

/// `POST /auth`: the auth versions (`v1`).
#[derive(ToSchema)]
struct AuthVersions(Vec<String>);

pub(super) fn document(doc: &mut Doc) {
    let tokens = doc.schema::<hvr::Tokens>();
    let auth_versions = doc.schema::<AuthVersions>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/auth",
            "auth",
            Auth::Anonymous,
            "Auth versions available",
        )
        .json(200, "the auth versions (/auth/v1/…)", auth_versions),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            "/auth/v1/setup",
            "auth",
            Auth::Anonymous,
            "A setup-mode token (first-run set-up of a hub server without users)",
        )
        .description(
            "Only while the hub server has no user (`sluice serve --setup-mode` on an empty \
             repository): an access token (900 s) that acts as SysAdmin on the user operations \
             (/api/latest/users…) only, until it expires or a user is SysAdmin. A user created \
             with it without a level is SysAdmin. Refused (403) once any user exists.",
        )
        .json(200, "a setup-mode token", tokens)
        .errors(Face::Hvr, &[403]),
    );

    let users = doc.schema::<Users>();
    let user = doc.schema::<User>();
    let new_user = doc.schema::<handlers::NewUser>();
    let change = doc.schema::<handlers::UserChange>();
    let reset = doc.schema::<handlers::PasswordReset>();
    let props = doc.schema::<handlers::UserProps>();
    let props_change = doc.schema::<PropsChange>();
    let props_delete = doc.schema::<handlers::PropsDelete>();
    let hub_props = doc.schema::<HubUserProps>();
    const U: &str = "/api/latest/users";
    const ONE: &str = "/api/latest/users/{user}";
    const HU: &str = "/api/latest/hubs/{hub}/users/{user}";
    let fetch = "authentication, contact_props, all_props (default: authentication and all props)";
    doc.add(
        Op::new(
            HttpMethod::Get,
            U,
            "users",
            Auth::Bearer("any (SysAdmin: every user; others: themselves)"),
            "List users with their authentication and props",
        )
        .query_list("fetch", fetch)
        .json(200, "users by name", users)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            U,
            "users",
            Auth::Bearer("SysAdmin (or a setup-mode token)"),
            "Create a user",
        )
        .description(
            "HVR's `user`, `authentication` (local only: pam, plugin and windows are refused \
             with 400), `password` and `props`; sluice also takes `level` (default ReadOnly, \
             SysAdmin with a setup-mode token). 400 when the user exists.",
        )
        .body(new_user, false)
        .empty(204, "created (HVR answers 204)")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            ONE,
            "users",
            Auth::Bearer("SysAdmin or self"),
            "One user with their authentication and props",
        )
        .query_list("fetch", fetch)
        .json(200, "the user", user)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            ONE,
            "users",
            Auth::Bearer("SysAdmin (self: password only, with current_password)"),
            "Change a user's level or password (sluice)",
        )
        .body(change, false)
        .empty(204, "changed")
        .errors(Face::Hvr, &[400, 401, 403, 404, 429]),
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            ONE,
            "users",
            Auth::Bearer("SysAdmin"),
            "Delete a user (with their props and hub access entries)",
        )
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{ONE}/password"),
            "users",
            Auth::Bearer("SysAdmin (self: with current_password)"),
            "Set a password; ends the user's sessions",
        )
        .body(reset, false)
        .empty(204, "set")
        .errors(Face::Hvr, &[400, 401, 403, 404, 429]),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{ONE}/props"),
            "users",
            Auth::Bearer("SysAdmin or self"),
            "A user's props",
        )
        .query_list("fetch", "the props to answer (default: all)")
        .json(200, "props by name", props.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{ONE}/props"),
            "users",
            Auth::Bearer("SysAdmin or self"),
            "Set a user's props (null deletes one)",
        )
        .description(
            "Level, password and authentication are not props: naming them is refused (403 for \
             a user changing their own, 400 for a SysAdmin).",
        )
        .body(props_change.clone(), false)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{ONE}/props"),
            "users",
            Auth::Bearer("SysAdmin or self"),
            "Replace all of a user's props",
        )
        .body(props, false)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{ONE}/props_delete"),
            "users",
            Auth::Bearer("SysAdmin or self"),
            "Delete some of a user's props",
        )
        .body(props_delete.clone(), false)
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{HU}/props"),
            "users",
            Auth::Bearer("SysAdmin or self"),
            "A user's props on one hub, with their Access_Level there",
        )
        .query_list("fetch", "the props to answer (default: all)")
        .json(200, "props by name", hub_props.clone())
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{HU}/props"),
            "users",
            Auth::Bearer("SysAdmin or self (Access_Level: SysAdmin only)"),
            "Set a user's props on one hub (null deletes one)",
        )
        .description(
            "Access_Level sets the user's level on the hub (None hides it); it takes effect at \
             the next request.",
        )
        .body(props_change, false)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{HU}/props"),
            "users",
            Auth::Bearer("SysAdmin or self (Access_Level: SysAdmin only)"),
            "Replace all of a user's props on one hub",
        )
        .description(
            "A SysAdmin replaces Access_Level too (leaving it out removes the access entry); a \
             user replacing their own props keeps their access entry.",
        )
        .body(hub_props, false)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{HU}/props_delete"),
            "users",
            Auth::Bearer("SysAdmin or self (Access_Level: SysAdmin only)"),
            "Delete some of a user's props on one hub",
        )
        .body(props_delete, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
}
