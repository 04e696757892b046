//! Users, passwords and tokens of the hub server.
