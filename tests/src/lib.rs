//! Cross-crate end-to-end tests live in `tests/tests/`. They arrive with the
//! orchestrator; the dev contract's own tests are in `moments-dev/tests/`.
