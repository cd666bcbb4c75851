//! port-filters on a null port (no device, no root): the answers of a driver without
//! filters are printed as refusals and counted in the exit code; wrong options exit 2.
//! The same app against an SR-IOV VF, whose PF answers, runs in the ci/vm guest.

use std::process::Command;

const APP: &str = env!("CARGO_BIN_EXE_port-filters");

fn run(app_args: &[&str]) -> (i32, String, String) {
    // Each run its own runtime directory: the tests run in parallel.
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let prefix = format!("pf{}x{n}", std::process::id());
    let out = Command::new(APP)
        .args(["--file-prefix", &prefix])
        .args(["--no-huge", "-m", "64", "--vdev", "net_null0", "--"])
        .args(app_args)
        .output()
        .expect("port-filters runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_request_gets_one_line_and_refusals_set_the_exit_code() {
    let (rc, out, err) = run(&[
        "--mtu",
        "9000",
        "--mc",
        "01:00:5e:00:00:01",
        "--vlan",
        "5",
        "--promisc",
        "on",
    ]);
    assert_eq!(rc, 1, "two refusals\n{out}{err}");
    assert!(out.starts_with("PORT 0 net_null mac "), "{out}");
    assert!(
        out.contains("\nREQUEST mtu 9000 OK\n"),
        "scatter was asked for: {out}"
    );
    assert!(
        out.contains(
            "\nREQUEST mc 01:00:5e:00:00:01 REFUSED this driver has no multicast filter list"
        ),
        "{out}"
    );
    assert!(
        out.contains("\nREQUEST vlan-add 5 REFUSED this driver has no VLAN filter"),
        "{out}"
    );
    assert!(out.contains("\nREQUEST promisc on OK\n"), "{out}");
    assert!(out.contains("\nXSTAT rx_good_packets 0\n"), "{out}");
}

#[test]
fn a_request_list_that_is_all_done_exits_0() {
    let (rc, out, err) = run(&["--promisc", "off"]);
    assert_eq!(rc, 0, "{out}{err}");
    assert!(out.contains("REQUEST promisc off OK"), "{out}");
}

#[test]
fn wrong_input_is_refused_with_code_2() {
    let (rc, out, err) = run(&["--mc", "01:00:5e:00:00:01", "--promisc", "maybe"]);
    assert_eq!(rc, 2, "{out}{err}");
    assert!(err.contains("maybe"), "{err}");
    let (rc, _, err) = run(&["--port", "3"]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("there are 1 ports"), "{err}");
    // A unicast address in the multicast list: refused by the port, before the driver.
    let (rc, out, _) = run(&["--mc", "02:00:00:00:00:01"]);
    assert_eq!(rc, 1);
    assert!(out.contains("is not a multicast address"), "{out}");
}
