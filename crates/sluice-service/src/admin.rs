//! Hub administration: hubs, definition edits, jobs and events, as the hub server uses them.
