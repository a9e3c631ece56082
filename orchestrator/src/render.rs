//! How plans and plugin lists are shown: readable text, `--explain`
//! provenance, and JSON. Secrets (by name: tokens, passwords, keys…; or by
//! what a value holds: a password in a URL, a `password=` parameter, a
//! bearer token, the word after `--password`) are redacted unless asked, in
//! config values, env, commands and health checks alike. Commands are shown
//! as a shell would read them back ([`shell_line`]).

use std::fmt::Write as _;

use devctl_contract::secrets::{is_secret_name, redact_argv, redact_text, REDACTED};
use serde_json::Value;

use crate::transform::{Plan, Setting};

/// Hides secret-looking values in the plan (config keys and service env).
pub fn redact_plan(plan: &mut Plan) {
    redact_tree(&mut plan.config, "");
    for history in plan.config_history.iter_mut() {
        let (key, settings): (&String, &mut Vec<Setting>) = history;
        for setting in settings.iter_mut() {
            if let Some(value) = setting.value.as_mut() {
                redact_tree(value, key);
            }
        }
    }
    for service in &mut plan.services {
        let spec = &mut service.spec;
        for (name, value) in spec.env.iter_mut() {
            if is_secret_name(name) {
                *value = REDACTED.into();
            } else {
                *value = redact_text(value);
            }
        }
        spec.command = redact_argv(&spec.command);
        if let Some(health) = spec.health.as_mut() {
            health.url = health.url.as_deref().map(redact_text);
            health.address = health.address.as_deref().map(redact_text);
            health.command = health.command.as_deref().map(redact_argv);
        }
    }
}

/// A word as a POSIX shell reads it back: bare when safe, else in single
/// quotes.
pub fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// An argv as one line a shell reads back word for word.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|word| shell_word(word))
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_tree(value: &mut Value, key: &str) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map.iter_mut() {
                let path = if key.is_empty() {
                    name.clone()
                } else {
                    format!("{key}.{name}")
                };
                redact_tree(inner, &path);
            }
        }
        Value::String(text) if is_secret_name(key) => *text = REDACTED.into(),
        Value::String(text) => *text = redact_text(text),
        _ => {}
    }
}

/// The plan as text; with `explain`, who set each key and service.
pub fn plan_text(plan: &Plan, explain: bool, dry_steps: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plugins: {}",
        if plan.plugins.is_empty() {
            "(none)".into()
        } else {
            plan.plugins.join(", ")
        }
    );
    let _ = writeln!(out, "\nconfig:");
    if plan.config_history.is_empty() {
        let _ = writeln!(out, "  (no plugin set any key)");
    }
    for (key, history) in &plan.config_history {
        let Some(last) = history.last() else { continue };
        let value = last
            .value
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "(unset)".into());
        let _ = write!(out, "  {key} = {value}");
        if explain {
            let _ = write!(out, "    set by {}", last.plugin);
            let earlier: Vec<String> = history[..history.len() - 1]
                .iter()
                .rev()
                .map(|s| {
                    format!(
                        "{} ({})",
                        s.plugin,
                        s.value
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "unset".into())
                    )
                })
                .collect();
            if !earlier.is_empty() {
                let _ = write!(out, ", overriding {}", earlier.join(", "));
            }
        }
        out.push('\n');
    }
    for (title, steps) in [("build", &plan.build), ("prepare", &plan.prepare)] {
        if steps.is_empty() {
            continue;
        }
        let listed: Vec<String> = steps
            .iter()
            .map(|s| {
                let mark = if s.step.ok { "ok" } else { "FAILED" };
                if explain {
                    format!("{} {mark} [{}]", s.step.name, s.plugin)
                } else {
                    format!("{} {mark}", s.step.name)
                }
            })
            .collect();
        let suffix = if dry_steps {
            " (dry run: nothing was run)"
        } else {
            ""
        };
        let _ = writeln!(out, "\n{title}: {}{suffix}", listed.join(", "));
    }
    let _ = writeln!(
        out,
        "\nvalidate: {}",
        if plan.valid { "valid" } else { "INVALID" }
    );
    for (kind, issues) in [("error", &plan.errors), ("warning", &plan.warnings)] {
        for issue in issues {
            let _ = writeln!(
                out,
                "  {kind} [{}] {} ({}){}",
                issue.issue.code,
                issue.issue.message,
                issue.plugin,
                fix_of(&issue.issue.details)
            );
        }
    }
    let _ = writeln!(out, "\nservices:");
    if plan.services.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for service in &plan.services {
        let spec = &service.spec;
        let cwd = if spec.cwd.is_empty() {
            "."
        } else {
            spec.cwd.as_str()
        };
        let _ = writeln!(
            out,
            "  {}: {}  (cwd {cwd})",
            spec.name,
            shell_line(&spec.command)
        );
        if let Some(health) = &spec.health {
            let target = health
                .url
                .clone()
                .or_else(|| health.address.clone())
                .or_else(|| health.port.map(|p| format!("port {p}")))
                .or_else(|| health.command.as_ref().map(|c| shell_line(c)))
                .unwrap_or_default();
            let kind = serde_json::to_value(health.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(out, "      ready when: {kind} {target}");
        }
        if !spec.depends_on.is_empty() {
            let _ = writeln!(out, "      after: {}", spec.depends_on.join(", "));
        }
        if !spec.env.is_empty() {
            let env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "      env: {}", env.join(" "));
        }
        if explain {
            let _ = write!(out, "      from {}", service.plugin);
            if !service.overrode.is_empty() {
                let _ = write!(
                    out,
                    ", overriding the one from {}",
                    service.overrode.join(", then ")
                );
            }
            out.push('\n');
        }
    }
    for collision in &plan.collisions {
        let _ = writeln!(out, "\nwarning: {collision}");
    }
    out
}

fn fix_of(details: &Option<Value>) -> String {
    details
        .as_ref()
        .and_then(|d| d.get("fix"))
        .and_then(Value::as_str)
        .map(|fix| format!("\n      fix: {fix}"))
        .unwrap_or_default()
}

/// A service's bytes as text that cannot drive the terminal: tabs as four
/// spaces, escape sequences (colours, titles, clears) and other control
/// characters removed (by a terminal parser, `vte`), any left shown as `�`.
pub fn printable(bytes: &[u8]) -> String {
    let mut spaced = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        match byte {
            b'\t' => spaced.extend_from_slice(b"    "),
            byte => spaced.push(byte),
        }
    }
    let plain = strip_ansi_escapes::strip(&spaced);
    String::from_utf8_lossy(&plain)
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}
