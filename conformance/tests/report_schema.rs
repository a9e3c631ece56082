//! The JSON report's schema is committed in `conformance/schema/report.json`;
//! regenerate with `UPDATE_SCHEMAS=1 cargo test -p devctl-conformance`.

#[test]
fn the_committed_report_schema_is_fresh() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/report.json");
    let fresh = serde_json::to_string_pretty(&schemars::schema_for!(devctl_conformance::Report))
        .unwrap()
        + "\n";
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &fresh).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "conformance/schema/report.json is stale; run UPDATE_SCHEMAS=1 cargo test -p devctl-conformance"
    );
}
