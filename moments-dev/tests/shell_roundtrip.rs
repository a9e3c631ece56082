//! `vite-env --format env` must survive `eval` in sh, bash and zsh byte for
//! byte: arbitrary strings go in through an env override, through the real
//! binary, through a real shell, and must come back unchanged.

mod common;

use std::process::Command;

use common::RepoCopy;
use proptest::prelude::*;

/// The shells the output is promised to work in. sh and bash are required;
/// zsh is used when installed (`.ci/run` installs it).
fn shells() -> Vec<&'static str> {
    let mut shells = vec!["sh", "bash"];
    if Command::new("zsh").arg("-c").arg("true").status().is_ok() {
        shells.push("zsh");
    }
    shells
}

fn eval_in(shell: &str, exports: &str, var: &str) -> Vec<u8> {
    let output = Command::new(shell)
        .arg("-c")
        .arg(format!("eval \"$1\"; printf '%s' \"${var}\""))
        .arg(shell)
        .arg(exports)
        .env_clear()
        .output()
        .expect("shell runs");
    assert!(output.status.success(), "{shell} failed: {output:?}");
    output.stdout
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn every_value_comes_back_byte_exact(value in "[^\u{0}]{1,40}|.*['\"$`\\\\\n !#;&|*?~(){}<>\t]+.*") {
        prop_assume!(!value.contains('\0') && !value.is_empty());
        let repo = RepoCopy::new();
        let output = repo
            .cmd(&["dev", "vite-env", "--format", "env"])
            .env("MOMENTS_PLATFORM_MENTO_SERVICE_PUBLIC_BASE_URL", &value)
            .output()
            .expect("moments-dev runs");
        prop_assert!(output.status.success());
        let exports = String::from_utf8(output.stdout).expect("utf-8");
        for shell in shells() {
            let back = eval_in(shell, &exports, "VITE_BACKEND_URL");
            prop_assert_eq!(&back, value.as_bytes(), "{} changed the value", shell);
        }
    }
}

#[test]
fn all_three_shells_are_covered() {
    if shells() != ["sh", "bash", "zsh"] {
        e2e::skip("zsh is not installed: the eval round trip ran in sh and bash only");
    }
}
