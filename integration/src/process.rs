//! Child processes that cannot outlive their parent.
//!
//! Each child is spawned with `PR_SET_PDEATHSIG` so the kernel sends it SIGTERM when its parent
//! goes away, even if the parent is killed or a test binary exits without running destructors.
//! The signal is tied to the spawning *thread*, so children are spawned from one long-lived
//! thread that lives as long as the process.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::sync::mpsc;

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static mpsc::Sender<SpawnRequest> {
    static SPAWNER: OnceLock<mpsc::Sender<SpawnRequest>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("keyward-child-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(command.spawn());
                }
                // The channel is held by a static, so this loop only ends with the process.
            })
            .expect("spawn the child-spawner thread");
        tx
    })
}

/// A child that is killed when dropped, and by the kernel if this process dies first.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    name: String,
}

impl Supervised {
    pub fn spawn(name: &str, mut command: Command) -> std::io::Result<Self> {
        // SAFETY: prctl and getppid are async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other(
                        "parent exited before the child started",
                    ));
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner()
            .send((command, tx))
            .map_err(|_| std::io::Error::other("child-spawner thread is gone"))?;
        let child = rx
            .recv()
            .map_err(|_| std::io::Error::other("child-spawner thread did not answer"))??;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` if the child has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Peak resident memory (VmHWM) in KiB, read while the child runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(&self.child.id().to_string())
    }

    pub fn terminate(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        // SIGTERM first so servers (PostgreSQL) shut down cleanly, then SIGKILL.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        for _ in 0..50 {
            if self.try_wait().is_some() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// Peak resident memory (`VmHWM`) of `/proc/<process>`, in KiB; `process` is a pid or `self`.
pub fn peak_rss_kib(process: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{process}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
