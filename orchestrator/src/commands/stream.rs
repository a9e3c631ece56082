//! `devctl stream --op OP`: prints a stream's events until `end`; Ctrl-C
//! ends it and stops the plugin.

use std::collections::BTreeSet;

use anyhow::{bail, Context, Result};
use devctl::repository::{close_all, Repository, HANDSHAKE};
use serde_json::Value;

use super::Usage;
use crate::cli::StreamArgs;

/// `devctl stream`: prints events until `end`; Ctrl-C closes the plugin.
pub async fn run(repo: &Repository, args: &StreamArgs) -> Result<u8> {
    let input = stream_input(args)?;
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
    let mut events = client
        .start_stream(&args.op, input, args.start_timeout.unwrap_or(repo.timeout))
        .await?;
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

/// The op's input: `--input-json`, `--input-file`, or `{}`.
fn stream_input(args: &StreamArgs) -> Result<Value> {
    let (text, from) = match (&args.input_json, &args.input_file) {
        (Some(json), _) => (json.clone(), "--input-json".to_owned()),
        (None, Some(path)) => (
            std::fs::read_to_string(path)
                .map_err(|err| Usage(format!("--input-file {}: {err}", path.display())))?,
            format!("--input-file {}", path.display()),
        ),
        (None, None) => return Ok(Value::Object(Default::default())),
    };
    let input: Value =
        serde_json::from_str(&text).map_err(|err| Usage(format!("{from} is not JSON: {err}")))?;
    if !input.is_object() {
        return Err(Usage(format!("{from} must be a JSON object")).into());
    }
    Ok(input)
}
