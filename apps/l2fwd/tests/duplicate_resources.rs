//! Two ports claiming one exclusive resource (a kernel interface, a memif or vhost-user
//! socket) are refused before anything is probed: exit code 2, one line naming both
//! ports and what to do, and nothing changed on the machine (interface flags,
//! promiscuity and XDP state as before, no interface or socket file created).
//!
//! The interface cases need root (a private network namespace); without it they print
//! why and pass (and fail under `PMD_REQUIRE_ALL=1`). The socket cases run as anyone.

mod common;

use common::{Finished, Proc, L2FWD};
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::ExclusiveResource;
use pmd_testkit::{unique, NetNs, TempDir};
use std::process::Command;
use std::time::Duration;

/// Runs l2fwd (inside `ns` if given) with `--no-huge`, a unique file prefix and two
/// `--vdev`s, and waits for it to exit.
fn l2fwd(ns: Option<&NetNs>, vdev0: &str, vdev1: &str) -> Finished {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns.name(), L2FWD]);
            c
        }
        None => Command::new(L2FWD),
    };
    let prefix = unique("l2fwdt-dup");
    cmd.args(["-l", "0", "--no-huge", "--file-prefix", &prefix])
        .args(["--vdev", vdev0, "--vdev", vdev1])
        .args(["--", "-p", "0x3"]);
    let mut p = Proc::spawn(cmd);
    match p.wait(Duration::from_secs(10)) {
        Some(status) => Finished {
            status,
            stdout: p.stdout(),
            stderr: p.stderr(),
        },
        None => panic!("l2fwd still running after 10 s\n{}", p.transcript()),
    }
}

/// Asserts that `r` exited with code 2 and stderr has `line`, and nothing else ran.
fn assert_refused(r: &Finished, line: &str) {
    let t = r.transcript();
    assert_eq!(r.code(), Some(2), "{t}");
    assert!(
        r.stderr.contains(&format!("l2fwd: {line}\n")),
        "stderr should say {line:?}\n{t}"
    );
    assert!(!t.contains("panicked"), "{t}");
    assert!(!r.stderr.contains("probed"), "{t}");
    assert!(!r.stdout.contains("Bye..."), "{t}");
}

/// The state of every interface in `ns` that a refusal must leave alone: flags,
/// promiscuity count, XDP program, queues (`ip -d link show`, which has no counters).
fn links(ns: &NetNs) -> String {
    ns.ip(&["-d", "link", "show"])
}

/// A namespace holding the veth pair `dup_a` <-> `dup_b`, or `None` if we cannot have one.
fn veth_ns(test: &str) -> Option<NetNs> {
    let ns = NetNs::new("l2fwdt-dup", test)?;
    ns.veth("dup_a", "dup_b");
    Some(ns)
}

/// Two ports of one interface-binding driver on `dup_a`: refused, links unchanged.
fn same_interface_is_refused(test: &str, driver: &str) {
    let Some(ns) = veth_ns(test) else {
        return;
    };
    let before = links(&ns);
    let r = l2fwd(
        Some(&ns),
        &format!("{driver}0,iface=dup_a"),
        &format!("{driver}1,iface=dup_a"),
    );
    assert_refused(
        &r,
        &format!(
            "{driver}1: interface dup_a is already used by {driver}0: give each port its own interface"
        ),
    );
    assert_eq!(links(&ns), before, "the interfaces changed");
}

#[test]
fn af_packet_ports_on_one_interface_are_refused() {
    same_interface_is_refused(
        "af_packet_ports_on_one_interface_are_refused",
        "net_af_packet",
    );
}

#[test]
fn af_xdp_ports_on_one_interface_are_refused() {
    same_interface_is_refused("af_xdp_ports_on_one_interface_are_refused", "net_af_xdp");
}

#[test]
fn tap_ports_on_one_existing_tap_are_refused() {
    const TEST: &str = "tap_ports_on_one_existing_tap_are_refused";
    let Some(ns) = NetNs::new("l2fwdt-dup", TEST) else {
        return;
    };
    ns.ip(&[
        "tuntap",
        "add",
        "dev",
        "duptap",
        "mode",
        "tap",
        "multi_queue",
    ]);
    let before = links(&ns);
    let r = l2fwd(Some(&ns), "net_tap0,iface=duptap", "net_tap1,iface=duptap");
    assert_refused(
        &r,
        "net_tap1: interface duptap is already used by net_tap0: give each port its own interface",
    );
    assert_eq!(links(&ns), before, "the interfaces changed");
}

#[test]
fn tap_ports_creating_one_interface_create_nothing() {
    const TEST: &str = "tap_ports_creating_one_interface_create_nothing";
    let Some(ns) = NetNs::new("l2fwdt-dup", TEST) else {
        return;
    };
    let before = links(&ns);
    let r = l2fwd(Some(&ns), "net_tap0,iface=dtap1", "net_tap1");
    assert_refused(
        &r,
        "net_tap1: interface dtap1 is already used by net_tap0: give each port its own interface",
    );
    assert_eq!(links(&ns), before, "an interface was created");
}

#[test]
fn different_drivers_on_one_interface_are_refused() {
    const TEST: &str = "different_drivers_on_one_interface_are_refused";
    let Some(ns) = veth_ns(TEST) else {
        return;
    };
    let before = links(&ns);
    let r = l2fwd(
        Some(&ns),
        "net_af_packet0,iface=dup_a",
        "net_af_xdp0,iface=dup_a",
    );
    assert_refused(
        &r,
        "net_af_xdp0: interface dup_a is already used by net_af_packet0: give each port its own interface",
    );
    assert_eq!(links(&ns), before, "the interfaces changed");
}

#[test]
fn memif_servers_on_one_socket_are_refused_before_binding() {
    let dir = TempDir::new("l2fwdt-dup");
    let sock = dir.file("memif.sock");
    let sock = sock.display();
    // Two spellings of one path are one socket.
    let r = l2fwd(
        None,
        &format!("net_memif0,role=server,id=0,socket={sock},socket-abstract=no"),
        &format!(
            "net_memif1,role=server,id=1,socket={}/./memif.sock,socket-abstract=no",
            dir.path().display()
        ),
    );
    assert_refused(
        &r,
        &format!(
            "net_memif1: memif server socket {sock} is already used by net_memif0: give each server port its own socket"
        ),
    );
    assert_eq!(
        dir.entries(),
        Vec::<String>::new(),
        "a socket file was created"
    );
}

#[test]
fn memif_clients_with_one_id_on_one_socket_are_refused() {
    let dir = TempDir::new("l2fwdt-dup");
    let sock = dir.file("memif.sock");
    let sock = sock.display();
    let r = l2fwd(
        None,
        &format!("net_memif0,role=client,id=3,socket={sock},socket-abstract=no"),
        &format!("net_memif1,role=client,id=3,socket={sock},socket-abstract=no"),
    );
    assert_refused(
        &r,
        &format!(
            "net_memif1: memif socket {sock} id 3 is already used by net_memif0: give each client port on one socket its own id"
        ),
    );
    assert_eq!(
        dir.entries(),
        Vec::<String>::new(),
        "a socket file was created"
    );
}

#[test]
fn abstract_memif_clients_with_one_id_are_refused() {
    let name = unique("l2fwdt-dup-memif");
    let r = l2fwd(
        None,
        &format!("net_memif0,socket={name}"),
        &format!("net_memif1,socket={name},id=0"),
    );
    assert_refused(
        &r,
        &format!(
            "net_memif1: memif socket @{name} id 0 is already used by net_memif0: give each client port on one socket its own id"
        ),
    );
}

#[test]
fn virtio_user_ports_on_one_socket_are_refused() {
    let dir = TempDir::new("l2fwdt-dup");
    let sock = dir.file("vhost.sock");
    let sock = sock.display();
    let r = l2fwd(
        None,
        &format!("net_virtio_user0,path={sock}"),
        &format!("net_virtio_user1,path={sock}"),
    );
    assert_refused(
        &r,
        &format!(
            "net_virtio_user1: vhost-user socket {sock} is already used by net_virtio_user0: give each port its own back end socket"
        ),
    );
    assert_eq!(
        dir.entries(),
        Vec::<String>::new(),
        "a socket file was created"
    );
}

/// What the registered driver of `spec` says it holds alone.
fn claim(spec: &str) -> Option<ExclusiveResource> {
    let vdev: VdevSpec = spec.parse().unwrap();
    let driver = pmd_drivers::ALL
        .iter()
        .find(|d| d.name() == vdev.driver_prefix())
        .unwrap();
    driver.exclusive_resource(&vdev)
}

#[test]
fn what_memif_virtio_and_tap_allow_is_not_a_conflict() {
    let different = |a: &str, b: &str| {
        let (ca, cb) = (claim(a), claim(b));
        assert!(ca.is_none() || ca != cb, "{a} and {b} both claim {ca:?}");
    };
    // A server and a client of one socket and id: a loopback in one process.
    different(
        "net_memif0,role=server,socket=/run/x.sock,socket-abstract=no",
        "net_memif1,role=client,socket=/run/x.sock,socket-abstract=no",
    );
    // Clients of one socket with different ids; one name, abstract and as a path.
    different("net_memif0,socket=m,id=1", "net_memif1,socket=m,id=2");
    different(
        "net_memif0,socket=/run/x.sock",
        "net_memif1,socket=/run/x.sock,socket-abstract=no",
    );
    // A name template: the kernel picks a new interface for each port.
    different("net_tap0,iface=t%d", "net_tap1,iface=t%d");
    different("net_tap0", "net_tap1");
    different(
        "net_virtio_user0,path=/tmp/a.sock",
        "net_virtio_user1,path=/tmp/b.sock",
    );
    // Drivers that hold nothing alone.
    different("net_null0", "net_null1");
    // Arguments a driver cannot read claim nothing (probing reports them).
    assert_eq!(claim("net_af_packet0,iface=a,bogus=1"), None);
}
