//! The location properties HVR 6 documents for the classes sluice serves
//! (<https://fivetran.com/docs/hvr6/property-reference/location-properties>).
//!
//! A location may carry every property HVR documents for its class: an HVR client that defines
//! `Capture_Method`, `Agent_Host` or `Case_Sensitive_Names` on a PostgreSQL location has them
//! accepted and kept as given. The connector of the class says which of them sluice acts on (its
//! `PropertySpec` list); the others are stored and listed as stored, and the location test names
//! them as not used. A name in neither list is refused.

use crate::definition::LocationClass;

/// Which classes a documented property applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyScope {
    /// Every database class sluice serves.
    Database,
    /// Only these classes.
    Only(&'static [LocationClass]),
}

/// One location property HVR documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvrLocationProperty {
    /// The name, as HVR spells it.
    pub name: &'static str,
    /// The classes it applies to.
    pub scope: PropertyScope,
    /// Whether HVR discovers it when it connects (clients may still send it back).
    pub discovered: bool,
}

const PG: &[LocationClass] = &[LocationClass::Postgresql];
const MY: &[LocationClass] = &[LocationClass::Mariadb];
const SERVER: &[LocationClass] = &[LocationClass::Postgresql, LocationClass::Mariadb];

const fn p(name: &'static str, scope: PropertyScope) -> HvrLocationProperty {
    HvrLocationProperty {
        name,
        scope,
        discovered: false,
    }
}

const fn d(name: &'static str, scope: PropertyScope) -> HvrLocationProperty {
    HvrLocationProperty {
        name,
        scope,
        discovered: true,
    }
}

use PropertyScope::{Database as ALL, Only};

/// The properties HVR documents for PostgreSQL, MySQL/MariaDB and SQLite locations, and those it
/// documents for every database location (agent, capture, discovered facts).
pub const HVR_LOCATION_PROPERTIES: &[HvrLocationProperty] = &[
    // Connection to the database.
    p("Database_Host", Only(SERVER)),
    p("Database_Port", Only(SERVER)),
    p("Database_Name", ALL),
    p("Database_User", Only(SERVER)),
    p("Database_Password", Only(SERVER)),
    p("Database_Schema", Only(SERVER)),
    p("Database_Public_Certificate", Only(SERVER)),
    p("Database_Client_Public_Certificate", Only(SERVER)),
    p("Database_Client_Private_Key", Only(SERVER)),
    p("Database_Client_Private_Key_Password", Only(SERVER)),
    p("Description", ALL),
    // The HVR agent in front of the database.
    p("Agent_Host", ALL),
    p("Agent_Port", ALL),
    p("Agent_User", ALL),
    p("Agent_Password", ALL),
    p("Agent_Client_Kerberos_Keytab", ALL),
    p("Agent_Client_Kerberos_Principal", ALL),
    p("Agent_Client_Kerberos_Ticket_Cache", ALL),
    p("Agent_Server_Kerberos_Principal", ALL),
    d("Agent_Server_Public_Certificate", ALL),
    d("Agent_Fingerprint", ALL),
    d("Agent_HVR_CONFIG", ALL),
    d("Agent_HVR_HOME", ALL),
    d("Agent_Operating_System", ALL),
    d("Agent_Platform", ALL),
    d("Agent_Version", ALL),
    // Capture.
    p("Capture_Method", ALL),
    d("Capture_Method_Unavailable", ALL),
    p("Capture_Checkpoint_Frequency", ALL),
    p("Capture_Checkpoint_Retention", ALL),
    p("Capture_Checkpoint_Storage", ALL),
    p("Key_Only_Trigger_Tables", ALL),
    p("Trigger_Quick_Toggle", ALL),
    p("Trigger_Toggle_Frequency", ALL),
    p("Supplemental_Logging", ALL),
    d("Supplemental_Logging_Unavailable", ALL),
    p("Case_Sensitive_Names", Only(SERVER)),
    p("Intermediate_Directory", ALL),
    p("Intermediate_Directory_Is_Local", ALL),
    // Discovered facts about the database.
    d("Class_Flavor", ALL),
    d("Class_Version", ALL),
    d("Database_Char_Encoding", ALL),
    d("Database_Nchar_Encoding", ALL),
    d("Database_Default_Case", ALL),
    d("Database_Default_Schema", ALL),
    // PostgreSQL.
    p("Force_Case", Only(PG)),
    p("PostgreSQL_Pglib", Only(PG)),
    p("PostgreSQL_XLog", Only(PG)),
    p("Publication_Name", Only(PG)),
    p("Replication_Slot_Name", Only(PG)),
    // MySQL / MariaDB.
    p("MySQL_CA_Certificate_File", Only(MY)),
    p("MySQL_Client_Pub_Cert_File", Only(MY)),
    p("MySQL_Client_Priv_Key_File", Only(MY)),
    p("MySQL_Server_Pub_Key_File", Only(MY)),
    p("MySQL_SSL_Cipher", Only(MY)),
    p("MySQL_SSL_CRL_File", Only(MY)),
    p("MySQL_SSL_Min_TLS_Version", Only(MY)),
    p("MySQL_Use_SSL", Only(MY)),
    p("Staging_Directory", Only(MY)),
    p("Staging_Directory_Database", Only(MY)),
    p("Staging_Directory_Is_Local", Only(MY)),
];

impl HvrLocationProperty {
    /// Whether the property applies to `class`.
    pub fn applies_to(&self, class: LocationClass) -> bool {
        match self.scope {
            PropertyScope::Database => true,
            PropertyScope::Only(classes) => classes.contains(&class),
        }
    }
}

/// The property `name` as HVR documents it for `class`, if it does.
pub fn hvr_location_property(
    class: LocationClass,
    name: &str,
) -> Option<&'static HvrLocationProperty> {
    HVR_LOCATION_PROPERTIES
        .iter()
        .find(|p| p.name == name && p.applies_to(class))
}

/// The names of the properties HVR documents for `class`.
pub fn hvr_location_properties(class: LocationClass) -> impl Iterator<Item = &'static str> {
    HVR_LOCATION_PROPERTIES
        .iter()
        .filter(move |p| p.applies_to(class))
        .map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_properties_hvr_clients_send_are_documented() {
        for name in [
            "Capture_Method",
            "Agent_Host",
            "Agent_Port",
            "Case_Sensitive_Names",
        ] {
            assert!(
                hvr_location_property(LocationClass::Postgresql, name).is_some(),
                "{name}"
            );
        }
        assert!(hvr_location_property(LocationClass::Mariadb, "MySQL_Use_SSL").is_some());
        assert!(hvr_location_property(LocationClass::Postgresql, "MySQL_Use_SSL").is_none());
        assert!(hvr_location_property(LocationClass::Sqlite, "Replication_Slot_Name").is_none());
        assert!(hvr_location_property(LocationClass::Postgresql, "Databse_User").is_none());
    }

    #[test]
    fn no_property_is_listed_twice() {
        let mut names: Vec<&str> = HVR_LOCATION_PROPERTIES.iter().map(|p| p.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
    }
}
