//! DPDK's `dpdk-telemetry.py` against a running app, and DPDK's own answers to compare
//! with: the commands of issue 14, the same command run against our app and against
//! `dpdk-testpmd` (two `net_null` ports, interactive, so it forwards nothing), and a
//! comparison of the two replies' shapes.

use pmd_core::telemetry::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The commands compared; `{pool}` stands for the app's first `/mempool/list` entry.
pub const COMMANDS: &[&str] = &[
    "/",
    "/info",
    "/help,/ethdev/stats",
    "/ethdev/list",
    "/ethdev/stats,0",
    "/ethdev/xstats,0",
    "/ethdev/info,0",
    "/ethdev/link_status,0",
    "/ethdev/stats,9",
    "/ethdev/stats",
    "/eal/params",
    "/eal/app_params",
    "/eal/lcore/list",
    "/mempool/list",
    "/mempool/info,{pool}",
    "/no/such/command",
];

/// Why `dpdk-telemetry.py` or its DPDK peer cannot run here, if they cannot: root (both
/// use root's runtime directory), the script, `dpdk-testpmd`.
pub fn missing() -> Option<String> {
    crate::root_missing("DPDK's runtime directory")
        .or_else(|| {
            (!crate::on_path("dpdk-telemetry.py"))
                .then(|| "dpdk-telemetry.py is not installed (apt-get install dpdk)".to_string())
        })
        .or_else(crate::dpdk_missing)
}

/// Runs `dpdk-telemetry.py -f PREFIX` with `cmd` on its standard input (its
/// non-interactive use) and parses the one JSON line it prints.
pub fn query(prefix: &str, cmd: &str) -> Value {
    let mut child = Command::new("dpdk-telemetry.py")
        .args(["-f", prefix])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dpdk-telemetry.py");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{cmd}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "dpdk-telemetry.py -f {prefix} <<< {cmd}: not JSON ({e}): {text}{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Waits up to 10 s for the telemetry socket of `prefix` (under root's runtime dir).
pub fn wait_socket(prefix: &str) -> bool {
    let sock = pmd_core::telemetry::runtime_dir(prefix).join(pmd_core::telemetry::SOCKET_NAME);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if sock.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Resolves `{pool}` in `cmd` with the first pool `prefix`'s app lists.
pub fn resolve(prefix: &str, cmd: &str) -> String {
    if !cmd.contains("{pool}") {
        return cmd.to_string();
    }
    let pools = query(prefix, "/mempool/list");
    let pool = pools["/mempool/list"][0]
        .as_str()
        .unwrap_or("none")
        .to_string();
    cmd.replace("{pool}", &pool)
}

/// DPDK's answers to [`COMMANDS`]: `dpdk-testpmd` with two `net_null` ports, started,
/// queried and stopped here; its runtime directory is removed.
pub fn dpdk_reference() -> Vec<(String, Value)> {
    let prefix = crate::unique("pmd-tel-dpdk");
    let mut tp = Command::new("dpdk-testpmd")
        .args([
            "-l",
            "0,1",
            "--no-pci",
            "--no-huge",
            "-m",
            "512",
            "--file-prefix",
            &prefix,
        ])
        .args(["--vdev", "net_null0", "--vdev", "net_null1"])
        .args(["--", "-i", "--total-num-mbufs=4096"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dpdk-testpmd");
    let up = wait_socket(&prefix);
    let out = if up {
        COMMANDS
            .iter()
            .map(|c| (c.to_string(), query(&prefix, &resolve(&prefix, c))))
            .collect()
    } else {
        Vec::new()
    };
    if let Some(mut stdin) = tp.stdin.take() {
        let _ = stdin.write_all(b"quit\n");
    }
    let end = Instant::now() + Duration::from_secs(10);
    while matches!(tp.try_wait(), Ok(None)) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = tp.kill();
    let _ = tp.wait();
    let _ = std::fs::remove_dir_all(pmd_core::telemetry::runtime_dir(&prefix));
    assert!(up, "dpdk-testpmd opened no telemetry socket");
    out
}

/// Whether `ours` answers `cmd` as DPDK's `dpdk` does: the reply keyed by the command,
/// the same kind of value, and for an object at least DPDK's keys (ours may add some).
/// `/eal/lcore/list` is a list of lcore ids here where DPDK 22.11 answers `null`.
pub fn same_shape(cmd: &str, dpdk: &Value, ours: &Value) -> Result<(), String> {
    let key = cmd.split(',').next().unwrap_or(cmd);
    let (Some(d), Some(o)) = (dpdk.get(key), ours.get(key)) else {
        return Err(format!(
            "{cmd}: not keyed by {key}: dpdk {dpdk}, ours {ours}"
        ));
    };
    if key == "/eal/lcore/list" && d.is_null() {
        return o
            .as_array()
            .filter(|a| a.iter().all(Value::is_u64))
            .map(drop)
            .ok_or_else(|| format!("{cmd}: ours is not a list of lcore ids: {o}"));
    }
    let kind = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if kind(d) != kind(o) {
        return Err(format!(
            "{cmd}: dpdk gives {}, ours {}: {d} / {o}",
            kind(d),
            kind(o)
        ));
    }
    if let (Value::Object(d), Value::Object(o)) = (d, o) {
        // xstats: the generic counters every port has (a driver adds its own).
        let missing: Vec<&String> = d
            .keys()
            .filter(|k| !o.contains_key(*k))
            .filter(|k| {
                key != "/ethdev/xstats" || !(k.starts_with("rx_q") || k.starts_with("tx_q"))
            })
            .collect();
        if !missing.is_empty() {
            return Err(format!("{cmd}: ours lacks {missing:?}: {o:?}"));
        }
        for (k, dv) in d {
            if let Some(ov) = o.get(k) {
                if kind(dv) != kind(ov) && key != "/ethdev/xstats" {
                    return Err(format!(
                        "{cmd}: {k} is {} in dpdk, {} in ours",
                        kind(dv),
                        kind(ov)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Our app's replies to [`COMMANDS`], by command.
#[derive(Debug)]
pub struct Replies(Vec<(String, Value)>);

impl Replies {
    /// The reply to `cmd` (one of [`COMMANDS`], `{pool}` unresolved); panics on another.
    pub fn get(&self, cmd: &str) -> &Value {
        &self
            .0
            .iter()
            .find(|(c, _)| c == cmd)
            .unwrap_or_else(|| panic!("{cmd} is not one of the compared commands"))
            .1
    }
}

/// Runs every command of [`COMMANDS`] against the app of `prefix` and against DPDK's
/// testpmd ([`dpdk_reference`]) and checks each pair with [`same_shape`]; returns our
/// replies.
pub fn compare_with_dpdk(prefix: &str) -> Replies {
    let reference = dpdk_reference();
    let mut ours = Vec::new();
    let mut errors = Vec::new();
    for (cmd, dpdk) in &reference {
        let o = query(prefix, &resolve(prefix, cmd));
        if let Err(e) = same_shape(cmd, dpdk, &o) {
            errors.push(e);
        }
        ours.push((cmd.clone(), o));
    }
    assert!(
        errors.is_empty(),
        "replies unlike DPDK's:\n{}",
        errors.join("\n")
    );
    Replies(ours)
}
