//! Alerts (HVR's Alert Interface): rules on event types and job states, kept as property bags
//! (`PropBag::Alert`), delivered on the event hub topic `sluice.alert`.
//!
//! A rule is evaluated where the hub server publishes a change: as each event or job state
//! change goes out on `sluice.event` or `sluice.job` (see [`crate::publish`]), the rules of
//! its hub are matched, so a notification comes from the node that made the change, once.
//!
//! Props a client sets: `Description`; `Event_Types` (event types, `*` for any), with
//! `Event_States` (default `FAILED`); `Job_States` (job states such as `FAILED`); `Channels` (only
//! these; default all); `Disabled` (`1` or `true`). Lists are strings of names separated by
//! commas or blanks, or arrays of names. Props sluice keeps: `Alert_State` (`RAISED` after a
//! notification, `CLEAR` after a clear), `Last_Notification`, `Notification_Count`.

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Value as Json, json};
use sluice_events::topic::ALERT_TOPIC;
use sluice_events::{Actor, EventHub, NewEvent as HubEvent, RoutingKey, TopicName};
use sluice_model::{EventState, EventType, HubName};
use sluice_repo::{PropBag, PropBagKind, PropStore, PropWrite};

use crate::{HubService, Result, ServiceError};

/// Props a client sets.
pub const ALERT_PROPS: &[&str] = &[
    "Description",
    "Event_Types",
    "Event_States",
    "Job_States",
    "Channels",
    "Disabled",
];

/// Props sluice keeps about an alert's notifications.
pub const ALERT_STATE_PROPS: &[&str] = &["Alert_State", "Last_Notification", "Notification_Count"];

const JOB_STATES: &[&str] = &["PENDING", "RUNNING", "FAILED", "RETRY", "SUSPEND", "DONE"];

type Props = BTreeMap<String, Json>;

/// Checks an alert name: a letter or `_`, then letters, digits or `_`, at most 64.
pub fn check_alert_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= 64
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::not_found(format!(
            "alert {name:?} does not exist (alert names are identifiers)"
        )))
    }
}

fn names(value: &Json) -> Option<Vec<String>> {
    match value {
        Json::String(s) => Some(
            s.split([',', ' ', '\t'])
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
                .collect(),
        ),
        Json::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => None,
    }
}

fn flag(value: &Json) -> Option<bool> {
    match value {
        Json::Bool(b) => Some(*b),
        Json::Number(n) => n.as_i64().map(|n| n != 0),
        Json::String(s) => match s.to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// Checks props a client sets (`None` removes one).
fn check_props(props: &BTreeMap<String, Option<Json>>) -> Result<()> {
    for (name, value) in props {
        if ALERT_STATE_PROPS.contains(&name.as_str()) {
            return Err(ServiceError::invalid(format!(
                "{name}: kept by sluice; clear an alert with …/clear"
            )));
        }
        if !ALERT_PROPS.contains(&name.as_str()) {
            return Err(ServiceError::invalid(format!(
                "{name}: not an alert property (known: {})",
                ALERT_PROPS.join(", ")
            )));
        }
        let Some(value) = value else { continue };
        let bad = |why: String| Err(ServiceError::invalid(format!("{name}: {why}")));
        match name.as_str() {
            "Description" => {
                if !value.is_string() || value.as_str().is_some_and(|s| s.len() > 1000) {
                    return bad("a text of at most 1000 bytes".into());
                }
            }
            "Disabled" => {
                if flag(value).is_none() {
                    return bad("1, 0, true or false".into());
                }
            }
            _ => {
                let Some(list) = names(value).filter(|l| l.len() <= 100) else {
                    return bad("names separated by commas, or an array of names".into());
                };
                for item in &list {
                    let known = match name.as_str() {
                        "Event_Types" => item == "*" || item.parse::<EventType>().is_ok(),
                        "Event_States" => item.parse::<EventState>().is_ok(),
                        "Job_States" => JOB_STATES.contains(&item.as_str()),
                        _ => sluice_model::ChannelName::new(item).is_ok(),
                    };
                    if !known {
                        return bad(format!("{item:?} is not known here"));
                    }
                }
            }
        }
    }
    Ok(())
}

/// An alert's rule, from its props.
#[derive(Debug, Default)]
struct Rule {
    event_types: Vec<String>,
    event_states: Vec<String>,
    job_states: Vec<String>,
    channels: Vec<String>,
    disabled: bool,
}

impl Rule {
    fn of(props: &Props) -> Rule {
        let list = |n: &str| props.get(n).and_then(names).unwrap_or_default();
        let mut event_states = list("Event_States");
        if event_states.is_empty() {
            event_states.push(EventState::Failed.as_str().to_owned());
        }
        Rule {
            event_types: list("Event_Types"),
            event_states,
            job_states: list("Job_States"),
            channels: list("Channels"),
            disabled: props.get("Disabled").and_then(flag).unwrap_or(false),
        }
    }

    fn channel_ok(&self, payload: &Json) -> bool {
        self.channels.is_empty()
            || payload["channel"]
                .as_str()
                .is_some_and(|c| self.channels.iter().any(|x| x == c))
    }

    /// Why a message of `topic` fires this rule, if it does.
    fn fires(&self, topic: &str, payload: &Json) -> Option<String> {
        if self.disabled || !self.channel_ok(payload) {
            return None;
        }
        let state = payload["state"].as_str()?;
        if topic == sluice_events::topic::EVENT_TOPIC {
            let kind = payload["type"].as_str()?;
            let typed = self.event_types.iter().any(|t| t == "*" || t == kind);
            (typed && self.event_states.iter().any(|s| s == state))
                .then(|| format!("event {kind} {state}"))
        } else if topic == sluice_events::topic::JOB_TOPIC {
            self.job_states
                .iter()
                .any(|s| s == state)
                .then(|| format!("job {state}"))
        } else {
            None
        }
    }
}

/// Publishes a notification of `alert` and records it in the alert's props.
async fn notify(
    props: &dyn PropStore,
    events: &EventHub,
    hub: &HubName,
    alert: &str,
    reason: &str,
    cause: Json,
) -> Result<()> {
    let now = Utc::now();
    let payload = json!({
        "hub": hub.as_str(),
        "alert": alert,
        "reason": reason,
        "cause": cause,
        "tstamp": now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    });
    let event = HubEvent {
        topic: TopicName::new(ALERT_TOPIC).expect("built-in topic names are valid"),
        routing_key: RoutingKey::from_words([hub.as_str(), alert]),
        payload,
        id: None,
    };
    events
        .publish(vec![event], &Actor::system())
        .await
        .map_err(|e| ServiceError::invalid(format!("the alert could not be delivered: {e}")))?;
    let bag = PropBag::Alert(hub.clone(), alert.to_owned());
    let count = props
        .props(&bag)
        .await?
        .and_then(|p| p.get("Notification_Count").and_then(Json::as_i64))
        .unwrap_or(0);
    let changes = BTreeMap::from([
        ("Alert_State".to_owned(), Some(json!("RAISED"))),
        (
            "Last_Notification".to_owned(),
            Some(json!(
                now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            )),
        ),
        ("Notification_Count".to_owned(), Some(json!(count + 1))),
    ]);
    props
        .write_props(&bag, &changes, PropWrite::MergeExisting)
        .await?;
    Ok(())
}

/// Matches a message published on `topic` against the alerts of its hub and delivers the
/// notifications it fires (the publishing loop calls this for `sluice.event` and `sluice.job`).
pub(crate) async fn evaluate(
    props: &dyn PropStore,
    events: &EventHub,
    topic: &str,
    payload: &Json,
) {
    let Some(hub) = payload["hub"].as_str().and_then(|h| HubName::new(h).ok()) else {
        return;
    };
    let bags = match props.bags(PropBagKind::Alert, Some(&hub)).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "reading alerts failed");
            return;
        }
    };
    for (bag, alert_props) in bags {
        let PropBag::Alert(_, name) = &bag else {
            continue;
        };
        if let Some(reason) = Rule::of(&alert_props).fires(topic, payload)
            && let Err(e) = notify(props, events, &hub, name, &reason, payload.clone()).await
        {
            tracing::warn!(error = %e, alert = %name, "delivering an alert failed");
        }
    }
}

impl HubService {
    fn alert_bag(hub: &HubName, name: &str) -> Result<PropBag> {
        check_alert_name(name)?;
        Ok(PropBag::Alert(hub.clone(), name.to_owned()))
    }

    async fn existing_alert(&self, hub: &HubName, name: &str) -> Result<(PropBag, Props)> {
        self.hub(hub).await?;
        let bag = Self::alert_bag(hub, name)?;
        let props = self
            .props_store()
            .props(&bag)
            .await?
            .ok_or_else(|| ServiceError::not_found(format!("alert {name} does not exist")))?;
        Ok((bag, props))
    }

    fn events_or_fail(&self) -> Result<&EventHub> {
        self.event_hub().ok_or_else(|| {
            ServiceError::invalid("this hub server has no event hub to deliver alerts on")
        })
    }

    /// The alerts of `hub`, by name.
    pub async fn alerts(&self, hub: &HubName) -> Result<Vec<String>> {
        self.hub(hub).await?;
        let bags = self
            .props_store()
            .bags(PropBagKind::Alert, Some(hub))
            .await?;
        Ok(bags
            .into_iter()
            .filter_map(|(bag, _)| match bag {
                PropBag::Alert(_, name) => Some(name),
                _ => None,
            })
            .collect())
    }

    /// Creates an alert (`Conflict` when it exists).
    pub async fn create_alert(&self, hub: &HubName, name: &str, props: &Props) -> Result<()> {
        self.hub(hub).await?;
        let bag = Self::alert_bag(hub, name)
            .map_err(|_| ServiceError::invalid(format!("alert: {name:?} is not an identifier")))?;
        let changes: BTreeMap<String, Option<Json>> = props
            .iter()
            .map(|(k, v)| (k.clone(), Some(v.clone())))
            .collect();
        check_props(&changes)?;
        self.props_store()
            .write_props(&bag, &changes, PropWrite::Create)
            .await?;
        Ok(())
    }

    /// An alert's props, the ones sluice keeps included.
    pub async fn alert_props(&self, hub: &HubName, name: &str) -> Result<Props> {
        Ok(self.existing_alert(hub, name).await?.1)
    }

    /// Changes an alert's props: each set or removed (`replace`: the others a client sets are
    /// removed too; the ones sluice keeps stay).
    pub async fn change_alert_props(
        &self,
        hub: &HubName,
        name: &str,
        changes: &BTreeMap<String, Option<Json>>,
        replace: bool,
    ) -> Result<()> {
        let (bag, current) = self.existing_alert(hub, name).await?;
        check_props(changes)?;
        let mut all = changes.clone();
        if replace {
            for k in current.keys() {
                if ALERT_PROPS.contains(&k.as_str()) && !changes.contains_key(k) {
                    all.insert(k.clone(), None);
                }
            }
        }
        self.props_store()
            .write_props(&bag, &all, PropWrite::MergeExisting)
            .await?;
        Ok(())
    }

    /// Deletes an alert.
    pub async fn delete_alert(&self, hub: &HubName, name: &str) -> Result<()> {
        let (bag, _) = self.existing_alert(hub, name).await?;
        self.props_store().delete_bag(&bag).await?;
        Ok(())
    }

    /// Disables an alert: it fires no more until `Disabled` is set back to 0.
    pub async fn disable_alert(&self, hub: &HubName, name: &str) -> Result<()> {
        let changes = BTreeMap::from([("Disabled".to_owned(), Some(json!(1)))]);
        self.change_alert_props(hub, name, &changes, false).await
    }

    /// Clears an alert's state (`Alert_State` `CLEAR`).
    pub async fn clear_alert(&self, hub: &HubName, name: &str) -> Result<()> {
        let (bag, _) = self.existing_alert(hub, name).await?;
        let changes = BTreeMap::from([("Alert_State".to_owned(), Some(json!("CLEAR")))]);
        self.props_store()
            .write_props(&bag, &changes, PropWrite::MergeExisting)
            .await?;
        Ok(())
    }

    /// Sends a test notification of an alert now (also when it is disabled).
    pub async fn test_alert(&self, hub: &HubName, name: &str) -> Result<()> {
        self.existing_alert(hub, name).await?;
        let events = self.events_or_fail()?;
        notify(
            self.props_store(),
            events,
            hub,
            name,
            "test",
            json!({"user": self.user()}),
        )
        .await
    }

    /// Evaluates an alert now against the current job states and the events since its last
    /// notification; delivers one notification when anything matches. Answers a summary.
    pub async fn execute_alert(&self, hub: &HubName, name: &str) -> Result<String> {
        let (_, props) = self.existing_alert(hub, name).await?;
        let rule = Rule::of(&props);
        if rule.disabled {
            return Ok(format!("alert {name} is disabled: nothing evaluated"));
        }
        let mut causes = Vec::new();
        for job in self.job_store().jobs(hub).await? {
            let payload = json!({
                "hub": hub.as_str(),
                "channel": job.name.channel().as_str(),
                "job": job.name.to_string(),
                "state": job.state.as_str(),
            });
            if rule
                .fires(sluice_events::topic::JOB_TOPIC, &payload)
                .is_some()
            {
                causes.push(payload);
            }
        }
        let since = props
            .get("Last_Notification")
            .and_then(Json::as_str)
            .and_then(|t| t.parse::<chrono::DateTime<Utc>>().ok());
        let recent = self
            .job_store()
            .events(&sluice_repo::EventFilter {
                hub: Some(hub.clone()),
                begin: since,
                max_events: Some(1000),
                ..Default::default()
            })
            .await?;
        for e in recent {
            let payload = json!({
                "hub": hub.as_str(),
                "ev_id": e.id.to_string(),
                "type": e.event_type.as_str(),
                "state": e.state.as_str(),
                "channel": e.channel.as_ref().map(|c| c.as_str()),
                "job": e.job.as_ref().map(|j| j.to_string()),
            });
            if rule
                .fires(sluice_events::topic::EVENT_TOPIC, &payload)
                .is_some()
            {
                causes.push(payload);
            }
        }
        if causes.is_empty() {
            return Ok(format!("alert {name}: nothing matches"));
        }
        let n = causes.len();
        let events = self.events_or_fail()?;
        notify(
            self.props_store(),
            events,
            hub,
            name,
            "execute",
            json!(causes),
        )
        .await?;
        Ok(format!(
            "alert {name}: {n} matching job states and events notified"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_on_what_they_name() {
        let props: Props = [
            ("Event_Types".to_owned(), json!("Refresh")),
            ("Job_States".to_owned(), json!(["FAILED"])),
        ]
        .into();
        let rule = Rule::of(&props);
        let ev = |t: &str, s: &str| json!({"hub": "h", "type": t, "state": s, "channel": "c"});
        let event = sluice_events::topic::EVENT_TOPIC;
        assert!(rule.fires(event, &ev("Refresh", "FAILED")).is_some());
        assert!(rule.fires(event, &ev("Refresh", "DONE")).is_none());
        assert!(rule.fires(event, &ev("Compare", "FAILED")).is_none());
        let job = sluice_events::topic::JOB_TOPIC;
        assert!(rule.fires(job, &json!({"state": "FAILED"})).is_some());
        let mut off = props.clone();
        off.insert("Disabled".into(), json!(1));
        assert!(
            Rule::of(&off)
                .fires(event, &ev("Refresh", "FAILED"))
                .is_none()
        );
    }

    #[test]
    fn props_are_checked() {
        let one = |k: &str, v: Json| BTreeMap::from([(k.to_owned(), Some(v))]);
        assert!(check_props(&one("Event_Types", json!("Refresh, Compare"))).is_ok());
        assert!(check_props(&one("Event_Types", json!("Nope"))).is_err());
        assert!(check_props(&one("Job_States", json!(["FAILED", "RETRY"]))).is_ok());
        assert!(check_props(&one("Alert_State", json!("CLEAR"))).is_err());
        assert!(check_props(&one("Command", json!("rm -rf /"))).is_err());
        assert!(check_props(&one("Disabled", json!("maybe"))).is_err());
        assert!(check_alert_name("a1").is_ok());
        assert!(check_alert_name("../x").is_err());
    }
}
