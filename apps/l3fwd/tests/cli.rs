//! Wrong input is refused at the edge: one line saying what is wrong (for a route file,
//! its line number and why), exit code 2, and nothing started (no runtime directory).

use pmd_testkit::{unique, Proc, TempDir};
use std::process::Command;
use std::time::Duration;

const L3FWD: &str = env!("CARGO_BIN_EXE_l3fwd");

/// Runs l3fwd on lcores `lcores` and two null ports with `app` after `--`; returns (exit
/// code, stdout, stderr, prefix).
fn run_on(lcores: &str, app: &[String]) -> (Option<i32>, String, String, String) {
    let prefix = unique("l3cli");
    let mut cmd = Command::new(L3FWD);
    cmd.args([
        "-l",
        lcores,
        "--no-huge",
        "-m",
        "128",
        "--no-pci",
        "--file-prefix",
        &prefix,
    ])
    .args(["--vdev", "net_null0", "--vdev", "net_null1", "--"])
    .args(app);
    let mut p = Proc::spawn(cmd);
    let st = p.wait(Duration::from_secs(20)).expect("l3fwd did not exit");
    (st.code(), p.stdout(), p.stderr(), prefix)
}

/// [`run_on`] lcore 0: (exit code, stderr, prefix).
fn run(app: &[String]) -> (Option<i32>, String, String) {
    let (code, _, err, prefix) = run_on("0", app);
    (code, err, prefix)
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["-p".into(), "0x3".into(), "--duration".into(), "0.1".into()];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn a_malformed_route_file_is_refused_with_its_line_and_reason() {
    let dir = TempDir::new("l3cli");
    let cases = [
        (
            "lpm",
            "R198.18.0.0/24 0\nR198.18.1.0/40 1\n",
            "line 2: prefix length 40 is above 32",
        ),
        (
            "lpm",
            "# ok\nR198.18.0.0/24 0\nfoo\n",
            "line 3: not a route",
        ),
        (
            "lpm",
            "R198.18.0.0/24 300\n",
            "line 1: output port 300 is above 255",
        ),
        (
            "em",
            "R198.18.0.0 198.18.0.1 9 9 0x11\n",
            "line 1: the output port is missing",
        ),
        (
            "em",
            "R198.18.0.0 nowhere 9 9 0x11 0\n",
            "line 1: source \"nowhere\" is not an IPv4 address",
        ),
        ("lpm", "\n# only comments\n", "no route in it"),
    ];
    for (i, (lookup, text, want)) in cases.iter().enumerate() {
        let f = dir.path().join(format!("r{i}.cfg"));
        std::fs::write(&f, text).unwrap();
        let (code, err, prefix) = run(&args(&[
            &format!("--lookup={lookup}"),
            &format!("--rule_ipv4={}", f.display()),
        ]));
        assert_eq!(code, Some(2), "{text:?}: {err}");
        assert!(
            err.contains(&f.display().to_string()) && err.contains(want),
            "{text:?}: want {want:?} in {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            !std::path::Path::new("/var/run/dpdk").join(&prefix).exists(),
            "nothing started"
        );
    }
    let (code, err, _) = run(&args(&["--rule_ipv6=/nonexistent/v6.cfg"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("/nonexistent/v6.cfg: "), "{err}");
}

#[test]
fn wrong_options_are_refused() {
    for (extra, want) in [
        (&["--lookup=fib"][..], "use lpm or em"),
        (&["--lookup=acl"], "use lpm or em"),
        (&["--mode=eventdev"], "use poll"),
        (&["--config=(0,0)"], "expected port,queue,lcore"),
        (&["--eth-dest=1,zz:00:00:00:00:00"], "--eth-dest"),
        (&["--max-pkt-len=20000"], "max-pkt-len"),
    ] {
        let (code, err, _) = run(&args(extra));
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: want {want:?} in {err}");
    }
    // Checked against the ports and lcores the EAL found.
    for (extra, want) in [
        (
            &["--config=(2,0,0)"][..],
            "port 2 in --config is not in the portmask 0x3",
        ),
        (
            &["--config=(0,0,1),(1,0,0)"],
            "lcore 1 in --config is not one of the EAL's lcores",
        ),
        (&["--config=(0,1,0),(1,0,0)"], "port 0 the rx queues [1]"),
    ] {
        let (code, err, _) = run(&args(extra));
        assert_eq!(code, Some(2), "{extra:?}: {err}");
        assert!(err.contains(want), "{extra:?}: want {want:?} in {err}");
    }
}

#[test]
fn two_lcores_each_poll_their_queues_and_count_what_is_not_ip() {
    // net_null frames are zeros (not IP): each is received and counted as such.
    let (code, out, err, _) = run_on("0,1", &args(&["--config=(0,0,0),(1,0,1)"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.contains("Lcore 0: RX port 0 queue 0") && out.contains("Lcore 1: RX port 1 queue 0"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("l3fwd: received"))
        .expect("final line");
    let num = |label: &str| pmd_testkit::number_after(line, label).unwrap();
    assert!(num("received") > 0, "{line}");
    assert_eq!(num("not IP"), num("received"), "{line}");
    assert_eq!(num("forwarded"), 0, "{line}");
}
