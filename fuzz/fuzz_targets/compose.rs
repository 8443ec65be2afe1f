//! Compose files: parsing, interpolating and checking any document never panics, and what
//! it accepts turns into the model's JSON and back into the same model.
#![no_main]

use std::collections::HashMap;

use berth_compose::{load::parse_document, model::ComposeFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: HashMap<String, String> = [("A", "1"), ("EMPTY", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let Ok(node) = parse_document(text, "compose.yaml", &env, &mut Vec::new()) else {
        return;
    };
    let model: ComposeFile = serde_json::from_value(node.untagged().to_json()).expect("checked");
    let again: ComposeFile =
        serde_json::from_value(serde_json::to_value(&model).expect("serializes")).expect("round trip");
    assert_eq!(model.services.len(), again.services.len());
});
