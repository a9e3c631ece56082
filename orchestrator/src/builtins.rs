//! The built-in commands that talk to plugins: `plan`, `plugins list`,
//! `plugins check`, `stream`; and `status`, which never starts a plugin.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use devctl_sdk::host::Client;
use serde_json::{json, Value};

use crate::cli::{PlanArgs, StreamArgs};
use crate::pipeline::{self, PipelineOptions};
use crate::render::{plan_text, redact_plan};
use crate::repository::{close_all, Repository};

/// Handshake budget when a command needs the plugins.
pub const HANDSHAKE: Duration = Duration::from_secs(2);

/// Starts the enabled plugins (minus `without`); any failure is fatal here,
/// since a plan without one of its plugins would be wrong.
pub async fn start_all(
    repo: &Repository,
    without: &BTreeSet<String>,
    dry_run: bool,
) -> Result<Vec<Client>> {
    let plugins = repo.plugins(without);
    let mut clients = Vec::new();
    let mut failure = None;
    for (entry, result) in repo.start(&plugins, HANDSHAKE, dry_run).await {
        match result {
            Ok(client) => clients.push(client),
            Err(err) => {
                failure.get_or_insert((entry, err));
            }
        }
    }
    if let Some((entry, err)) = failure {
        close_all(clients).await;
        bail!(
            "plugin {id} ({}) could not start: {}\n  fix: run `devctl plugins check {id}` to see what is wrong, or `devctl plugins disable {id}`",
            entry.source,
            err.message,
            id = entry.id
        );
    }
    Ok(clients)
}

/// `devctl plan`: exit 0 when the plan is valid, 1 when it is not.
pub async fn plan(repo: &Repository, args: &PlanArgs) -> Result<bool> {
    let without: BTreeSet<String> = args.without.iter().cloned().collect();
    for id in &without {
        if !repo.config.plugins.iter().any(|p| &p.id == id) {
            bail!(
                "--without {id}: no such plugin (configured: {})",
                repo.config
                    .plugins
                    .iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    // Plugins left out are not even started: their transforms do not exist.
    let clients = start_all(repo, &without, true).await?;
    let outcome = pipeline::run(&clients, &PipelineOptions::default(), repo.timeout).await;
    close_all(clients).await;
    let outcome = outcome?;
    for message in &outcome.messages {
        eprintln!(
            "[{}] {} ({}): {}",
            message.plugin, message.level, message.op, message.text
        );
    }
    let mut plan = outcome.plan(&without, repo.strictness)?;
    if !args.show_secrets {
        redact_plan(&mut plan);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&plan)?);
    } else {
        out!("{}", plan_text(&plan, args.explain, true));
    }
    Ok(plan.valid && plan.failed_steps().is_empty())
}

/// `devctl plugins list`: every plugin's handshake, failures in their row.
pub async fn plugins_list(repo: &Repository, json_out: bool) -> Result<()> {
    let plugins: Vec<_> = repo.config.plugins.iter().collect();
    let enabled: Vec<_> = plugins.iter().copied().filter(|p| p.enabled).collect();
    let mut started = repo.start(&enabled, HANDSHAKE, false).await.into_iter();
    let mut rows = Vec::new();
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
    if json_out {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        outln!(
            "no plugins configured ({} has none, and there is no plugins/devctl-* executable)",
            repo.relative(&repo.config_path)
        );
    }
    let list = |row: &Value, key: &str| {
        row[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
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
    Ok(())
}

/// `devctl plugins check [ID]`: the conformance suite for each plugin.
pub fn plugins_check(repo: &Repository, id: Option<&str>, timeout_scale: f64) -> Result<bool> {
    let plugins: Vec<_> = repo
        .config
        .enabled()
        .filter(|p| id.is_none_or(|id| p.id == id))
        .collect();
    if let Some(id) = id {
        if plugins.is_empty() {
            bail!("no enabled plugin with id {id:?}");
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
            .run()
            .with_context(|| format!("plugin {}", entry.id))?;
        outln!("== {} ==\n{}", entry.id, report.human());
        all_ok &= report.summary.ok;
    }
    Ok(all_ok)
}

/// `devctl stream`: prints events until `end`; Ctrl-C closes the plugin.
pub async fn stream(repo: &Repository, args: &StreamArgs) -> Result<i32> {
    let input: Value = serde_json::from_str(&args.input_json)
        .with_context(|| format!("--input-json is not JSON: {}", args.input_json))?;
    let plugins: Vec<_> = repo
        .plugins(&BTreeSet::new())
        .into_iter()
        .filter(|p| args.plugin.as_deref().is_none_or(|id| p.id == id))
        .collect();
    if plugins.is_empty() {
        bail!(
            "no enabled plugin{}",
            args.plugin
                .as_deref()
                .map(|id| format!(" with id {id:?}"))
                .unwrap_or_default()
        );
    }
    let mut chosen = None;
    let mut others = Vec::new();
    for (entry, result) in repo.start(&plugins, HANDSHAKE, false).await {
        match result {
            Ok(client) if chosen.is_none() && client.supports(&args.op) => chosen = Some(client),
            Ok(client) => others.push(client),
            Err(err) => eprintln!(
                "warning: plugin {} did not start: {}",
                entry.id,
                err.message.lines().next().unwrap_or("")
            ),
        }
    }
    close_all(others).await;
    let Some(client) = chosen else {
        bail!(
            "no plugin declares the op {:?}; see `devctl plugins list`",
            args.op
        );
    };
    // Listen before anything streams: a listener created lazily inside the
    // loop might never be polled while events keep arriving.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut events = client.start_stream(&args.op, input, repo.timeout).await?;
    let code = loop {
        let next = tokio::select! {
            biased;
            _ = interrupt.recv() => break 130,
            _ = terminate.recv() => break 143,
            next = events.next() => next,
        };
        match next {
            Ok(Some(event)) => {
                if args.json {
                    outln!("{}", serde_json::to_string(&event)?);
                } else if event.is_end() {
                    let how = if event.ok == Some(false) {
                        "failed"
                    } else {
                        "ended"
                    };
                    outln!(
                        "[{}] stream {how}{}",
                        client.id(),
                        event.message.map(|m| format!(": {m}")).unwrap_or_default()
                    );
                } else {
                    let fields = event
                        .fields
                        .map(|f| serde_json::to_string(&f).unwrap_or_default())
                        .unwrap_or_default();
                    outln!(
                        "[{}] {} {} {} {fields}",
                        client.id(),
                        event.event,
                        event.level.unwrap_or_default(),
                        event.message.unwrap_or_default()
                    );
                }
            }
            Ok(None) => break 0,
            Err(err) => {
                eprintln!("error: {err}");
                break 1;
            }
        }
    };
    drop(events);
    client.close().await;
    Ok(code)
}
