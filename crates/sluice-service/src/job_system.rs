//! The job system's attributes and environment variables, of the hub's `SYSTEM` job group and of
//! each job (HVR's `hvr_job_attribute`), kept in the repository's property bags.
//!
//! sluice keeps them as HVR clients set them; it does not act on them: its scheduler runs each
//! event-driven job once per event, with no quotas, triggers or time-outs. Environment
//! variables are passed to nothing: a sluice job runs no child process (no `Transform` or
//! `AgentPlugin` command), and they are deliberately kept out of the `${VAR}` references of
//! location properties, which would otherwise let a user with job rights redirect where a
//! location's password is sent.

use std::collections::BTreeMap;

use serde_json::{Value as Json, json};
use sluice_model::{HubName, JobName};
use sluice_repo::{PropBag, PropWrite};

use crate::{HubService, Result, ServiceError};

/// Job attribute names HVR documents (`hvrstart` and the scheduler's job attributes); `set`
/// (an environment variable) has its own operations.
pub const JOB_ATTRIBUTES: &[&str] = &[
    "quota_run",
    "quota_children",
    "quota_speed",
    "trig_delay",
    "trig_crono",
    "trig_at",
    "retry_max",
    "retry_delay",
    "timeo_soft",
    "timeo_hard",
];

/// The longest value of an attribute argument or environment variable kept.
pub const MAX_VALUE_LEN: usize = 4096;
/// The longest environment variable name kept.
pub const MAX_ENV_NAME_LEN: usize = 128;

/// One attribute's arguments: `arg1`, and `arg2` for those that take two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobAttribute {
    /// The first argument.
    pub arg1: String,
    /// The second argument.
    pub arg2: Option<String>,
}

/// Whose attributes: the hub's `SYSTEM` job group, or one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobScope {
    /// The `SYSTEM` job group of the hub (every job).
    System,
    /// One job.
    Job(JobName),
}

fn check_value(what: &str, value: &str) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(ServiceError::invalid(format!(
            "{what}: {} bytes long; the limit is {MAX_VALUE_LEN}",
            value.len()
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(ServiceError::invalid(format!(
            "{what}: control characters are not allowed"
        )));
    }
    Ok(())
}

/// Checks an attribute name against HVR's list.
pub fn check_attribute_name(name: &str) -> Result<()> {
    if JOB_ATTRIBUTES.contains(&name) {
        Ok(())
    } else if name == "set" {
        Err(ServiceError::invalid(
            "attr: set is an environment variable; use …/env_vars/{var}",
        ))
    } else {
        Err(ServiceError::invalid(format!(
            "attr: unknown job attribute {name:?} (known: {})",
            JOB_ATTRIBUTES.join(", ")
        )))
    }
}

/// Checks an environment variable name: a letter or `_`, then letters, digits or `_`.
pub fn check_env_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = name.len() <= MAX_ENV_NAME_LEN
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!(
            "var: {name:?} is not an environment variable name (a letter or _, then letters, \
             digits or _, at most {MAX_ENV_NAME_LEN})"
        )))
    }
}

impl HubService {
    async fn scope_bags(&self, hub: &HubName, scope: &JobScope) -> Result<(PropBag, PropBag)> {
        self.hub(hub).await?;
        Ok(match scope {
            JobScope::System => (
                PropBag::JobSystemAttributes(hub.clone()),
                PropBag::JobSystemEnv(hub.clone()),
            ),
            JobScope::Job(job) => {
                if self.job_store().job(hub, job).await?.is_none() {
                    return Err(ServiceError::not_found(format!("job {job} does not exist")));
                }
                (
                    PropBag::JobAttributes(hub.clone(), job.clone()),
                    PropBag::JobEnv(hub.clone(), job.clone()),
                )
            }
        })
    }

    /// The attributes of `scope`, by name.
    pub async fn job_attributes(
        &self,
        hub: &HubName,
        scope: &JobScope,
    ) -> Result<BTreeMap<String, JobAttribute>> {
        let (bag, _) = self.scope_bags(hub, scope).await?;
        let props = self.props_store().props(&bag).await?.unwrap_or_default();
        Ok(props
            .into_iter()
            .filter_map(|(name, v)| {
                let arg1 = v.get("arg1")?.as_str()?.to_owned();
                let arg2 = v.get("arg2").and_then(Json::as_str).map(str::to_owned);
                Some((name, JobAttribute { arg1, arg2 }))
            })
            .collect())
    }

    /// Sets an attribute of `scope`.
    pub async fn set_job_attribute(
        &self,
        hub: &HubName,
        scope: &JobScope,
        name: &str,
        value: &JobAttribute,
    ) -> Result<()> {
        check_attribute_name(name)?;
        check_value("arg1", &value.arg1)?;
        if let Some(a) = &value.arg2 {
            check_value("arg2", a)?;
        }
        let (bag, _) = self.scope_bags(hub, scope).await?;
        let mut stored = json!({ "arg1": value.arg1 });
        if let Some(a) = &value.arg2 {
            stored["arg2"] = json!(a);
        }
        let changes = BTreeMap::from([(name.to_owned(), Some(stored))]);
        self.props_store()
            .write_props(&bag, &changes, PropWrite::Merge)
            .await?;
        Ok(())
    }

    /// Removes an attribute of `scope` (`NotFound` when it is not set).
    pub async fn delete_job_attribute(
        &self,
        hub: &HubName,
        scope: &JobScope,
        name: &str,
    ) -> Result<()> {
        let (bag, _) = self.scope_bags(hub, scope).await?;
        self.remove_prop(&bag, name, "job attribute").await
    }

    /// The environment variables of `scope`.
    pub async fn job_env_vars(
        &self,
        hub: &HubName,
        scope: &JobScope,
    ) -> Result<BTreeMap<String, String>> {
        let (_, bag) = self.scope_bags(hub, scope).await?;
        let props = self.props_store().props(&bag).await?.unwrap_or_default();
        Ok(props
            .into_iter()
            .filter_map(|(name, v)| Some((name, v.as_str()?.to_owned())))
            .collect())
    }

    /// Sets an environment variable of `scope`.
    pub async fn set_job_env_var(
        &self,
        hub: &HubName,
        scope: &JobScope,
        name: &str,
        value: &str,
    ) -> Result<()> {
        check_env_name(name)?;
        check_value("value", value)?;
        let (_, bag) = self.scope_bags(hub, scope).await?;
        let changes = BTreeMap::from([(name.to_owned(), Some(json!(value)))]);
        self.props_store()
            .write_props(&bag, &changes, PropWrite::Merge)
            .await?;
        Ok(())
    }

    /// Removes an environment variable of `scope` (`NotFound` when it is not set).
    pub async fn delete_job_env_var(
        &self,
        hub: &HubName,
        scope: &JobScope,
        name: &str,
    ) -> Result<()> {
        let (_, bag) = self.scope_bags(hub, scope).await?;
        self.remove_prop(&bag, name, "environment variable").await
    }

    async fn remove_prop(&self, bag: &PropBag, name: &str, what: &str) -> Result<()> {
        let present = self
            .props_store()
            .props(bag)
            .await?
            .is_some_and(|p| p.contains_key(name));
        if !present {
            return Err(ServiceError::not_found(format!(
                "{what} {name:?} is not set"
            )));
        }
        let changes = BTreeMap::from([(name.to_owned(), None)]);
        self.props_store()
            .write_props(bag, &changes, PropWrite::MergeExisting)
            .await?;
        Ok(())
    }

    /// Deletes the attributes and environment of a job (with the job).
    pub(crate) async fn delete_job_props(&self, hub: &HubName, job: &JobName) -> Result<()> {
        self.props_store()
            .delete_bag(&PropBag::JobAttributes(hub.clone(), job.clone()))
            .await?;
        self.props_store()
            .delete_bag(&PropBag::JobEnv(hub.clone(), job.clone()))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_attribute_name("quota_run").is_ok());
        assert!(check_attribute_name("set").is_err());
        assert!(check_attribute_name("../etc").is_err());
        assert!(check_env_name("HVR_TMP").is_ok());
        assert!(check_env_name("_x1").is_ok());
        assert!(check_env_name("1x").is_err());
        assert!(check_env_name("A=B").is_err());
        assert!(check_env_name("").is_err());
        assert!(check_value("v", "a\nb").is_err());
    }
}
