//! Shared by the integration tests: ports' queues, sending a set of frames through one
//! queue pair and checking they arrive on the other side byte for byte and in order, and
//! reading stats and xstats.

#![allow(dead_code)]

use pmd_core::ethdev::{RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::{PktBatch, TX_IPV4, TX_TCP_SEG};
use pmd_core::{Eal, Mbuf, Mempool};
use std::time::{Duration, Instant};

/// The EAL of each test claims lcore 0: tests of one file take turns. Hold the guard
/// until the EAL is dropped.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a transfer may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Why the tests that run our EAL on hugepages cannot run here.
pub fn hugepages_reason() -> Option<String> {
    pmd_testkit::root_missing("hugepages").or_else(|| pmd_testkit::hugepages_missing(64))
}

/// Sends `frames` on `tx` and receives them on `rx` (polling `also` in between, e.g. a
/// forwarder in the middle); every frame must arrive once, in order, byte-exact.
pub fn transfer(
    what: &str,
    frames: &[Vec<u8>],
    pool: &Mempool,
    tx: &mut TxQueueHandle,
    rx: &mut RxQueueHandle,
    also: impl FnMut(),
) {
    transfer_expect(what, frames, frames, pool, tx, rx, also)
}

/// [`transfer`], where frame `i` must come back as `expect[i]` (e.g. with its MAC
/// addresses swapped by a peer).
pub fn transfer_expect(
    what: &str,
    frames: &[Vec<u8>],
    expect: &[Vec<u8>],
    pool: &Mempool,
    tx: &mut TxQueueHandle,
    rx: &mut RxQueueHandle,
    mut also: impl FnMut(),
) {
    let deadline = Instant::now() + PATIENCE;
    let (mut sent, mut got) = (0usize, 0usize);
    let mut out = PktBatch::new();
    let mut inb = PktBatch::new();
    while got < frames.len() {
        assert!(
            Instant::now() < deadline,
            "{what}: timed out: sent {sent}, received {got} of {}",
            frames.len()
        );
        while sent < frames.len() && out.len() < 32 {
            let m = Mbuf::from_slice(&frames[sent], pool).expect("pool");
            out.push(m).unwrap();
            sent += 1;
        }
        tx.tx_burst(&mut out);
        also();
        inb.clear();
        rx.rx_burst(&mut inb);
        for m in inb.iter() {
            assert!(got < frames.len(), "{what}: more frames than sent");
            let want = &expect[got];
            let have = m.to_vec();
            assert_eq!(
                have.len(),
                want.len(),
                "{what}: frame {got} length ({} segments)",
                m.nb_segs()
            );
            assert!(have == *want, "{what}: frame {got} bytes differ");
            got += 1;
        }
        // Frames the tx queue did not take are sent again next round (in order).
        sent -= out.len();
        out.clear();
    }
}

/// Port `p`'s xstat `name`.
pub fn xstat(eal: &Eal, p: usize, name: &str) -> u64 {
    eal.ports()[p]
        .xstats()
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("port {p}: no xstat {name}"))
        .1
}

/// The frame as a MAC-swapping peer returns it.
pub fn swapped(f: &[u8]) -> Vec<u8> {
    let mut s = f.to_vec();
    s[..6].copy_from_slice(&f[6..12]);
    s[6..12].copy_from_slice(&f[..6]);
    s
}

/// Segment size of the offload tests' super-frames.
pub const MSS: u16 = 1448;
/// Payload of a 64 KiB super-frame (the IPv4 total length at its maximum, 65535).
pub const SUPER_PAYLOAD: usize = 65_535 - 40;

/// A 64 KiB TCP super-frame (`mark` in its payload) as bytes and as a chain flagged
/// for TSO at [`MSS`].
pub fn super_frame(mark: u32, pool: &Mempool) -> (Vec<u8>, Mbuf) {
    let f = l4_frame(true, mark, SUPER_PAYLOAD);
    let mut m = Mbuf::from_slice(&f, pool).unwrap();
    m.set_ol_flags(TX_IPV4 | TX_TCP_SEG);
    m.set_tx_offload(pmd_testkit::frames::tcp4_tso(MSS));
    (f, m)
}

/// Bytes of Ethernet + IPv4 + TCP headers (no options) in the offload tests' frames.
pub const TCP_HDRS: usize = 14 + 20 + 20;

/// An Ethernet + IPv4 + TCP (`tcp`) or UDP frame with `payload` bytes and valid IPv4 and
/// L4 checksums; `mark` sets the TCP sequence number (`mark * 1_000_000`), the UDP
/// source port and the payload pattern.
pub fn l4_frame(tcp: bool, mark: u32, payload: usize) -> Vec<u8> {
    let l4 = if tcp { 20 } else { 8 };
    let mut f = vec![0u8; 14 + 20 + l4 + payload];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0b]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x0a]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f[14] = 0x45;
    f[16..18].copy_from_slice(&((20 + l4 + payload) as u16).to_be_bytes());
    f[18..20].copy_from_slice(&(mark as u16).to_be_bytes());
    f[20] = 0x40; // DF
    f[22] = 64;
    f[23] = if tcp { 6 } else { 17 };
    f[26..30].copy_from_slice(&[10, 0, 0, 1]);
    f[30..34].copy_from_slice(&[10, 0, 0, 2]);
    let c = pmd_core::csum::checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f[34..36].copy_from_slice(&4321u16.to_be_bytes());
    f[36..38].copy_from_slice(&80u16.to_be_bytes());
    if tcp {
        f[38..42].copy_from_slice(&mark.wrapping_mul(1_000_000).to_be_bytes());
        f[46] = 5 << 4;
        f[47] = 0x18; // PSH, ACK
        f[48..50].copy_from_slice(&65535u16.to_be_bytes());
    } else {
        f[34..36].copy_from_slice(&(mark as u16).to_be_bytes());
        f[38..40].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    }
    for (i, b) in f[34 + l4..].iter_mut().enumerate() {
        *b = (mark as usize * 13 + i * 7) as u8;
    }
    let c = l4_sum(&f);
    let at = l4_csum_at(&f);
    f[at..at + 2].copy_from_slice(&(!c).to_be_bytes());
    f
}

/// Where the frame's TCP or UDP checksum field is.
pub fn l4_csum_at(f: &[u8]) -> usize {
    if f[23] == 6 {
        34 + 16
    } else {
        34 + 6
    }
}

/// The ones' complement sum of the IPv4 pseudo-header and the L4 segment.
fn l4_sum(f: &[u8]) -> u16 {
    let seg = &f[34..];
    let mut p = Vec::with_capacity(12 + seg.len());
    p.extend_from_slice(&f[26..34]);
    p.extend_from_slice(&[0, f[23]]);
    p.extend_from_slice(&(seg.len() as u16).to_be_bytes());
    p.extend_from_slice(seg);
    pmd_core::csum::ones_complement_sum(&p)
}

/// Whether the frame's IPv4 header checksum verifies.
pub fn ip_csum_ok(f: &[u8]) -> bool {
    pmd_core::csum::ones_complement_sum(&f[14..34]) == 0xffff
}

/// Whether the frame's TCP/UDP checksum verifies.
pub fn l4_csum_ok(f: &[u8]) -> bool {
    l4_sum(f) == 0xffff
}

/// Checks that `segs` are `whole` (a TCP/IPv4 frame from [`l4_frame`]) cut into
/// `mss`-byte segments: each with the headers, its part of the payload, its sequence
/// number and length, valid IPv4 and TCP checksums, and PSH only on the last.
pub fn check_segments(what: &str, whole: &[u8], segs: &[Vec<u8>], mss: usize) {
    let payload = &whole[TCP_HDRS..];
    assert_eq!(segs.len(), payload.len().div_ceil(mss), "{what}: segments");
    let seq0 = u32::from_be_bytes(whole[38..42].try_into().unwrap());
    for (i, s) in segs.iter().enumerate() {
        let part = &payload[i * mss..payload.len().min((i + 1) * mss)];
        let last = i + 1 == segs.len();
        assert_eq!(s.len(), TCP_HDRS + part.len(), "{what}: segment {i} length");
        assert_eq!(&s[..16], &whole[..16], "{what}: segment {i} L2/IP start");
        assert_eq!(
            usize::from(u16::from_be_bytes([s[16], s[17]])),
            s.len() - 14,
            "{what}: segment {i} IP length"
        );
        assert_eq!(
            &s[20..24],
            &whole[20..24],
            "{what}: segment {i} IP flags, TTL"
        );
        assert_eq!(
            &s[26..38],
            &whole[26..38],
            "{what}: segment {i} addresses, ports"
        );
        assert_eq!(
            u32::from_be_bytes(s[38..42].try_into().unwrap()),
            seq0.wrapping_add((i * mss) as u32),
            "{what}: segment {i} sequence number"
        );
        assert_eq!(
            &s[42..47],
            &whole[42..47],
            "{what}: segment {i} ack, offset"
        );
        let psh = if last { 0x08 } else { 0 };
        assert_eq!(
            s[47],
            (whole[47] & !0x08) | psh,
            "{what}: segment {i} flags"
        );
        assert_eq!(&s[TCP_HDRS..], part, "{what}: segment {i} payload");
        assert!(ip_csum_ok(s), "{what}: segment {i} IPv4 checksum");
        assert!(l4_csum_ok(s), "{what}: segment {i} TCP checksum");
    }
}

/// Receives on `rx` (polling `also` in between) until `want` packets came or `patience`
/// ran out.
pub fn collect(
    rx: &mut RxQueueHandle,
    want: usize,
    patience: Duration,
    mut also: impl FnMut(),
) -> Vec<Mbuf> {
    let deadline = Instant::now() + patience;
    let mut out = Vec::new();
    let mut b = PktBatch::new();
    while out.len() < want && Instant::now() < deadline {
        also();
        b.clear();
        rx.rx_burst(&mut b);
        let start = out.len();
        out.extend(std::iter::from_fn(|| b.pop()));
        out[start..].reverse();
    }
    out
}

/// Open file descriptors of this process, with what each one is.
pub fn open_fds() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let to = std::fs::read_link(e.path()).ok()?;
                    Some(format!(
                        "{} -> {}",
                        e.file_name().to_string_lossy(),
                        to.display()
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Starts `dpdk-testpmd` with DPDK's virtio-user on `sock` (`extra` appended to its
/// devargs, e.g. `,server=1`) forwarding in `mode` on one queue pair; its output goes to
/// `log`. With `server=1` in `extra` it creates the socket, removed with it.
pub fn dpdk_virtio_user(
    sock: &std::path::Path,
    log: &std::path::Path,
    extra: &str,
    mode: &str,
    app: &[String],
) -> pmd_testkit::dpdk::Testpmd {
    let mut args = vec![
        format!("--forward-mode={mode}"),
        "--nb-cores=1".into(),
        "--no-flush-rx".into(),
        "--stats-period".into(),
        "1".into(),
    ];
    args.extend(app.iter().cloned());
    let owned: &[&std::path::Path] = if extra.contains("server=1") {
        &[sock]
    } else {
        &[]
    };
    pmd_testkit::dpdk::Testpmd::spawn(&pmd_testkit::dpdk::TestpmdConf {
        prefix: &pmd_testkit::unique("vhpeer"),
        log: Some(log),
        // One memory region per hugepage file otherwise, more than vhost-user's 8.
        eal: &["--single-file-segments".into()],
        vdevs: &[format!(
            "net_virtio_user0,path={},queue_size=1024{extra}",
            sock.display()
        )],
        app: &args,
        owned,
        ..Default::default()
    })
}

/// Waits until port `p`'s link is `up`, failing after `secs` seconds with `why`.
pub fn wait_link(eal: &Eal, p: usize, up: bool, secs: u64, why: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while eal.ports()[p].link().up != up {
        assert!(
            Instant::now() < deadline,
            "port {p}: link not {} after {secs} s; {}",
            if up { "up" } else { "down" },
            why()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends copies of `frame` on `tx` and receives on `rx` until `done(received)` or
/// [`PATIENCE`] ran out (then it fails with `what`); what arrives is freed. Returns
/// (received, sent).
pub fn pump(
    what: &str,
    frame: &[u8],
    pool: &Mempool,
    tx: &mut TxQueueHandle,
    rx: &mut RxQueueHandle,
    mut done: impl FnMut(usize) -> bool,
) -> (usize, usize) {
    let deadline = Instant::now() + PATIENCE;
    let (mut got, mut sent) = (0usize, 0usize);
    let mut out = PktBatch::new();
    let mut inb = PktBatch::new();
    while !done(got) {
        assert!(
            Instant::now() < deadline,
            "{what}: timed out after {got} received"
        );
        while out.len() < 8 {
            let Ok(m) = Mbuf::from_slice(frame, pool) else {
                break;
            };
            out.push(m).unwrap();
        }
        sent += tx.tx_burst(&mut out);
        inb.clear();
        got += rx.rx_burst(&mut inb);
        std::thread::sleep(Duration::from_micros(200));
    }
    (got, sent)
}

/// Waits up to `secs` seconds until port `p`'s xstat `name` is `want`.
pub fn wait_xstat(eal: &Eal, p: usize, name: &str, want: u64, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = xstat(eal, p, name);
        if v == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "port {p}: {name} is {v}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
