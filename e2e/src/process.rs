//! A child process that a test owns: killed when the handle drops, so a failing test leaves
//! no operator or webhook behind. Stopped gracefully with [`Process::terminate`] (SIGTERM, as
//! the kubelet stops a Pod), or at once with [`Process::kill`] (a crash).

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

pub struct Process(Child);

impl Process {
    /// Start `command` with its stdout and stderr in `log` (RUST_LOG=info, no stdin).
    pub fn spawn(command: &mut Command, log: &Path) -> Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("start {:?}", command.get_program()))?;
        Ok(Process(child))
    }

    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }

    /// Send it SIGTERM, as the kubelet does to stop a Pod.
    pub fn terminate(&self) -> Result<()> {
        let status = Command::new("kill")
            .args(["-TERM", &self.id().to_string()])
            .status()
            .context("run kill -TERM")?;
        if !status.success() {
            bail!("kill -TERM {} failed ({status})", self.id());
        }
        Ok(())
    }

    /// Wait at most `within` for it to exit: its exit status, or `None` if it still runs.
    pub async fn exit_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kill it at once (a crash, as far as the cluster can tell).
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time a process has used so far (user + system, all threads), from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is field 3,
    // utime field 14, stime field 15.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / CLOCK_TICKS_PER_SECOND as f64,
    ))
}

/// How many TCP connections process `pid` holds established to `port` (on any address), from
/// `/proc`: its socket descriptors matched against the kernel's TCP tables.
pub fn connections_to(pid: u32, port: u16) -> Result<usize> {
    let mut sockets = std::collections::HashSet::new();
    let fds = format!("/proc/{pid}/fd");
    for fd in std::fs::read_dir(&fds).with_context(|| format!("read {fds}"))? {
        // A descriptor closed between the listing and the read is not a connection.
        let Ok(target) = std::fs::read_link(fd?.path()) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            sockets.insert(inode.to_string());
        }
    }
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        count += established_to(&text, port)
            .filter(|inode| sockets.contains(*inode))
            .count();
    }
    Ok(count)
}

/// The inodes of the established connections to `port` in a `/proc/net/tcp` table: after the
/// header, `sl local_address rem_address st ... inode`, addresses as `HEXADDR:HEXPORT`, state
/// `01` for established.
fn established_to(table: &str, port: u16) -> impl Iterator<Item = &str> {
    let remote = format!(":{port:04X}");
    table.lines().skip(1).filter_map(move |line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (remote_address, state, inode) = (fields.get(2)?, fields.get(3)?, fields.get(9)?);
        (remote_address.ends_with(&remote) && *state == "01").then_some(*inode)
    })
}

/// The unit of `/proc/<pid>/stat`'s CPU times: USER_HZ, which the kernel fixes at 100 for
/// this interface whatever its own tick rate (glibc's `sysconf(_SC_CLK_TCK)` answers the same
/// constant). Not asked of `getconf`: spawning a process forks, and a fork while another
/// thread holds a listener briefly keeps its port bound (see `operator::free_port`).
const CLOCK_TICKS_PER_SECOND: u64 = 100;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn own_cpu_time_is_readable_and_grows() {
        let pid = std::process::id();
        let before = super::cpu_time(pid).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(super::cpu_time(pid).unwrap() >= before);
        assert!(super::cpu_time(u32::MAX).is_none());
    }

    #[test]
    fn a_process_s_own_connection_to_a_listener_is_counted() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let pid = std::process::id();
        assert_eq!(super::connections_to(pid, port).unwrap(), 0);
        let first = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _second = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // The accepted ends are connections from the listener's port, not to it.
        let _accepted = listener.accept().unwrap();
        assert_eq!(super::connections_to(pid, port).unwrap(), 2);
        drop(first);
        assert_eq!(super::connections_to(pid, port).unwrap(), 1);
        assert!(super::connections_to(u32::MAX, port).is_err());
    }
}
