//! DPDK's `dpdk-telemetry.py` reads a running l2fwd as it reads DPDK's testpmd: every
//! command of issue 14 is answered, keyed and shaped as DPDK 22.11 answers it (compared
//! live, [`pmd_testkit::telemetry::compare_with_dpdk`]); the counters move while l2fwd
//! forwards; l2fwd's own `/l2fwd/stats` is listed and answered; `--no-telemetry` opens
//! no socket; the runtime directory is gone after l2fwd exits. Needs `dpdk-testpmd` and
//! `dpdk-telemetry.py` (ci/setup.sh --dpdk) and root (DPDK's runtime directory).

use pmd_testkit::telemetry::{compare_with_dpdk, missing, query, wait_socket};
use pmd_testkit::{require, root_missing, unique};
use std::process::{Child, Command, Stdio};

fn l2fwd(prefix: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_l2fwd"))
        .args(["-l", "0", "--no-huge", "--file-prefix", prefix])
        .args(extra)
        .args(["--vdev", "net_null0", "--vdev", "net_null1"])
        .args(["--", "-p", "0x3", "-q", "2", "-T", "0", "--duration", "60"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start l2fwd")
}

fn stop(mut c: Child) {
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    assert!(c.wait().unwrap().success());
}

#[test]
fn dpdk_telemetry_py_reads_l2fwd_as_it_reads_dpdk() {
    let test = "dpdk_telemetry_py_reads_l2fwd_as_it_reads_dpdk";
    if !require(
        test,
        root_missing("DPDK's runtime directory").or_else(missing),
    ) {
        return;
    }
    let prefix = unique("pmd-tel-l2fwd");
    let child = l2fwd(&prefix, &[]);
    assert!(wait_socket(&prefix), "no telemetry socket");
    let ours = compare_with_dpdk(&prefix);
    let get = |cmd: &str| &ours.iter().find(|(c, _)| c == cmd).unwrap().1;
    assert_eq!(
        get("/ethdev/list")["/ethdev/list"],
        serde_json::json!([0, 1])
    );
    assert!(get("/ethdev/stats,0")["/ethdev/stats"]["ipackets"].as_u64() > Some(0));
    assert_eq!(get("/ethdev/info,0")["/ethdev/info"]["name"], "net_null0");
    assert_eq!(
        get("/eal/app_params")["/eal/app_params"],
        serde_json::json!(["-p", "0x3", "-q", "2", "-T", "0", "--duration", "60"])
    );
    let listed = get("/")["/"].as_array().unwrap().clone();
    assert!(
        listed.contains(&serde_json::json!("/l2fwd/stats")),
        "{listed:?}"
    );
    let s = query(&prefix, "/l2fwd/stats,1");
    assert!(s["/l2fwd/stats"]["sent"].as_u64() > Some(0), "{s}");
    assert_eq!(
        query(&prefix, "/l2fwd/stats,5")["/l2fwd/stats"],
        serde_json::Value::Null
    );
    stop(child);
    assert!(
        !pmd_core::telemetry::runtime_dir(&prefix).exists(),
        "runtime directory left behind"
    );
}

#[test]
fn no_telemetry_opens_no_socket() {
    let test = "no_telemetry_opens_no_socket";
    if !require(test, root_missing("DPDK's runtime directory")) {
        return;
    }
    let prefix = unique("pmd-tel-off");
    let child = l2fwd(&prefix, &["--no-telemetry"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(!pmd_core::telemetry::runtime_dir(&prefix).exists());
    stop(child);
}
