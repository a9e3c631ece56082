//! Bounded on disk: a service's log is `<svc>.log`, and when it grows past
//! [`LogLimits::bytes`] (or a new run starts) it becomes `<svc>.log.1`, the
//! `.1` becomes `.2`, and so on; at most [`LogLimits::files`] old files are
//! kept. `devctl logs` reads them oldest first, so history reads across
//! rotations.

use devctl_support::fs::{FsError, PrivateDir};

/// How big a log may grow, and how many old files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    pub bytes: u64,
    pub files: usize,
}

impl Default for LogLimits {
    /// 50 MB, 3 old files.
    fn default() -> LogLimits {
        LogLimits {
            bytes: 50_000_000,
            files: 3,
        }
    }
}

/// `name` becomes `name.1` (older ones shift, the oldest beyond `files` goes).
pub fn rotate(dir: &PrivateDir, name: &str, files: usize) -> Result<(), FsError> {
    if files == 0 {
        return dir.remove(name);
    }
    dir.remove(&format!("{name}.{files}"))?;
    for n in (1..files).rev() {
        let from = format!("{name}.{n}");
        if dir.len(&from)?.is_some() {
            dir.rename(&from, &format!("{name}.{}", n + 1))?;
        }
    }
    dir.rename(name, &format!("{name}.1"))
}

/// The files of log `name` present in `names`, oldest first (`.N` … `.1`,
/// then the current one).
pub fn files_of(name: &str, names: &[String]) -> Vec<String> {
    let mut rotated: Vec<(usize, &String)> = names
        .iter()
        .filter_map(|file| {
            let n = file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
            Some((n, file))
        })
        .collect();
    rotated.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
    let mut files: Vec<String> = rotated.into_iter().map(|(_, f)| f.clone()).collect();
    if names.iter().any(|f| f == name) {
        files.push(name.to_owned());
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_files_shift_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let logs = PrivateDir::create(dir.path()).unwrap();
        for run in 0..5 {
            logs.write_atomically("a.log", format!("run {run}").as_bytes())
                .unwrap();
            rotate(&logs, "a.log", 3).unwrap();
        }
        let names = logs.names().unwrap();
        assert_eq!(names, ["a.log.1", "a.log.2", "a.log.3"]);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.1")).unwrap(),
            "run 4"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a.log.3")).unwrap(),
            "run 2"
        );
        assert_eq!(
            files_of(
                "a.log",
                &[
                    "a.log".into(),
                    "a.log.10".into(),
                    "a.log.2".into(),
                    "ab.log".into()
                ]
            ),
            ["a.log.10", "a.log.2", "a.log"]
        );
    }
}
