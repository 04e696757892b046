//! Choosing channels by a shell-style pattern (`sales_*`, `eu_?`, `[ab]*`), as the batch
//! operations and `sluice export --channels` do.

use sluice_model::ChannelName;

use crate::{Result, ServiceError};

/// A pattern over channel names: `*` any run of characters, `?` one character, `[…]` one of a
/// set. A name without those characters matches only itself.
#[derive(Debug, Clone)]
pub struct ChannelSelection {
    text: String,
    pattern: glob::Pattern,
}

impl ChannelSelection {
    /// Parses a pattern; an invalid one (an unclosed `[`) or an empty one is invalid input.
    pub fn parse(text: &str) -> Result<Self> {
        if text.trim().is_empty() {
            return Err(ServiceError::invalid(
                "the channel pattern is empty (give a name or a pattern such as 'sales_*')",
            ));
        }
        let pattern = glob::Pattern::new(text).map_err(|e| {
            ServiceError::invalid(format!("channel pattern {text:?} is not valid: {}", e.msg))
        })?;
        Ok(ChannelSelection {
            text: text.to_owned(),
            pattern,
        })
    }

    /// Whether `channel` is chosen.
    pub fn matches(&self, channel: &ChannelName) -> bool {
        self.pattern.matches(channel.as_str())
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The chosen names among `channels`, in their order; invalid input when none matches.
    pub fn choose<'a>(
        &self,
        channels: impl IntoIterator<Item = &'a ChannelName>,
    ) -> Result<Vec<ChannelName>> {
        let chosen: Vec<ChannelName> = channels
            .into_iter()
            .filter(|c| self.matches(c))
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(ServiceError::invalid(format!(
                "no channel matches {:?}",
                self.text
            )));
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(s: &str) -> ChannelName {
        ChannelName::new(s).expect("valid name")
    }

    #[test]
    fn patterns_choose_by_shell_rules() {
        let all = [ch("sales_eu"), ch("sales_us"), ch("stock"), ch("sales")];
        let s = ChannelSelection::parse("sales_*").unwrap();
        assert_eq!(
            s.choose(&all).unwrap(),
            vec![ch("sales_eu"), ch("sales_us")]
        );
        let s = ChannelSelection::parse("sales_?s").unwrap();
        assert_eq!(s.choose(&all).unwrap(), vec![ch("sales_us")]);
        let s = ChannelSelection::parse("stock").unwrap();
        assert_eq!(s.choose(&all).unwrap(), vec![ch("stock")]);
        let s = ChannelSelection::parse("[st]*").unwrap();
        assert_eq!(s.choose(&all).unwrap().len(), 4);
    }

    #[test]
    fn no_match_empty_and_broken_patterns_are_invalid() {
        let all = [ch("sales")];
        let e = ChannelSelection::parse("hr_*")
            .unwrap()
            .choose(&all)
            .unwrap_err();
        assert!(e.to_string().contains("no channel matches"), "{e}");
        assert!(ChannelSelection::parse("").is_err());
        assert!(ChannelSelection::parse("[abc").is_err());
    }
}
