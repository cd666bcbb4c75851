//! l2fwd between two in-process 82599 models driven by the unmodified ixgbe PMD: the
//! model on port 0 generates a known number of frames; port 1 must send exactly that many.

use std::process::Command;

const N: u64 = 2000;

#[test]
fn forwards_every_generated_frame_between_two_modelled_82599s() {
    let out = Command::new(env!("CARGO_BIN_EXE_l2fwd"))
        .args(["--no-huge", "-l", "0"])
        .args(["--vdev", &format!("net_ixgbe_model0,gen={N},flows=16")])
        .args(["--vdev", "net_ixgbe_model1"])
        .args([
            "--",
            "-p",
            "0x3",
            "-q",
            "2",
            "-T",
            "0",
            "--txd",
            "4096",
            "--duration",
            "3",
        ])
        .output()
        .expect("run l2fwd");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let total = |label: &str| -> u64 {
        text.lines()
            .rev()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label}\n{text}"))
    };
    assert_eq!(total("Total packets received:"), N, "{text}");
    assert_eq!(total("Total packets sent:"), N, "{text}");
    assert_eq!(total("Total packets dropped:"), 0, "{text}");
    assert!(text.contains("TSC cycles per packet"), "{text}");
}
