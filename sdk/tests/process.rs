//! `sdk::host::process` against real processes: a descendant that calls
//! `setsid` and double-forks away from its parent is still found (by its
//! lineage mark, re-parented to us as a child subreaper), stopped, and
//! reaped; and "gone" is only said of processes that are gone.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use devctl_sdk::host::{
    become_child_subreaper, liveness, process_id, reap_adopted, signal_process, Lineage, Liveness,
    ProcessTable, Signal,
};

/// Forks a child that calls setsid and forks again, prints the grandchild's
/// pid, and exits at once: the grandchild has left both the process tree
/// and the process group of the root.
const ESCAPE: &str = r#"
import os, sys, time
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        time.sleep(300)
        os._exit(0)
    os._exit(0)
os.wait()
print(os.read(r, 32).decode(), flush=True)
"#;

#[test]
fn a_setsid_double_forked_descendant_is_found_stopped_and_reaped() {
    become_child_subreaper().expect("this Linux process can be a child subreaper");
    let lineage = Lineage::new();
    let (var, value) = lineage.env();
    let mut root = Command::new("python3")
        .args(["-c", ESCAPE])
        .env(var, value)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let root_id = process_id(root.id()).expect("the root runs until it has printed");
    // One line, not to EOF: the grandchild keeps the pipe open.
    let mut out = String::new();
    std::io::BufReader::new(root.stdout.take().expect("piped"))
        .read_line(&mut out)
        .expect("the grandchild's pid");
    root.wait().expect("the root exits");
    let escaped = process_id(out.trim().parse().expect("a pid")).expect("the grandchild runs");

    let table = ProcessTable::read().expect("/proc is readable");
    assert!(
        !table.descendants(root_id.pid).contains(&escaped),
        "the grandchild is not linked to the root any more"
    );
    let members = lineage.members(root_id).expect("/proc is readable");
    assert!(
        members.contains(&escaped),
        "the lineage mark finds it: {members:?}"
    );
    assert!(
        table.descendants(std::process::id()).contains(&escaped),
        "as a child subreaper, this process adopted it"
    );

    assert!(signal_process(escaped, Signal::SIGKILL));
    let deadline = Instant::now() + Duration::from_secs(5);
    // Gone first (a zombie is gone), then reaped: no /proc entry at all.
    while std::path::Path::new(&format!("/proc/{}", escaped.pid)).exists() {
        reap_adopted(escaped);
        assert!(
            Instant::now() < deadline,
            "the grandchild survived SIGKILL or was never reaped: {:?}",
            liveness(escaped)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(liveness(escaped), Liveness::Gone);
}

#[test]
fn gone_means_gone_and_a_reused_pid_is_not_the_same_process() {
    let mut child = Command::new("sleep")
        .arg("300")
        .spawn()
        .expect("sleep runs");
    let id = process_id(child.id()).expect("sleep runs until killed");
    assert_eq!(liveness(id), Liveness::Alive);
    let impostor = devctl_sdk::host::ProcessId {
        start_time: id.start_time + 1,
        ..id
    };
    assert_eq!(liveness(impostor), Liveness::Gone, "same pid, other start");
    assert!(
        !signal_process(impostor, Signal::SIGKILL),
        "never signalled"
    );
    assert_eq!(liveness(id), Liveness::Alive);
    assert!(signal_process(id, Signal::SIGKILL));
    child.wait().expect("reaped");
    assert_eq!(liveness(id), Liveness::Gone);
}
