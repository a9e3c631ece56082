//! `devctl plugins list|check|enable|disable`.

use anyhow::{Context, Result};
use devctl::config::Overlay;
use devctl::environment::Environment;
use devctl::repository::{close_all, Repository, HANDSHAKE};
use devctl::statedir::{StateDir, OVERLAY};
use serde_json::{json, Value};

use super::Usage;
use crate::cli::Format;

/// `devctl plugins list`: every plugin's handshake, failures in their row.
pub async fn list(repo: &Repository, json: bool, format: Format) -> Result<u8> {
    let format = if json && format == Format::Text {
        Format::Json
    } else {
        format
    };
    let plugins: Vec<_> = repo.config.plugins.iter().collect();
    let enabled: Vec<_> = plugins.iter().copied().filter(|p| p.enabled).collect();
    let mut started = repo.start(&enabled, HANDSHAKE, false).await.into_iter();
    let mut rows = Vec::new();
    let mut go_rows = Vec::new();
    let mut clients = Vec::new();
    for entry in plugins {
        let mut row = json!({
            "id": entry.id,
            "priority": entry.priority,
            "path": repo.relative(&entry.program),
            "source": entry.source,
            "enabled": entry.enabled,
        });
        if entry.enabled {
            match started.next() {
                Some((_, Ok(client))) => {
                    let handshake = client.handshake();
                    if format == Format::Go {
                        go_rows.push(json!({
                            "id": entry.id,
                            "path": entry.program,
                            "args": entry.args,
                            "workdir": entry.workdir,
                            "priority": entry.priority,
                            "plugin_name": handshake.plugin_name,
                            "protocol_version": handshake.protocol_version,
                            "ops": handshake.capabilities.ops,
                            "streams": handshake.capabilities.streams,
                            "commands": handshake.capabilities.commands,
                        }));
                    }
                    row["status"] = json!("ok");
                    row["name"] = json!(handshake.plugin_name);
                    row["protocol_version"] = json!(handshake.protocol_version);
                    row["ops"] = json!(handshake.capabilities.ops);
                    row["streams"] = json!(handshake.capabilities.streams);
                    row["commands"] = json!(handshake
                        .capabilities
                        .commands
                        .iter()
                        .map(|c| &c.name)
                        .collect::<Vec<_>>());
                    clients.push(client);
                }
                Some((_, Err(err))) => {
                    row["status"] = json!("error");
                    row["error"] = json!(err.message);
                }
                None => row["status"] = json!("error"),
            }
        } else {
            row["status"] = json!("disabled");
        }
        rows.push(row);
    }
    close_all(clients).await;
    match format {
        Format::Json => {
            outln!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(0);
        }
        Format::Go => {
            outln!(
                "{}",
                serde_json::to_string_pretty(&json!({"plugins": go_rows}))?
            );
            return Ok(0);
        }
        Format::Text => {}
    }
    if rows.is_empty() {
        outln!(
            "no plugins configured ({} has none, and there is no plugins/devctl-* executable)",
            repo.relative(&repo.config_path)
        );
    }
    let list = |row: &Value, key: &str| {
        let names: Vec<&str> = row[key]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if names.is_empty() {
            "(none)".to_owned()
        } else {
            names.join(", ")
        }
    };
    for row in &rows {
        let id = row["id"].as_str().unwrap_or("");
        match row["status"].as_str() {
            Some("ok") => {
                outln!(
                    "{id}  ({} {}, priority {})",
                    row["name"].as_str().unwrap_or(""),
                    row["protocol_version"].as_str().unwrap_or(""),
                    row["priority"]
                );
                outln!("    ops:      {}", list(row, "ops"));
                outln!("    streams:  {}", list(row, "streams"));
                outln!("    commands: {}", list(row, "commands"));
            }
            Some("disabled") => outln!("{id}  (disabled)"),
            _ => outln!(
                "{id}  FAILED: {}",
                row["error"]
                    .as_str()
                    .unwrap_or("unknown error")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
        }
    }
    Ok(0)
}

/// `devctl plugins check [ID]`: the conformance suite for each plugin.
/// Dropped half-way (Ctrl-C), the suite stops the plugin and removes its
/// scratch copy.
pub async fn check(repo: &Repository, id: Option<&str>, timeout_scale: f64) -> Result<u8> {
    let plugins: Vec<_> = repo
        .config
        .enabled()
        .filter(|p| id.is_none_or(|id| p.id == id))
        .collect();
    if let Some(id) = id {
        if plugins.is_empty() {
            return Err(Usage(format!("no enabled plugin with id {id:?}")).into());
        }
    }
    let mut all_ok = true;
    for entry in plugins {
        let mut argv = vec![entry.program.display().to_string()];
        argv.extend(entry.args.iter().cloned());
        let mut suite = devctl_conformance::Suite::command(argv)
            .repo_root(&repo.root)
            .timeout_scale(timeout_scale);
        for (key, value) in &entry.env {
            suite = suite.env(key, value);
        }
        let report = suite
            .run_async()
            .await
            .with_context(|| format!("plugin {}", entry.id))?;
        outln!("== {} ==\n{}", entry.id, report.human());
        all_ok &= report.summary.ok;
    }
    Ok(if all_ok { 0 } else { 1 })
}

/// `devctl plugins enable|disable ID`: records the choice in the local
/// overlay (`.devctl/local.yaml`); a running `up --watch` applies it at once.
pub fn set_enabled(repo: &Repository, id: &str, enabled: bool) -> Result<u8> {
    if !repo.config.plugins.iter().any(|p| p.id == id) {
        let known: Vec<&str> = repo.config.plugins.iter().map(|p| p.id.as_str()).collect();
        return Err(Usage(format!("no plugin {id:?} (plugins: {})", known.join(", "))).into());
    }
    let mut overlay = Overlay::load(&repo.root)?;
    overlay.enabled.insert(id.to_owned(), enabled);
    let dir = StateDir::create(&repo.root)?;
    dir.write_small(OVERLAY, overlay.render().as_bytes())?;
    let environment = Environment::open(&repo.root)?;
    let watching =
        environment.supervisor().is_some() && dir.read_state().found().is_some_and(|s| s.watching);
    outln!(
        "{} {id} (recorded in {}){}",
        if enabled { "enabled" } else { "disabled" },
        repo.relative(&dir.path().join(OVERLAY)),
        if watching {
            "; the running `up --watch` applies it now"
        } else {
            "; it applies to the next `devctl up`"
        }
    );
    Ok(0)
}
