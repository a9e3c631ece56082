//! A minimal protocol-v2 plugin: the starting point for plugin authors.
//!
//! Run it by hand to see the handshake, then type a request:
//!
//! ```text
//! $ cargo run -q -p devctl-sdk --example minimal-plugin
//! {"type":"handshake","protocol_version":"v2","plugin_name":"minimal",...}
//! {"type":"request","request_id":"1","op":"ping","input":{"hello":1}}
//! {"type":"response","request_id":"1","ok":true,"output":{"hello":1}}
//! ```

use std::process::ExitCode;

use devctl_sdk::contract::protocol::CommandSpec;
use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct TicksInput {
    #[serde(default = "default_count")]
    count: u64,
}

fn default_count() -> u64 {
    3
}

fn main() -> ExitCode {
    Plugin::new("minimal")
        // Echo the input back: handy for checking the plumbing.
        .op("ping", |_ctx: Ctx, input: Value| async move {
            Ok::<_, OpError>(input)
        })
        // Contribute a config key; the orchestrator merges patches in order.
        .op("config.mutate", |_ctx: Ctx, _input: Value| async move {
            Ok::<_, OpError>(json!({"config_patch": {"set": {"services.hello.port": 8099}}}))
        })
        // Describe a service to run.
        .op("launch.plan", |ctx: Ctx, _input: Value| async move {
            if ctx.repo_root().is_none() {
                ctx.warn("no repo_root in the request; using the current directory");
            }
            Ok::<_, OpError>(json!({"services": [{
                "name": "hello",
                "cwd": ".",
                "command": ["python3", "-m", "http.server", "8099", "--bind", "127.0.0.1"],
                "health": {"type": "tcp", "address": "127.0.0.1:8099", "timeout_ms": 10000}
            }]}))
        })
        // A stream: answered with a stream_id, then events, then `end`.
        .stream("ticks", |_ctx: Ctx, input: TicksInput, sink| async move {
            for n in 0..input.count {
                let mut fields = serde_json::Map::new();
                fields.insert("n".into(), json!(n));
                sink.emit("tick", Some(fields)).await;
            }
            Ok(())
        })
        // A command users run as `devctl hello [args…]`.
        .command(
            CommandSpec {
                name: "hello".into(),
                help: Some("Say hello (prints its arguments to stderr)".into()),
                args_spec: Vec::new(),
            },
            |_ctx: Ctx, input| async move {
                // stdout is protected: this println! lands on stderr.
                println!("hello {}", input.argv.join(" "));
                Ok(0)
            },
        )
        .run()
}
