//! The committed JSON Schemas must match the types. Run with
//! `UPDATE_SCHEMAS=1 cargo test -p devctl-contract` to rewrite them.

use std::fs;
use std::path::PathBuf;

#[test]
fn committed_schemas_match_the_contract_types() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    let expected: Vec<String> = devctl_contract::schema::all()
        .iter()
        .map(|(stem, _)| format!("{stem}.json"))
        .collect();
    for (stem, schema) in devctl_contract::schema::all() {
        let path = dir.join(format!("{stem}.json"));
        let fresh = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        let committed = fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            if update {
                fs::write(&path, &fresh).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    for entry in fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !expected.contains(&name) {
            stale.push(format!("{} (no longer generated; delete it)", name));
        }
    }
    assert!(
        stale.is_empty(),
        "stale JSON Schemas: {stale:#?}\nregenerate with: UPDATE_SCHEMAS=1 cargo test -p devctl-contract"
    );
}
