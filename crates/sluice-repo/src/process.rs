//! Whether the process that holds a job run still exists, for owners on this host.
//!
//! A run is normally taken over only when its owner has sent no heartbeat for a while; a process
//! that was killed on this very host need not be waited for: the kernel says it is gone. The
//! check is deliberately narrow, so that a live process's run is never touched:
//! - only owners whose host name is this host's (processes elsewhere: the heartbeat decides);
//! - on Linux only, through `/proc/<pid>` (elsewhere, or without procfs: the heartbeat decides);
//! - a pid that exists (and is not a zombie) is alive, whichever program it now is: a reused pid
//!   only delays the take-over until the heartbeat is stale;
//! - this process's own pid held by an owner id this process did not make ([`Owner::current`])
//!   is a previous incarnation: a container restarted as pid 1, say.
//!
//! Host names must tell apart the pid namespaces that share a repository (as a container's
//! host name, its id, does by default).

use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

use crate::Owner;

/// This host's name, read once.
pub(crate) fn local_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    })
}

/// The owner ids this process made.
fn owners_here() -> &'static Mutex<BTreeSet<String>> {
    static IDS: OnceLock<Mutex<BTreeSet<String>>> = OnceLock::new();
    IDS.get_or_init(|| Mutex::new(BTreeSet::new()))
}

/// Records that `id` is an owner of this process.
pub(crate) fn register_owner(id: &str) {
    owners_here()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.to_owned());
}

/// Whether the process of the run owner (`id`, `host`, `pid`) is known to no longer exist: it was
/// on this host and its pid is gone (or is this process under an owner id it never made).
/// `false` whenever that cannot be known.
pub(crate) fn owner_gone(id: Option<&str>, host: Option<&str>, pid: Option<i64>) -> bool {
    let (Some(id), Some(host), Some(pid)) = (id, host, pid) else {
        return false;
    };
    if host != local_host() {
        return false;
    }
    let Ok(pid) = u32::try_from(pid) else {
        return false;
    };
    if pid == std::process::id() {
        return !owners_here()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id);
    }
    pid_gone(pid)
}

/// Whether no process `pid` exists on this host (a zombie counts as gone: it runs nothing).
#[cfg(target_os = "linux")]
fn pid_gone(pid: u32) -> bool {
    use std::path::Path;
    if pid == 0 || !Path::new("/proc/self/stat").exists() {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // `pid (comm) S …`: the state follows the last parenthesis.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| matches!(state, 'Z' | 'X' | 'x')),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Without procfs nothing is known: the heartbeat decides.
#[cfg(not(target_os = "linux"))]
fn pid_gone(_pid: u32) -> bool {
    false
}

impl Owner {
    /// Whether this owner's process is known to be gone (see the module doc).
    pub fn is_gone(&self) -> bool {
        owner_gone(Some(&self.id), Some(&self.host), Some(i64::from(self.pid)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_not_gone() {
        let me = Owner::current();
        assert!(!me.is_gone());
        let parent = std::os::unix::process::parent_id();
        assert!(!owner_gone(
            Some("x"),
            Some(local_host()),
            Some(i64::from(parent))
        ));
    }

    #[test]
    fn this_pid_under_a_foreign_owner_id_is_a_previous_incarnation() {
        let me = Owner::current();
        let before = Owner {
            id: "not-made-here".into(),
            ..me.clone()
        };
        assert!(before.is_gone());
        assert!(!me.is_gone());
    }

    #[test]
    fn a_reaped_child_is_gone_and_another_host_never_is() {
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = i64::from(child.id());
        child.wait().expect("wait for true");
        assert!(owner_gone(Some("x"), Some(local_host()), Some(pid)));
        assert!(!owner_gone(Some("x"), Some("another-host"), Some(pid)));
        assert!(!owner_gone(None, Some(local_host()), Some(pid)));
    }

    #[test]
    fn a_zombie_is_gone() {
        let child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not waited for: a zombie until reaped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pid_gone(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "child never became a zombie"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        drop(child);
    }
}
