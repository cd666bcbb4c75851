//! Shared by the AF_XDP integration tests: namespaces with veth pairs, test frames,
//! probing ports, and whether the XDP program is attached (`ip link`).

#![allow(dead_code)]

use pmd_af_xdp::DRIVER;
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Device, Driver, Port, PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use pmd_testkit::{NetNs, RawSock};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Ethertype of the test frames.
pub const ETHERTYPE_TEST: u16 = 0x88b5;
/// Prefix of the namespaces these tests create.
pub const NS_PREFIX: &str = "pmdxdp";
/// How long the peer socket waits per receive.
pub const PEER_RECV_TIMEOUT: Duration = Duration::from_millis(50);

/// Why AF_XDP tests cannot run here, if they cannot: not root, or no AF_XDP sockets.
pub fn skip_reason() -> Option<String> {
    if let Some(why) = pmd_testkit::root_missing("network namespaces, AF_XDP, bpf") {
        return Some(why);
    }
    // SAFETY: plain syscall; the fd is closed right away.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Some(format!(
            "no AF_XDP sockets on this kernel ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: closing the fd we just opened.
    unsafe { libc::close(fd) };
    None
}

/// A private namespace with a veth pair `va` <-> `vb`, both up, each end with `queues`
/// rx and tx queues. `None`, after [`pmd_testkit::skip`]ping `test`, if AF_XDP tests
/// cannot run here.
pub fn netns(test: &str, queues: u16) -> Option<NetNs> {
    if !pmd_testkit::require(test, skip_reason()) {
        return None;
    }
    let ns = NetNs::new(NS_PREFIX, test)?;
    let q = queues.to_string();
    let qs = ["numtxqueues", q.as_str(), "numrxqueues", q.as_str()];
    let mut args = vec!["link", "add", "va"];
    args.extend_from_slice(&qs);
    args.extend_from_slice(&["type", "veth", "peer", "name", "vb"]);
    args.extend_from_slice(&qs);
    ns.ip(&args);
    ns.ip(&["link", "set", "va", "up"]);
    ns.ip(&["link", "set", "vb", "up"]);
    Some(ns)
}

/// A raw socket on the peer end `vb` for the test ethertype.
pub fn open_peer() -> RawSock {
    RawSock::open("vb", ETHERTYPE_TEST, PEER_RECV_TIMEOUT)
}

/// Length of test frame `seq`: 60..=1500 bytes.
pub fn frame_len(seq: u32) -> usize {
    60 + (seq as usize * 37) % 1441
}

/// An Ethernet frame of the test ethertype with `seq` in the payload and a pattern after it.
pub fn test_frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let len = frame_len(seq);
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x01]);
    f.extend_from_slice(&ETHERTYPE_TEST.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq.wrapping_mul(7)) as u8);
    }
    f
}

/// An IPv4/UDP frame whose ports vary with `seq` (so flow hashing spreads it over
/// queues), with `seq` in the payload.
pub fn udp_frame(dst: [u8; 6], seq: u32) -> Vec<u8> {
    let payload = 64 + (seq as usize * 13) % 400;
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xaa, 0x02]);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload) as u16;
    let mut ip = vec![
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 9, 0, 1, 10, 9, 0, 2,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&(10_000 + seq as u16).to_be_bytes());
    f.extend_from_slice(&(20_000 + (seq as u16).wrapping_mul(7)).to_be_bytes());
    f.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < 14 + total as usize {
        f.push(f.len() as u8 ^ seq as u8);
    }
    f
}

/// The sequence number in a test or UDP frame.
pub fn frame_seq(f: &[u8]) -> Option<u32> {
    if f.len() >= 18 && f[12..14] == ETHERTYPE_TEST.to_be_bytes() {
        return Some(u32::from_be_bytes(f[14..18].try_into().unwrap()));
    }
    if f.len() >= 46 && f[12..14] == [0x08, 0x00] && f[14 + 9] == 17 {
        return Some(u32::from_be_bytes(f[42..46].try_into().unwrap()));
    }
    None
}

/// A fresh mempool with a unique name.
pub fn pool(name: &str) -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("afxdp-{name}-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create(&n, 2048, 0).unwrap()
}

/// Probes `spec` with the AF_XDP driver.
pub fn probe(spec: &str) -> pmd_core::Result<Box<dyn Device>> {
    let vdev: VdevSpec = spec.parse().unwrap();
    assert_eq!(vdev.driver_prefix(), DRIVER.name());
    DRIVER.probe(&vdev)
}

/// Probes `spec` and configures it as port 0 with `conf`.
pub fn open_port(spec: &str, conf: PortConf) -> Port {
    let dev = probe(spec).unwrap();
    let name = spec.split(',').next().unwrap().to_string();
    let mut port = Port::new(0, name, dev);
    port.configure(&conf).unwrap();
    port
}

/// Whether `ip link` shows an XDP program on `dev` in namespace `ns` (native `xdp` or
/// `xdpgeneric`).
pub fn xdp_attached(ns: &str, dev: &str) -> bool {
    let out = pmd_testkit::ip(&["-n", ns, "link", "show", "dev", dev]).unwrap();
    out.contains("xdp")
}

/// The value of xstat `key`.
pub fn xstat(port: &Port, key: &str) -> u64 {
    let xs = port.xstats();
    xs.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no xstat {key} in {xs:?}"))
        .1
}

/// Receives on `rxqs` until `n` test frames arrived or 5 s passed; returns them by
/// sequence number, and how many each queue got. Fails on duplicates and foreign frames.
pub fn receive(rxqs: &mut [RxQueueHandle], n: usize) -> (HashMap<u32, Vec<u8>>, Vec<usize>) {
    let mut got: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut per_queue = vec![0usize; rxqs.len()];
    let mut batch = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < n && Instant::now() < deadline {
        let mut any = false;
        for (q, rxq) in rxqs.iter_mut().enumerate() {
            if rxq.rx_burst(&mut batch) > 0 {
                any = true;
            }
            for m in batch.iter() {
                let s = frame_seq(m.data()).expect("a test frame");
                assert!(got.insert(s, m.data().to_vec()).is_none(), "duplicate {s}");
                per_queue[q] += 1;
            }
            batch.clear();
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    (got, per_queue)
}

/// Sets up `queues` rx and tx queues of 512 descriptors, starts the port and waits for its link.
pub fn start(
    port: &mut Port,
    pool: &Mempool,
    queues: u16,
) -> (Vec<RxQueueHandle>, Vec<TxQueueHandle>) {
    let rx = (0..queues)
        .map(|q| port.setup_rx_queue(q, 512, pool).unwrap())
        .collect();
    let tx = (0..queues)
        .map(|q| port.setup_tx_queue(q, 512).unwrap())
        .collect();
    port.start().unwrap();
    assert!(port.wait_link_up(Duration::from_secs(2)).up);
    (rx, tx)
}
