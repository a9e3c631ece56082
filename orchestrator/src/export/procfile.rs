//! The plan as a Procfile (honcho, foreman, Heroku-style platforms) and a
//! `.env` beside it.
//!
//! One line per service, in start order: `name: cd DIR && VAR=value exec
//! ARGV`, each word quoted for `/bin/sh`, which runners start every line
//! with. `.env` holds the variables every service has with the same value;
//! the rest is set on the service's line. `PORT` always is: runners set it
//! per process (honcho: 5000, 5100, …) and the plan's must win. Secret
//! variables are named in `.env`'s comments, never given: they come from
//! the environment the runner starts in (the runner passes it on). A
//! Procfile cannot say when a service is ready, what waits for what, or
//! when to restart: the header says what the plan wanted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, PathBuf};

use devctl_contract::manifest::RestartPolicy;

use super::{header, shell_word, ExportError, File, Format, Options, Role, Service, Stack};

/// Variables that stay on each line: runners set `PORT` themselves, and
/// honcho reads `PORT` and `PROCFILE` from `.env` as its own settings.
const PER_LINE: &[&str] = &["PORT", "PROCFILE"];

/// The `Procfile` and its `.env`.
pub fn files(stack: &Stack, options: &Options) -> Result<Vec<File>, ExportError> {
    let shared = shared_env(stack);
    let mut lines = String::new();
    for service in &stack.services {
        let _ = writeln!(lines, "{}", line(service, &shared, options)?);
    }
    let procfile = format!(
        "{}{lines}",
        header(Format::Procfile, stack, options, &notes(stack))
    );
    let mut env = format!(
        "{} procfile: the environment every process of the Procfile beside it shares.\n",
        super::GENERATED_MARK
    );
    for (name, value) in &shared {
        let _ = writeln!(env, "{name}={}", env_word(value));
    }
    let secrets: Vec<String> = stack
        .services
        .iter()
        .flat_map(|s| {
            s.secrets
                .iter()
                .map(move |name| format!("{name} ({})", s.name))
        })
        .collect();
    if !secrets.is_empty() {
        let _ = writeln!(
            env,
            "# Secrets, not written here: set them in the environment the runner starts in\n# (e.g. `export NAME=…` before `honcho start`, or the platform's config vars):\n#   {}",
            secrets.join(", ")
        );
    }
    Ok(vec![
        File {
            name: Format::Procfile.file_name().to_owned(),
            text: procfile,
            role: Role::Main,
        },
        File {
            name: ".env".to_owned(),
            text: env,
            role: Role::Companion,
        },
    ])
}

fn notes(stack: &Stack) -> Vec<String> {
    let mut notes = vec![
        "Run from this directory: honcho start (or foreman start). .env holds the variables".into(),
        "  every service shares; each line sets the rest. Secrets: see .env.".into(),
        "A Procfile cannot express readiness, depends_on or restart policies: every process".into(),
        "  starts at once, and when one exits the runner stops them all. The plan wanted:".into(),
    ];
    for service in &stack.services {
        let mut wanted = Vec::new();
        if let Some(probe) = &service.probe {
            wanted.push(format!("ready when {}", probe.check.describe()));
        }
        if !service.depends_on.is_empty() {
            wanted.push(format!("after {}", service.depends_on.join(", ")));
        }
        match service.restart {
            RestartPolicy::No => {}
            RestartPolicy::OnFailure => wanted.push("restart on failure".into()),
            RestartPolicy::Always => wanted.push("restart always".into()),
        }
        if wanted.is_empty() {
            wanted.push("nothing more".into());
        }
        notes.push(format!("  {}: {}", service.name, wanted.join("; ")));
    }
    notes
}

/// The variables every service has, with the same value, that `.env` can
/// hold as they are (honcho turns `\n` and `\t` in a value into a newline
/// and a tab).
fn shared_env(stack: &Stack) -> BTreeMap<String, String> {
    let Some((first, rest)) = stack.services.split_first() else {
        return BTreeMap::new();
    };
    first
        .env
        .iter()
        .filter(|(name, _)| !PER_LINE.contains(&name.as_str()))
        .filter(|(_, value)| {
            !value.contains(breaks_line) && !value.contains("\\n") && !value.contains("\\t")
        })
        .filter(|(name, value)| rest.iter().all(|s| s.env.get(*name) == Some(value)))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

fn line(
    service: &Service,
    shared: &BTreeMap<String, String>,
    options: &Options,
) -> Result<String, ExportError> {
    let unsupported = |problem: String, fix: &str| ExportError::Unsupported {
        engine: "A Procfile",
        service: service.name.clone(),
        problem,
        fix: fix.to_owned(),
    };
    if !service
        .name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(unsupported(
            "a process name holds only letters, digits, '_' and '-'".into(),
            "let the plugin name the service without '.'",
        ));
    }
    let mut words = Vec::new();
    let dir: PathBuf = options
        .root_from_output
        .join(&service.cwd)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    if !dir.as_os_str().is_empty() {
        words.extend([
            "cd".to_owned(),
            shell_word(&dir.to_string_lossy()),
            "&&".into(),
        ]);
    }
    for (name, value) in service
        .env
        .iter()
        .filter(|(name, _)| !shared.contains_key(*name))
    {
        words.push(format!("{name}={}", shell_word(value)));
    }
    words.push("exec".into());
    words.extend(service.command.iter().map(|arg| shell_word(arg)));
    let line = format!("{}: {}", service.name, words.join(" "));
    if line.contains(breaks_line) {
        return Err(unsupported(
            "its command, directory or environment holds a line break, and each process is one line".into(),
            "let the plugin pass multi-line values another way (e.g. a file)",
        ));
    }
    Ok(line)
}

/// Whether runners end a line at `c`: honcho reads the Procfile and `.env`
/// with Python's `splitlines`, which breaks at more than `\n`.
fn breaks_line(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r'
            | '\x0b'
            | '\x0c'
            | '\x1c'
            | '\x1d'
            | '\x1e'
            | '\u{85}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// A `.env` value: single-quoted, as honcho (Python's shlex) and foreman
/// read it, `'` written as `'\''`.
fn env_word(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{moments_plan, options, with_service};
    use super::super::{export, Format, Role};

    fn procfile(plan: &crate::transform::Plan) -> (String, String) {
        let files = export(Format::Procfile, plan, &options()).unwrap();
        assert_eq!(files[1].role, Role::Companion);
        (files[0].text.clone(), files[1].text.clone())
    }

    fn process_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn one_line_per_service_in_start_order_and_secrets_only_named() {
        let (procfile, env) = procfile(&moments_plan());
        assert_eq!(
            process_lines(&procfile),
            [
                "backend: cd backend && PORT=8083 exec python3 server.py",
                "web: cd web && PORT=5173 VITE_BACKEND_URL=http://localhost:8083 exec python3 server.py --port 5173"
            ]
        );
        assert!(procfile.contains("#   backend: ready when http GET http://127.0.0.1:8083/rpc/v1/health; restart on failure\n"), "{procfile}");
        assert!(
            procfile.contains("#   web: ready when tcp localhost:5173; after backend\n"),
            "{procfile}"
        );
        assert!(env.contains("VITE_STYTCH_PUBLIC_TOKEN (web)"), "{env}");
        assert!(!env.contains("public-token-test") && !procfile.contains("public-token-test"));
    }

    #[test]
    fn shared_variables_go_to_dot_env_quoted_and_port_never_does() {
        let mut plan = moments_plan();
        for service in &mut plan.services {
            service.spec.env.insert("LOG".into(), "it's $HOME".into());
            service.spec.env.insert("PORT".into(), "1".into());
        }
        let (procfile, env) = procfile(&plan);
        assert!(env.contains("\nLOG='it'\\''s $HOME'\n"), "{env}");
        assert!(!env.contains("PORT"), "{env}");
        assert!(process_lines(&procfile)
            .iter()
            .all(|l| l.contains("PORT=1 ") && !l.contains("LOG")));
    }

    #[test]
    fn shell_specials_are_quoted_and_the_output_root_is_followed() {
        let plan = with_service("backend", |s| {
            s.command = vec![
                "sh".into(),
                "-c".into(),
                "echo \"$X\" | cat; exit 3".into(),
                "A=1".into(),
            ];
        });
        let mut options = options();
        options.root_from_output = "..".into();
        let files = export(Format::Procfile, &plan, &options).unwrap();
        assert!(
            files[0].text.contains("\nbackend: cd ../backend && PORT=8083 exec sh -c 'echo \"$X\" | cat; exit 3' 'A=1'\n"),
            "{}",
            files[0].text
        );
    }

    #[test]
    fn what_a_procfile_cannot_hold_is_refused() {
        for broken in ["a\nb", "a\u{2028}b", "a\x0cb", "a\rb"] {
            let plan = with_service("backend", |s| s.command.push(broken.into()));
            let err = export(Format::Procfile, &plan, &options()).unwrap_err();
            assert!(err.to_string().contains("line break"), "{broken:?}: {err}");
        }
        let mut plan = moments_plan();
        plan.services[1].spec.name = "back.end".into();
        plan.services[0].spec.depends_on = vec!["back.end".into()];
        let err = export(Format::Procfile, &plan, &options()).unwrap_err();
        assert!(err.to_string().contains("back.end"), "{err}");
    }
}
