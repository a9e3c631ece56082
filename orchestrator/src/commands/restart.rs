//! `devctl restart SVC`: the supervisor restarts the service and whatever
//! depends on it, and answers once they are ready again.

use std::path::Path;

use devctl::environment::{Environment, RestartError};

pub async fn run(root: &Path, service: &str) -> anyhow::Result<u8> {
    let environment = Environment::open(root)?;
    let reply = match environment.restart(service).await {
        Ok(reply) => reply,
        Err(RestartError::NotRunning) => anyhow::bail!(
            "nothing is running in {}; start it with `{} up -d`",
            root.display(),
            super::devctl_for(root)
        ),
        Err(err) => return Err(err.into()),
    };
    for line in &reply.lines {
        outln!("{line}");
    }
    Ok(if reply.ok { 0 } else { 1 })
}
