//! Helpers shared by the l2fwd integration tests: running the binary with bounded waits
//! and parsing its statistics table. Namespaces, veth pairs, raw sockets and unique names
//! come from `pmd-testkit`.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod tcp;

pub use pmd_testkit::Proc;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// The l2fwd binary cargo built for these tests.
pub const L2FWD: &str = env!("CARGO_BIN_EXE_l2fwd");

// ---- running l2fwd -----------------------------------------------------------------

/// The result of a finished run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn transcript(&self) -> String {
        format!(
            "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Runs l2fwd with `args` to completion; panics (with the output so far) if it takes
/// longer than `timeout`, after killing it.
pub fn run_l2fwd(args: &[&str], timeout: Duration) -> Finished {
    let mut cmd = Command::new(L2FWD);
    cmd.args(args);
    let mut p = Proc::spawn(cmd);
    match p.wait(timeout) {
        Some(status) => Finished {
            status,
            stdout: p.stdout(),
            stderr: p.stderr(),
        },
        None => panic!(
            "l2fwd {args:?} still running after {timeout:?}\n{}",
            p.transcript()
        ),
    }
}

// ---- statistics table ----------------------------------------------------------------

/// Every value printed after `label` (e.g. "Total packets sent:"), in output order.
pub fn stat_values(text: &str, label: &str) -> Vec<f64> {
    text.lines()
        .filter_map(|l| l.find(label).map(|i| &l[i + label.len()..]))
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}
