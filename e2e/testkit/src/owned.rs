//! Child processes that cannot outlive the process that started them.
//!
//! Three mechanisms together guarantee that nothing is left running after a test run, a crash or a
//! Ctrl-C:
//!
//! * every child gets `PR_SET_PDEATHSIG = SIGKILL`. Linux delivers it when the *thread* that forked
//!   the child exits, not the process, so all children are forked by one spawner thread that lives
//!   as long as the process (a tokio blocking-pool thread, for example, exits after 10 s idle and
//!   would take its children with it);
//! * every child leads its own process group: a terminal's Ctrl-C reaches only the parent, which
//!   decides how to stop its children, and [`signal_group`] reaches grandchildren too;
//! * live children are registered, so [`reap_all`] (for example from an `atexit` handler installed
//!   with [`reap_all_at_exit`]) can stop them gracefully when the process exits normally.
//!
//! A child must be waited for with [`wait`] or [`try_wait`] (not `Child::wait`) so that it leaves
//! the registry exactly when it is reaped and its pid can never be confused with a reused one.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

struct Registry {
    live: BTreeSet<u32>,
    closed: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    live: BTreeSet::new(),
    closed: false,
});

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("weft-child-spawner".into())
            .spawn(move || {
                // Lives as long as the process: the sender is in a static and never dropped.
                for (cmd, reply) in rx {
                    let _ = reply.send(spawn_here(cmd));
                }
            })
            .expect("start the child-spawner thread");
        Mutex::new(tx)
    })
}

fn spawn_here(mut cmd: Command) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe functions
    // (prctl, getppid) without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl: then nobody would send the signal.
            if libc::getppid() != parent {
                return Err(io::Error::other("parent exited before exec"));
            }
            Ok(())
        });
    }
    let mut reg = registry();
    if reg.closed {
        return Err(io::Error::other("the process is shutting down; no new children"));
    }
    let child = cmd.spawn()?;
    reg.live.insert(child.id());
    Ok(child)
}

/// Spawns `cmd` as an owned child: killed (SIGKILL) if this process dies, in its own process group,
/// and registered for [`reap_all`]. Wait for it with [`wait`] or [`try_wait`].
pub fn spawn(cmd: Command) -> io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    spawner()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, tx))
        .map_err(|_| io::Error::other("child-spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| io::Error::other("child-spawner thread is gone"))?
}

/// Non-blocking wait; a reaped child leaves the registry.
pub fn try_wait(child: &mut Child) -> io::Result<Option<ExitStatus>> {
    let mut reg = registry();
    let status = child.try_wait()?;
    if status.is_some() {
        reg.live.remove(&child.id());
    }
    Ok(status)
}

/// Blocks until the child exits, reaps it and removes it from the registry.
pub fn wait(child: &mut Child) -> io::Result<ExitStatus> {
    let pid = child.id();
    // Wait for the exit without reaping (WNOWAIT), so that the pid stays reserved until it has been
    // removed from the registry under its lock.
    loop {
        // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid on our own child with a valid pointer.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // Already reaped (ECHILD): fall through to `try_wait`, which reports the cached status.
            Some(libc::ECHILD) => break,
            _ => return Err(err),
        }
    }
    let mut reg = registry();
    let status = child.wait();
    reg.live.remove(&pid);
    status
}

/// Sends `signal` to the process group led by `pid` (the child and anything it started).
pub fn signal_group(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a process group we created; failure (already gone) is harmless.
    unsafe {
        libc::kill(-(pid as libc::pid_t), signal);
    }
}

/// The owned children that have not been reaped yet.
pub fn live_children() -> Vec<u32> {
    registry().live.iter().copied().collect()
}

/// Stops every owned child and refuses new ones: SIGTERM to each process group, then SIGKILL to the
/// groups still alive after `grace`. Returns the pids that needed SIGKILL.
pub fn reap_all(grace: Duration) -> Vec<u32> {
    let pids: Vec<u32> = {
        let mut reg = registry();
        reg.closed = true;
        reg.live.iter().copied().collect()
    };
    for &pid in &pids {
        signal_group(pid, libc::SIGTERM);
    }
    let alive = |pid: u32| {
        // Zombies count as gone: they no longer run. Children are reaped by their owners' waits.
        // SAFETY: kill with signal 0 only checks for existence.
        let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
        exists && !is_zombie(pid)
    };
    let deadline = Instant::now() + grace;
    let mut remaining: Vec<u32> = pids.clone();
    while !remaining.is_empty() && Instant::now() < deadline {
        remaining.retain(|&pid| alive(pid));
        if !remaining.is_empty() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    remaining.retain(|&pid| alive(pid));
    for &pid in &remaining {
        signal_group(pid, libc::SIGKILL);
    }
    // Grandchildren in the groups of children that exited on SIGTERM.
    for &pid in &pids {
        signal_group(pid, libc::SIGKILL);
    }
    remaining
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Installs (once) an `atexit` handler that runs [`reap_all`] with `grace` when the process exits
/// normally (`std::process::exit`, which is how the test harness ends), followed by `then` (for
/// example removing a run directory). Crashes and signals are covered by `PR_SET_PDEATHSIG` instead.
pub fn reap_all_at_exit(grace: Duration, then: fn()) {
    static HOOK: OnceLock<(Duration, fn())> = OnceLock::new();
    extern "C" fn at_exit() {
        if let Some((grace, then)) = HOOK.get() {
            reap_all(*grace);
            then();
        }
    }
    if HOOK.set((grace, then)).is_ok() {
        // SAFETY: registering a plain extern "C" function without captured state.
        unsafe {
            libc::atexit(at_exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_child_is_registered_until_reaped_and_leads_its_group() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut child = spawn(cmd).expect("spawn sleep");
        let pid = child.id();
        assert!(live_children().contains(&pid));
        // SAFETY: getpgid on our child.
        let pgid = unsafe { libc::getpgid(pid as libc::pid_t) };
        assert_eq!(pgid, pid as libc::pid_t, "child leads its own process group");
        signal_group(pid, libc::SIGTERM);
        let status = wait(&mut child).expect("wait");
        assert!(!status.success());
        assert!(!live_children().contains(&pid));
    }

    #[test]
    fn owned_child_outlives_the_thread_that_asked_for_it() {
        // PR_SET_PDEATHSIG fires when the forking thread exits; children must be forked by the
        // long-lived spawner thread, so a short-lived requesting thread must not take them along.
        let mut child = std::thread::spawn(|| {
            let mut cmd = Command::new("sleep");
            cmd.arg("30");
            spawn(cmd).expect("spawn sleep")
        })
        .join()
        .expect("requesting thread");
        let deadline = Instant::now() + Duration::from_millis(300);
        while Instant::now() < deadline {
            assert!(
                matches!(try_wait(&mut child), Ok(None)),
                "child died with the requesting thread"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        signal_group(child.id(), libc::SIGKILL);
        assert!(!wait(&mut child).expect("wait").success());
    }
}
