//! l2fwd between two in-process 82599 models driven by the unmodified ixgbe PMDs: the
//! model on port 0 generates a known number of frames; port 1 must send exactly that many.
//! Once on the models' physical functions (`net_ixgbe`), once on their SR-IOV virtual
//! functions (`vf=0`: `net_ixgbe_vf`, each model's PF-side mailbox peer giving the VF its
//! MAC address).

use std::process::Command;

const N: u64 = 2000;

/// Runs l2fwd on two model ports with `extra` devargs; returns its output after checking
/// every generated frame was received and sent once.
fn forward_all(extra: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_l2fwd"))
        .args(["--no-huge", "-l", "0"])
        .args([
            "--vdev",
            &format!("net_ixgbe_model0,gen={N},flows=16{extra}"),
        ])
        .args(["--vdev", &format!("net_ixgbe_model1{extra}")])
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
    text
}

#[test]
fn forwards_every_generated_frame_between_two_modelled_82599s() {
    forward_all("");
}

#[test]
fn forwards_every_generated_frame_between_two_modelled_82599_vfs() {
    let text = forward_all(",vf=0");
    // Each VF's address is the one its model's PF holds for it (the instance MAC, last
    // byte + 0x10): given over the mailbox at reset.
    assert!(
        text.contains("Port 0 (net_ixgbe_model0): MAC 02:1b:21:00:00:11"),
        "{text}"
    );
    assert!(
        text.contains("Port 1 (net_ixgbe_model1): MAC 02:1b:21:00:00:12"),
        "{text}"
    );
    // Linux's ixgbe, and the model, refuse unicast promiscuous mode to an untrusted VF:
    // l2fwd says so and forwards what reaches the VF.
    assert!(text.contains("promiscuous mode not enabled"), "{text}");
}
