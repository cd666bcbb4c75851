//! Child processes under test: [`Proc`] runs one with its stdout and stderr collected,
//! waits for what it prints, stops it with SIGINT as Ctrl-C would, and kills it if the
//! test ends first.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

type Buf = Arc<Mutex<Vec<u8>>>;

fn reader(mut pipe: impl Read + Send + 'static, buf: Buf) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            }
        }
    })
}

/// A running process whose stdout and stderr are collected by reader threads.
/// Killed (SIGKILL) and reaped on drop if it has not exited.
pub struct Proc {
    child: Child,
    out: Buf,
    err: Buf,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout/stderr piped.
    pub fn spawn(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let out = Buf::default();
        let err = Buf::default();
        let readers = vec![
            reader(child.stdout.take().unwrap(), out.clone()),
            reader(child.stderr.take().unwrap(), err.clone()),
        ];
        Proc {
            child,
            out,
            err,
            readers,
            status: None,
        }
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    /// Both streams, labelled, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Waits until stdout contains `needle` at least `count` times. Fails (with the
    /// output) if the process exits first or `timeout` passes.
    pub fn wait_for(
        &mut self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stdout().matches(needle).count() >= count {
                return Ok(());
            }
            if let Some(st) = self.child.try_wait().map_err(|e| e.to_string())? {
                self.status = Some(st);
                self.drain(Duration::from_secs(2));
                return Err(format!(
                    "the process exited ({st}) before printing {count} x {needle:?}\n{}",
                    self.transcript()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no {count} x {needle:?} within {timeout:?}\n{}",
                    self.transcript()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit, then for the readers to reach end of file.
    /// `None` if it is still running after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while self.status.is_none() {
            match self.child.try_wait() {
                Ok(Some(st)) => self.status = Some(st),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => return None,
            }
        }
        self.drain(Duration::from_secs(2));
        self.status
    }

    /// Sends SIGINT (Ctrl-C) and waits up to `timeout` for it to exit.
    pub fn interrupt(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.signal(libc::SIGINT);
        self.wait(timeout)
    }

    /// Sends `sig` to it (nothing if it has exited).
    pub fn signal(&mut self, sig: libc::c_int) {
        if self.status.is_none() {
            // SAFETY: kill takes a pid and a signal number; the child is ours and not
            // reaped yet (status is None), so the pid names it.
            unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        }
    }

    /// Joins the reader threads that finish within `timeout`.
    fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for r in std::mem::take(&mut self.readers) {
            if r.is_finished() {
                let _ = r.join();
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}
