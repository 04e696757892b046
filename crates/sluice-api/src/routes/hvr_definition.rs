//! The document of the Definition Interface: channels, tables and columns, location groups and
//! members, actions (channel, hub, location), locations and their props, renames, copy, import,
//! export and the change history.

use utoipa::openapi::RefOr;
use utoipa::openapi::path::HttpMethod;
use utoipa::openapi::schema::{ArrayBuilder, Schema};

use super::{Auth, Doc, Face, HVR_ERRORS, Op, string};
use crate::hvr::shapes as hvr;

/// Errors of a change. As HVR, a change that conflicts with what exists (a name taken) is a 400
/// (code `F_JA0409`).
const HVR_WRITE_ERRORS: &[u16] = HVR_ERRORS;

pub(super) fn document(doc: &mut Doc) {
    const D: &str = "/api/latest/hubs/{hub}/definition";
    const C: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}";
    const T: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/tables/{table}";
    const G: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}";
    let new_name = doc.schema::<hvr::NewName>();
    const L: &str = "/api/latest/hubs/{hub}/definition/locs/{loc}";
    let read = Auth::Bearer("ReadOnly");
    let write = Auth::Bearer("ReadWrite");
    let tag = "definition";
    let definition = doc.schema::<hvr::Definition>();
    let import = doc.schema::<hvr::Import>();
    let imported = doc.schema::<hvr::Imported>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            D,
            tag,
            read,
            "Export definitions (secrets left out)",
        )
        .query_list(
            "fetch",
            "parts: locs, loc_props, channels, tables, cols, hub_actions (default: all)",
        )
        .query_list("channel", "only these channels")
        .query_list("loc", "only these locations")
        .json(200, "the definitions", definition)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/import"),
            tag,
            write,
            "Apply a list of changes atomically",
        )
        .body(import, false)
        .json(200, "applied", imported)
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let plan_body = doc.schema::<hvr::DefinitionPlanBody>();
    let free = |what: &str| -> RefOr<Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .description(Some(what))
            .into()
    };
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/plan"),
            tag,
            read,
            "Plan a definitions document: what applying it would change (sluice)",
        )
        .description(
            "Compares the document (the definitions file schema) with the hub, object by object \
             with field-level differences, without changing anything; also lists the hub's \
             objects the document lacks (removed with `prune`) and what changed outside the file \
             since its last apply (drift). ReadOnly on the hub; SysAdmin when the hub does not \
             exist yet. Secret values never appear (sealed or literal ones read `(secret)`).",
        )
        .body(plan_body.clone(), false)
        .json(
            200,
            "the plan: hub, hub_exists, base_version, prune, changes [{kind, name, action, fields [{path, before, after}]}], unmanaged, drift, notes, warnings",
            free("a plan"),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/apply"),
            tag,
            write,
            "Apply a definitions document in one transaction (sluice)",
        )
        .description(
            "Applies what `plan` shows, all or nothing, when the hub is still at `base_version` \
             (the plan's); a hub changed since is refused with F_JA0409 and nothing changes. \
             ReadWrite on the hub; HubOwner when the hub's description changes; SysAdmin to \
             create the hub. Literal secrets are sealed; a sealed secret the document leaves out \
             is kept unless the location now points elsewhere.",
        )
        .body(plan_body, false)
        .json(
            200,
            "applied: hub, version (after), ev_id, changes, notes",
            free("what was applied"),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{D}/file"),
            tag,
            read,
            "Export definitions in the definitions file schema (sluice)",
        )
        .description(
            "The document `sluice validate/plan/apply` read. Secrets appear only as `${VAR}` \
             references: sealed ones are left out and listed in `left_out`.",
        )
        .query(
            "channels",
            string(),
            "only the channels matching this pattern (`sales_*`) and the locations they use",
        )
        .json(
            200,
            "{document, left_out}",
            free("the document and what was left out"),
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let channels = doc.schema::<hvr::Channels>();
    let channel = doc.schema::<hvr::Channel>();
    let new_channel = doc.schema::<hvr::NewChannel>();
    let channel_in = doc.schema::<hvr::ChannelIn>();
    let channel_change = doc.schema::<hvr::ChannelChange>();
    let fetch = "parts: tables, cols, loc_groups, members, actions (or channel_actions)";
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{D}/channels"),
            tag,
            read,
            "List channels",
        )
        .query_list("fetch", fetch)
        .query_list("channel", "only these channels")
        .json(
            200,
            "channels by name (only descriptions unless fetched)",
            channels,
        )
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/channels"),
            tag,
            write,
            "Create a channel",
        )
        .body(new_channel, false)
        .empty(201, "created")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Get, C, tag, read, "One channel")
            .query_list("fetch", fetch)
            .json(
                200,
                "the channel (everything unless fetch narrows it)",
                channel,
            )
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Put, C, tag, write, "Add or replace a channel")
            .body(channel_in, true)
            .empty(204, "replaced")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            C,
            tag,
            write,
            "Change a channel's description",
        )
        .body(channel_change, true)
        .empty(204, "changed")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Delete, C, tag, write, "Delete a channel")
            .empty(204, "deleted")
            .errors(Face::Hvr, HVR_ERRORS),
    );

    let tables = doc.schema::<hvr::Tables>();
    let table = doc.schema::<hvr::Table>();
    let new_table = doc.schema::<hvr::NewTable>();
    let tables_in = doc.schema::<hvr::TablesIn>();
    let table_in = doc.schema::<hvr::TableIn>();
    let table_change = doc.schema::<hvr::TableChange>();
    let names = doc.schema::<hvr::TableNames>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/tables"),
            tag,
            read,
            "List tables",
        )
        .query_list("fetch", "cols: with columns")
        .query_list("table", "only these tables")
        .json(200, "tables by name", tables)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/tables"),
            tag,
            write,
            "Add a table",
        )
        .body(new_table, false)
        .empty(201, "added")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{C}/tables"),
            tag,
            write,
            "Add or replace several tables",
        )
        .body(tables_in.clone(), true)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{C}/tables"),
            tag,
            write,
            "Replace the table list",
        )
        .body(tables_in, true)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/tables_delete"),
            tag,
            write,
            "Delete tables",
        )
        .body(names, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Get, T, tag, read, "One table")
            .query_list("fetch", "cols: with columns (the default)")
            .json(200, "the table", table)
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Put, T, tag, write, "Add or replace a table")
            .body(table_in, true)
            .empty(204, "replaced")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            T,
            tag,
            write,
            "Change base_name / table_group",
        )
        .body(table_change, true)
        .empty(204, "changed")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Delete, T, tag, write, "Delete a table")
            .empty(204, "deleted")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    let cols = doc.schema::<hvr::Columns>();
    let cols_in = doc.schema::<hvr::ColumnsIn>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{T}/cols"),
            tag,
            read,
            "A table's columns",
        )
        .json(200, "columns by name", cols)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{T}/cols"),
            tag,
            write,
            "Add or replace columns",
        )
        .body(cols_in.clone(), true)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{T}/cols"),
            tag,
            write,
            "Replace the columns",
        )
        .body(cols_in, true)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let groups = doc.schema::<hvr::LocGroups>();
    let group = doc.schema::<hvr::LocGroup>();
    let new_group = doc.schema::<hvr::NewLocGroup>();
    let members_in = doc.schema::<hvr::MembersIn>();
    let members = doc.schema::<hvr::Members>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/loc_groups"),
            tag,
            read,
            "Location groups",
        )
        .query_list("fetch", "members: with members (the default)")
        .json(200, "groups by name", groups)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/loc_groups"),
            tag,
            write,
            "Add a location group",
        )
        .body(new_group, false)
        .empty(201, "added")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Get, G, tag, read, "One location group")
            .json(200, "the group", group)
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            G,
            tag,
            write,
            "Add or replace a location group",
        )
        .body(members_in.clone(), true)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Delete, G, tag, write, "Delete a location group")
            .empty(204, "deleted")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{G}/members"),
            tag,
            read,
            "Members",
        )
        .json(200, "the members", members)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{G}/members"),
            tag,
            write,
            "Add members (moved from other groups)",
        )
        .body(members_in.clone(), true)
        .empty(204, "added")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{G}/members"),
            tag,
            write,
            "Replace members",
        )
        .body(members_in, true)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let action = doc.schema::<hvr::Action>();
    let actions_out: RefOr<Schema> = ArrayBuilder::new().items(action).build().into();
    let actions = doc.schema::<hvr::ActionList>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{C}/actions"),
            tag,
            read,
            "Actions",
        )
        .query_list("action_type", "only actions of these types")
        .json(200, "the actions", actions_out)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{C}/actions"),
            tag,
            write,
            "Append actions",
        )
        .body(actions.clone(), false)
        .empty(204, "appended")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Put,
            &format!("{C}/actions"),
            tag,
            write,
            "Replace the action list",
        )
        .body(actions.clone(), false)
        .empty(204, "replaced")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{C}/actions_delete"),
            tag,
            write,
            "Delete actions by exact match",
        )
        .body(actions, false)
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_ERRORS),
    );

    let locs = doc.schema::<hvr::Locations>();
    let loc = doc.schema::<hvr::Location>();
    let new_loc = doc.schema::<hvr::NewLocation>();
    let loc_in = doc.schema::<hvr::LocationIn>();
    let loc_props = doc.schema::<hvr::LocProps>();
    let loc_props_change = doc.schema::<hvr::LocPropsChange>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{D}/locs"),
            tag,
            read,
            "List locations",
        )
        .query_list("fetch", "loc_props: with properties")
        .query_list("loc", "only these locations")
        .json(200, "locations by name", locs)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/locs"),
            tag,
            write,
            "Create a location (passwords stored encrypted)",
        )
        .body(new_loc, false)
        .empty(201, "created")
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            L,
            tag,
            read,
            "One location (secrets left out)",
        )
        .json(200, "the location", loc)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Put, L, tag, write, "Add or replace a location")
            .description("Sealed secrets the new properties leave out are kept.")
            .body(loc_in, true)
            .empty(204, "replaced")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(HttpMethod::Delete, L, tag, write, "Delete a location")
            .empty(204, "deleted")
            .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{L}/props"),
            tag,
            read,
            "A location's properties",
        )
        .json(200, "properties by name (secrets left out)", loc_props)
        .errors(Face::Hvr, HVR_ERRORS),
    );
    doc.add(
        Op::new(
            HttpMethod::Patch,
            &format!("{L}/props"),
            tag,
            write,
            "Set location properties (null deletes)",
        )
        .body(loc_props_change, true)
        .empty(204, "set")
        .errors(Face::Hvr, HVR_ERRORS),
    );

    definition_more(doc, new_name);
}

/// Renames, deletes by name, location copy, hub and location actions, `action_modify` /
/// `action_replace`, import analysis and the change history.
fn definition_more(doc: &mut Doc, new_name: RefOr<Schema>) {
    const D: &str = "/api/latest/hubs/{hub}/definition";
    const C: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}";
    const T: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/tables/{table}";
    const G: &str = "/api/latest/hubs/{hub}/definition/channels/{channel}/loc_groups/{group}";
    const L: &str = "/api/latest/hubs/{hub}/definition/locs/{loc}";
    let read = Auth::Bearer("ReadOnly");
    let write = Auth::Bearer("ReadWrite");
    let tag = "definition";
    let post = |doc: &mut Doc, path: String, summary: &str, body: RefOr<Schema>, status: u16| {
        doc.add(
            Op::new(HttpMethod::Post, &path, tag, write, summary)
                .body(body, false)
                .empty(status, if status == 201 { "done" } else { "changed" })
                .errors(Face::Hvr, HVR_WRITE_ERRORS),
        );
    };
    let renames = [
        (
            format!("{C}/rename"),
            "Rename a channel (groups, tables, actions kept)",
        ),
        (
            format!("{T}/rename"),
            "Rename a table (columns and the actions scoped to it kept)",
        ),
        (
            format!("{G}/rename"),
            "Rename a location group (members and the actions scoped to it kept)",
        ),
        (
            format!("{L}/rename"),
            "Rename a location (its memberships, action scopes and actions kept)",
        ),
        (
            format!("{L}/copy"),
            "Copy a location (properties, sealed secrets and actions)",
        ),
    ];
    for (path, summary) in renames {
        post(doc, path, summary, new_name.clone(), 201);
    }
    let cols = doc.schema::<hvr::ColNames>();
    post(doc, format!("{T}/cols_delete"), "Delete columns", cols, 204);
    let members = doc.schema::<hvr::MemberNames>();
    post(
        doc,
        format!("{G}/members_delete"),
        "Delete members",
        members,
        204,
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            &format!("{G}/members/{{member}}"),
            tag,
            write,
            "Delete a member",
        )
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_WRITE_ERRORS),
    );
    let props = doc.schema::<hvr::PropNames>();
    post(
        doc,
        format!("{L}/props_delete"),
        "Delete location properties",
        props,
        204,
    );
    doc.add(
        Op::new(
            HttpMethod::Delete,
            &format!("{L}/props/{{prop}}"),
            tag,
            write,
            "Delete a location property",
        )
        .empty(204, "deleted")
        .errors(Face::Hvr, HVR_WRITE_ERRORS),
    );

    let action = doc.schema::<hvr::UnscopedAction>();
    let list_out: RefOr<Schema> = ArrayBuilder::new().items(action).build().into();
    let list_in = doc.schema::<hvr::UnscopedActionList>();
    for (base, whose, delete) in [
        (
            format!("{D}/hub_actions"),
            "the hub",
            format!("{D}/hub_actions_delete"),
        ),
        (
            format!("{L}/actions"),
            "a location",
            format!("{L}/actions_delete"),
        ),
    ] {
        doc.add(
            Op::new(
                HttpMethod::Get,
                &base,
                tag,
                read,
                &format!("Actions of {whose}"),
            )
            .query_list("action_type", "only actions of these types")
            .json(200, "the actions", list_out.clone())
            .errors(Face::Hvr, HVR_ERRORS),
        );
        for (method, summary) in [
            (HttpMethod::Patch, format!("Append actions of {whose}")),
            (HttpMethod::Put, format!("Replace the actions of {whose}")),
        ] {
            doc.add(
                Op::new(method, &base, tag, write, &summary)
                    .body(list_in.clone(), false)
                    .empty(204, "changed")
                    .errors(Face::Hvr, HVR_WRITE_ERRORS),
            );
        }
        post(
            doc,
            delete,
            &format!("Delete actions of {whose} by exact match"),
            list_in.clone(),
            204,
        );
    }
    let change = doc.schema::<hvr::ActionChange>();
    post(
        doc,
        format!("{D}/action_modify"),
        "Change one action's scopes or params (null deletes a param)",
        change.clone(),
        204,
    );
    post(
        doc,
        format!("{D}/action_replace"),
        "Replace one action's scopes and params",
        change,
        204,
    );
    let import = doc.schema::<hvr::Import>();
    let imported = doc.schema::<hvr::Imported>();
    doc.add(
        Op::new(
            HttpMethod::Post,
            &format!("{D}/import/analyze"),
            tag,
            read,
            "What an import would change, without changing it",
        )
        .body(import, false)
        .json(200, "counts by kind of change", imported)
        .errors(Face::Hvr, HVR_WRITE_ERRORS),
    );
    let events = doc.schema::<hvr::ChangeEvents>();
    doc.add(
        Op::new(
            HttpMethod::Get,
            &format!("{D}/change/events"),
            tag,
            read,
            "Definition changes recorded by events, oldest first",
        )
        .query(
            "direction",
            string(),
            "redo (the default; undo is not supported)",
        )
        .query_list("channel", "only changes of these channels")
        .query_list("loc", "only changes of these locations")
        .query_list("ev_id", "only these events")
        .query("ev_tstamp_begin", string(), "from this time (ISO-8601)")
        .query("ev_tstamp_end", string(), "until this time (ISO-8601)")
        .json(200, "the changes", events)
        .errors(Face::Hvr, HVR_ERRORS),
    );
}
