//! Definitions documents: the text of a definitions file (YAML, or JSON when the file is named
//! `.json`) and the JSON body of a REST import, through parse and compile.
//!
//! Never a panic, whatever the text. When a document compiles, its document form
//! (`to_document`, what export writes and what every REST edit starts from) compiles back to the
//! same definitions.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use sluice_service::definition::{CompileContext, compile, parse_text, to_document};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A definitions file: relative file paths are taken against its directory, secrets only as
    // `${ENV_VAR}` references.
    let file = CompileContext {
        base_dir: Some(PathBuf::from("/defs")),
        env: [("SHOP_PASSWORD".to_owned(), "x".to_owned())].into(),
        ..Default::default()
    };
    // The hub server: a default hub, literal secrets allowed (they are sealed before storing).
    let server = CompileContext {
        default_hub: Some("hub1".parse().expect("a valid hub name")),
        allow_secret_values: true,
        ..Default::default()
    };
    for json in [false, true] {
        if let Ok(doc) = parse_text(text, json) {
            check(&doc, &file);
            check(&doc, &server);
        }
    }
    // A REST body is read by serde_json (duplicate keys allowed, the last one wins).
    if let Ok(doc) = serde_json::from_str::<serde_json::Value>(text) {
        check(&doc, &server);
    }
});

fn check(doc: &serde_json::Value, cx: &CompileContext) {
    let compiled = compile(doc, cx);
    let Some(defs) = compiled.definitions else {
        assert!(
            compiled.errors().next().is_some(),
            "no definitions and no error"
        );
        return;
    };
    let again = to_document(&defs);
    let round = compile(
        &again,
        &CompileContext {
            allow_secret_values: true,
            ..Default::default()
        },
    );
    let errors: Vec<String> = round.errors().map(ToString::to_string).collect();
    assert!(
        errors.is_empty(),
        "the document form of compiled definitions does not compile: {errors:?}\n{again:#}"
    );
    assert_eq!(
        round.definitions.as_ref(),
        Some(&defs),
        "the document form compiles to other definitions\n{again:#}"
    );
}
