//! Events as HVR lists them: with the subtask counts of a job's event, counted by type, channel
//! or location, and across the hubs a caller may read.

use std::collections::BTreeMap;

use sluice_model::event::table_state;
use sluice_model::{HubName, ResultName};
use sluice_repo::{EventFilter, EventRecord, EventResult};

use crate::{HubService, Result};

/// What [`HubService::event_counts`] counts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFacet {
    /// The event type (`Refresh`, `Hub_Create`, …).
    Type,
    /// The channel (events without one are not counted).
    Channel,
    /// The location, as `loc` or `loc2` (events without one are not counted).
    Location,
}

/// The events [`HubService::event_counts`] reads at most, newest first.
pub const MAX_COUNTED_EVENTS: usize = 100_000;

const SUBTASKS: [ResultName; 3] = [
    ResultName::SubtasksDone,
    ResultName::SubtasksTotal,
    ResultName::SubtasksBusy,
];

/// The subtask results of an event whose tables are its subtasks (a refresh or compare: one
/// per table), from their `Table_State` results.
fn subtask_results(results: &[EventResult]) -> Vec<EventResult> {
    let states: Vec<&str> = results
        .iter()
        .filter(|r| r.name == ResultName::TableState && r.table.is_some())
        .map(|r| r.value.as_str())
        .collect();
    if states.is_empty() {
        return Vec::new();
    }
    let done = states
        .iter()
        .filter(|s| s.starts_with(table_state::DONE))
        .count();
    let busy = states
        .iter()
        .filter(|s| s.starts_with(table_state::BUSY))
        .count();
    [
        (ResultName::SubtasksDone, done),
        (ResultName::SubtasksTotal, states.len()),
        (ResultName::SubtasksBusy, busy),
    ]
    .into_iter()
    .map(|(name, n)| EventResult {
        table: None,
        name,
        value: n.to_string(),
    })
    .collect()
}

impl HubService {
    /// Events matching `filter`, newest first; with results, an event whose tables are its
    /// subtasks also reports `Subtasks_Done`, `Subtasks_Total` and `Subtasks_Busy` (derived
    /// from its tables' `Table_State`, so they hold for events stored before they existed).
    pub async fn hvr_events(&self, filter: &EventFilter) -> Result<Vec<EventRecord>> {
        let wanted = filter.result_names.clone();
        let wants_subtasks = filter.fetch_results
            && (wanted.is_empty() || wanted.iter().any(|n| SUBTASKS.contains(n)));
        let mut query = filter.clone();
        if wants_subtasks && !wanted.is_empty() && !wanted.contains(&ResultName::TableState) {
            query.result_names.push(ResultName::TableState);
        }
        // Subtask counts are not stored, so a filter on them alone must not drop the event.
        query.result_names.retain(|n| !SUBTASKS.contains(n));
        if !wanted.is_empty() && query.result_names.is_empty() {
            query.result_names.push(ResultName::TableState);
        }
        let mut events = self.job_store().events(&query).await?;
        if wants_subtasks {
            for e in &mut events {
                let derived = subtask_results(&e.results);
                e.results.extend(derived);
                if !wanted.is_empty() {
                    e.results.retain(|r| wanted.contains(&r.name));
                }
            }
        }
        Ok(events)
    }

    /// How many events of `hub` match `filter`, by `facet` (HVR's `event_types`,
    /// `event_channels`, `event_locs`); at most the newest [`MAX_COUNTED_EVENTS`] are counted.
    pub async fn event_counts(
        &self,
        hub: &HubName,
        filter: &EventFilter,
        facet: EventFacet,
    ) -> Result<BTreeMap<String, u64>> {
        self.hub(hub).await?;
        let mut query = filter.clone();
        query.hub = Some(hub.clone());
        query.fetch_results = false;
        query.max_events = Some(MAX_COUNTED_EVENTS);
        let events = self.job_store().events(&query).await?;
        let mut counts = BTreeMap::new();
        for e in &events {
            let keys: Vec<String> = match facet {
                EventFacet::Type => vec![e.event_type.to_string()],
                EventFacet::Channel => e.channel.iter().map(|c| c.to_string()).collect(),
                EventFacet::Location => {
                    let mut locs: Vec<String> = e
                        .loc
                        .iter()
                        .chain(e.loc2.iter())
                        .map(|l| l.to_string())
                        .collect();
                    locs.dedup();
                    locs
                }
            };
            for k in keys {
                *counts.entry(k).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }

    /// Events of every hub in `hubs` matching `filter` (its `hub` is ignored), newest first, at
    /// most `filter.max_events` in all.
    pub async fn events_of_hubs(
        &self,
        hubs: &[HubName],
        filter: &EventFilter,
    ) -> Result<Vec<EventRecord>> {
        let mut all = Vec::new();
        for hub in hubs {
            let mut query = filter.clone();
            query.hub = Some(hub.clone());
            all.extend(self.job_store().events(&query).await?);
        }
        all.sort_by_key(|e| std::cmp::Reverse(e.id));
        if let Some(max) = filter.max_events {
            all.truncate(max);
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_model::TableName;

    fn state(table: &str, value: &str) -> EventResult {
        EventResult {
            table: Some(TableName::new(table).unwrap()),
            name: ResultName::TableState,
            value: value.into(),
        }
    }

    #[test]
    fn subtasks_count_the_tables() {
        let r = subtask_results(&[
            state("a", "DONE"),
            state("b", "DONE/DIFFERENT"),
            state("c", "BUSY"),
            state("d", "FAILED"),
        ]);
        let get = |n: ResultName| r.iter().find(|x| x.name == n).unwrap().value.clone();
        assert_eq!(get(ResultName::SubtasksDone), "2");
        assert_eq!(get(ResultName::SubtasksTotal), "4");
        assert_eq!(get(ResultName::SubtasksBusy), "1");
        assert!(subtask_results(&[]).is_empty());
    }
}
