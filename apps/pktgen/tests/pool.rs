//! pktgen's summary shows its pool once the queues are gone: every buffer back, in the
//! text summary and in the JSON object, and no leak warning. No root or hugepages needed.

use std::process::Command;

/// Exit code, stdout and stderr of pktgen on a ring loopback port with `args`.
fn pktgen_on_ring(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pktgen"))
        .args(["--no-huge", "-l", "0", "--vdev", "net_ring0", "--"])
        .args(args)
        .output()
        .expect("run pktgen");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn summary_shows_every_buffer_back() {
    let (code, out, err) = pktgen_on_ring(&["--count", "20000"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("mempool pktgen_pool: 0 in use, 16384 available of 16384"),
        "{out}"
    );
    assert!(!err.contains("warning: mempool"), "{err}");

    let (code, out, err) = pktgen_on_ring(&["--count", "20000", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let json = out.lines().last().unwrap_or_default();
    assert!(
        json.ends_with(",\"pool_in_use\":0,\"pool_available\":16384}"),
        "{json}"
    );
}
