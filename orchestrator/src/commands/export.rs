//! `devctl export compose|kubernetes|procfile`: the plan `devctl plan`
//! shows, turned into files by [`devctl::export`]. This file only decides
//! where they go and writes them: each atomically, none over a file that
//! devctl export did not write, and a secrets skeleton only when missing
//! (the user's values are in it).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use devctl::export::{self, ExportError, File, Format, Images, Options, Role, GENERATED_MARK};
use devctl::repository::Repository;
use devctl_support::fs::write_atomically;

use super::Usage;
use crate::cli::{ExportArgs, ExportFormat};

/// `devctl export`: exit 0 when the files were written (or printed), 1 when
/// the plan is invalid or cannot be expressed for the engine.
pub async fn run(repo: &Repository, args: &ExportArgs) -> Result<u8> {
    let format = match args.format {
        ExportFormat::Compose => Format::Compose,
        ExportFormat::Kubernetes => Format::Kubernetes,
        ExportFormat::Procfile => Format::Procfile,
    };
    if format == Format::Procfile && !args.image.is_empty() {
        return Err(Usage(
            "--image: a Procfile runs commands on the machine it is started on, not in an image"
                .into(),
        )
        .into());
    }
    let images = Images::parse(&args.image).map_err(|err| Usage(err.to_string()))?;
    let target = args
        .output
        .as_deref()
        .map(|output| Target::of(output, format))
        .transpose()?;
    let plan = super::plan::dry_plan(repo, &args.without, &Default::default()).await?;
    if !plan.valid || !plan.failed_steps().is_empty() {
        eprintln!("devctl export: the plan is not valid, so nothing was exported");
        for issue in &plan.errors {
            eprintln!(
                "  error [{}] {} ({})",
                issue.issue.code, issue.issue.message, issue.plugin
            );
        }
        for (phase, step) in plan.failed_steps() {
            eprintln!("  {phase} step {} failed ({})", step.step.name, step.plugin);
        }
        eprintln!("  see `devctl plan` for the whole plan");
        return Ok(1);
    }
    // What `plan` would show as warnings concerns the exported stack too
    // (e.g. a key file that prepare would create).
    for issue in &plan.warnings {
        eprintln!(
            "warning [{}] {} ({})",
            issue.issue.code, issue.issue.message, issue.plugin
        );
    }
    for collision in &plan.collisions {
        eprintln!("warning: {collision}");
    }
    let options = Options {
        repo_name: repo
            .root
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| "repo".into()),
        repo_root: repo.root.clone(),
        root_from_output: match &target {
            Some(target) => export::relative_path(&target.dir, &repo.root),
            None => PathBuf::from("."),
        },
        images,
        regenerate: regenerate(args, format, target.as_ref(), &repo.root),
    };
    let files = export::export(format, &plan, &options).map_err(|err| match err {
        ExportError::Image { .. } => anyhow::Error::new(Usage(err.to_string())),
        other => other.into(),
    })?;
    match target {
        Some(target) => target.write(&files)?,
        None => {
            for file in &files {
                match file.role {
                    Role::Main => out!("{}", file.text),
                    _ => eprintln!(
                        "devctl export: {} is not written when printing; pass -o DIR to write it too",
                        file.name
                    ),
                }
            }
        }
    }
    Ok(0)
}

/// Where `-o` puts the files.
struct Target {
    /// Absolute, symlinks resolved where it exists.
    dir: PathBuf,
    /// The main file's path.
    main: PathBuf,
}

impl Target {
    /// `output` is a directory when it exists as one or ends with `/`.
    fn of(output: &Path, format: Format) -> Result<Target> {
        if output.as_os_str().is_empty() {
            return Err(Usage("-o needs a file or a directory".into()).into());
        }
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let path = cwd.join(output);
        let is_dir = path.is_dir() || output.as_os_str().to_string_lossy().ends_with('/');
        let (dir, main_name) = if is_dir {
            (path.clone(), PathBuf::from(format.file_name()))
        } else {
            let name = path
                .file_name()
                .map(PathBuf::from)
                .ok_or_else(|| Usage(format!("-o {}: not a file name", output.display())))?;
            (path.parent().unwrap_or(&cwd).to_path_buf(), name)
        };
        let dir = dir.canonicalize().unwrap_or(dir);
        Ok(Target {
            main: dir.join(main_name),
            dir,
        })
    }

    fn path_of(&self, file: &File) -> PathBuf {
        match file.role {
            Role::Main => self.main.clone(),
            _ => self.dir.join(&file.name),
        }
    }

    /// Checks every file first, so a refusal leaves them all as they were.
    fn write(&self, files: &[File]) -> Result<()> {
        let mut writes = Vec::new();
        for file in files {
            let path = self.path_of(file);
            let exists = std::fs::symlink_metadata(&path).is_ok();
            match file.role {
                Role::Skeleton if exists => {
                    eprintln!(
                        "devctl export: kept {} (it holds your values)",
                        path.display()
                    );
                    continue;
                }
                Role::Skeleton => writes.push((path, file, 0o600)),
                Role::Main | Role::Companion => {
                    if exists {
                        replaceable(&path)?;
                    }
                    writes.push((path, file, 0o644));
                }
            }
        }
        for (path, file, mode) in writes {
            write_atomically(&path, file.text.as_bytes(), mode)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("devctl export: wrote {}", path.display());
        }
        Ok(())
    }
}

/// A file devctl export may replace: a regular file that starts with its
/// header.
fn replaceable(path: &Path) -> Result<()> {
    use std::io::Read as _;
    let refuse = |why: &str| {
        anyhow::anyhow!(
            "{} {why}, so devctl export does not replace it\n  fix: move it away, or pass another -o",
            path.display()
        )
    };
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.file_type().is_file() {
        return Err(refuse("is not a regular file"));
    }
    let mut start = vec![0; GENERATED_MARK.len()];
    let read = std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut start))
        .is_ok();
    if !read || start != GENERATED_MARK.as_bytes() {
        return Err(refuse(
            "was not written by devctl export (it lacks its header)",
        ));
    }
    Ok(())
}

/// The command that makes the same files again, run from the repo root.
fn regenerate(args: &ExportArgs, format: Format, target: Option<&Target>, root: &Path) -> String {
    let mut words = vec!["devctl".to_owned(), "export".into(), format.name().into()];
    for id in &args.without {
        words.extend(["--without".into(), export::shell_word(id)]);
    }
    for image in &args.image {
        words.extend(["--image".into(), export::shell_word(image)]);
    }
    if let Some(target) = target {
        let path = target.main.strip_prefix(root).unwrap_or(&target.main);
        words.extend(["-o".into(), export::shell_word(&path.to_string_lossy())]);
    }
    words.join(" ")
}
