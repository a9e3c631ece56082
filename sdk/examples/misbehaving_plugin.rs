//! A plugin whose handlers misbehave the ways real ones do: they block their
//! thread, spin, or stream without end. The SDK's own tests run it as a real
//! process to check what the SDK promises despite them (other requests are
//! still answered, stdin EOF still ends the plugin).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use devctl_sdk::plugin::{Ctx, OpError, Plugin};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

#[derive(Deserialize)]
struct Size {
    n: usize,
}

fn main() -> ExitCode {
    Plugin::new("misbehaving")
        .op("ping", |_: Ctx, input: Value| async move {
            Ok::<_, OpError>(input)
        })
        // Blocks its thread before its first `.await`.
        .op("block", |_: Ctx, input: Millis| async move {
            std::thread::sleep(Duration::from_millis(input.ms));
            Ok::<_, OpError>(json!({"blocked": input.ms}))
        })
        // Waits once, then blocks the runtime worker it resumed on.
        .op("block-after-await", |_: Ctx, input: Millis| async move {
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(input.ms));
            Ok::<_, OpError>(json!({"blocked": input.ms}))
        })
        // Keeps a CPU busy without ever yielding.
        .op("spin", |_: Ctx, input: Millis| async move {
            let until = Instant::now() + Duration::from_millis(input.ms);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            Ok::<_, OpError>(json!({"spun": input.ms}))
        })
        // Answers with `n` bytes of text.
        .op("big", |_: Ctx, input: Size| async move {
            Ok::<_, OpError>(json!("x".repeat(input.n)))
        })
        // Emits as fast as the pipe takes events, until stopped.
        .stream("firehose", |_: Ctx, _: Value, sink| async move {
            let mut n = 0u64;
            loop {
                let mut fields = serde_json::Map::new();
                fields.insert("n".into(), json!(n));
                sink.emit("tick", Some(fields)).await;
                n += 1;
            }
        })
        .run()
}
