//! Contexts: the names a channel's actions are restricted to with `Context` (an action applies
//! only when a refresh or compare runs with one of its contexts), and the context variables its
//! parameters refer to as `{hvr_var_NAME}`.

use std::collections::BTreeSet;

use sluice_model::definition::Channel;

/// The prefix of a context variable's reference in a parameter.
const VAR_PREFIX: &str = "{hvr_var_";

/// The contexts (sorted, without `!` negations) and context variables (sorted) the actions of
/// `channel` name.
pub fn channel_contexts(channel: &Channel) -> (Vec<String>, Vec<String>) {
    let mut contexts = BTreeSet::new();
    let mut variables = BTreeSet::new();
    for action in &channel.actions {
        for (name, value) in action.params() {
            let text = value.to_text();
            if name.eq_ignore_ascii_case("Context") {
                contexts.extend(identifiers(&text));
            }
            variables.extend(variable_refs(&text));
        }
    }
    (
        contexts.into_iter().collect(),
        variables.into_iter().collect(),
    )
}

/// The identifiers of a `Context` value (`ctx`, `!ctx`, `ctx1|ctx2`, …).
fn identifiers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .map(str::to_owned)
        .collect()
}

/// The names `NAME` of every `{hvr_var_NAME}` in `text`.
fn variable_refs(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(VAR_PREFIX) {
        rest = &rest[at + VAR_PREFIX.len()..];
        if let Some(end) = rest.find('}') {
            let name = &rest[..end];
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                found.push(name.to_owned());
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_and_variables_are_read_from_parameters() {
        assert_eq!(identifiers("!ctx1|ctx_2"), vec!["ctx1", "ctx_2"]);
        assert_eq!(identifiers("1bad"), Vec::<String>::new());
        assert_eq!(
            variable_refs("id > {hvr_var_min} and id < {hvr_var_max} {hvr_var_}"),
            vec!["min", "max"]
        );
        assert_eq!(variable_refs("{hvr_var_x"), Vec::<String>::new());
    }
}
