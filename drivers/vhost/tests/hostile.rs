//! A hostile front end on the real socket: a hand-driven vhost-user front end (our
//! virtio-user's message layer, plus raw bytes where a message must be malformed) talks to
//! a `net_vhost0` port in this process.
//!
//! - Refused messages: overlapping regions, a region past its file's end, too many
//!   regions, a ring index beyond the port's rings, a ring size that is not a power of
//!   two, ring addresses outside every region, a descriptor on a message that takes none,
//!   feature bits never offered, a dirty log without LOG_SHMFD, an unknown request, an oversized
//!   payload size. Each ends the connection (the socket reads end-of-file), is counted in
//!   `ctrl_refused`, leaves no descriptor open in this process, and the next front end
//!   is served.
//! - Hostile rings: a descriptor chain that loops, a buffer outside every region, an
//!   available index that jumps past the ring. Each is counted in the queue's xstats,
//!   never panics, and the chain goes back to the guest; the jump stops the ring.
//!
//! - A migrating front end (QEMU's sequence: LOG_SHMFD, SET_LOG_BASE, LOG_ALL): every
//!   page the port's bursts write is marked in the log, the buffers it only reads are
//!   not, and the log goes with the connection.
//!
//! Needs nothing special (memfd memory, unix sockets, `--no-huge`).

mod common;

use common::xstat;
use memmap2::MmapMut;
use pmd_core::ethdev::{PortConf, RxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::options::EalOptions;
use pmd_core::{Eal, Mempool};
use pmd_virtio::transport::vhost_user::proto::{
    mem_table, vring_addr, vring_state, Conn, MemRegion, Request,
};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Guest memory: one memfd region.
const MEM: u64 = 1 << 20;
/// The front end's virtual address of the region (guest physical addresses start at 0).
const UVA: u64 = 0x4000_0000;
const RING: u16 = 256;
/// Ring `i`'s descriptor table, available and used rings (guest physical = offset).
fn ring_at(i: u16) -> (u64, u64, u64) {
    let base = 0x4000 * u64::from(i);
    (base, base + 0x1000, base + 0x2000)
}
const BUFS: u64 = 0x10000;
const VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const LOG_ALL: u64 = 1 << 26;
const PROTOCOL_F_REPLY_ACK: u64 = 1 << 3;
const PROTOCOL_F_LOG_SHMFD: u64 = 1 << 1;

fn memfd(len: u64) -> File {
    named_memfd(c"hostile-guest", len)
}

fn named_memfd(name: &std::ffi::CStr, len: u64) -> File {
    // SAFETY: a valid NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: a fresh descriptor we own.
    let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    f.set_len(len).unwrap();
    f
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

struct Port {
    eal: Eal,
    pool: Mempool,
    rx: RxQueueHandle,
    tx: pmd_core::ethdev::TxQueueHandle,
    sock: std::path::PathBuf,
    _dir: pmd_testkit::TempDir,
    /// Last: released after the EAL is dropped.
    _serial: std::sync::MutexGuard<'static, ()>,
}

fn port(prefix: &str) -> Port {
    let serial = common::one_at_a_time();
    let dir = pmd_testkit::TempDir::new("pmd-vhost-hostile");
    let sock = dir.file("vhost.sock");
    let opts = EalOptions::builder()
        .lcores("0")
        .no_pci(true)
        .no_huge(true)
        .file_prefix(&pmd_testkit::unique(prefix))
        .vdev(&format!("net_vhost0,iface={}", sock.display()))
        .build()
        .unwrap();
    let mut eal = Eal::init(opts, &[&pmd_vhost::DRIVER]).unwrap();
    let pool = Mempool::create("vhost-hostile", 1023, 0).unwrap();
    let p = eal.port_mut(0).unwrap();
    p.configure(&PortConf::default()).unwrap();
    let rx = p.setup_rx_queue(0, 0, &pool).unwrap();
    let tx = p.setup_tx_queue(0, 0).unwrap();
    p.start().unwrap();
    Port {
        _serial: serial,
        eal,
        pool,
        rx,
        tx,
        sock,
        _dir: dir,
    }
}

fn connect(sock: &Path) -> Conn {
    let s = UnixStream::connect(sock).unwrap();
    Conn::new(s, "hostile", Duration::from_secs(5)).unwrap()
}

/// GET_FEATURES, SET_OWNER, SET_FEATURES (VERSION_1, protocol features if offered).
fn negotiate(c: &mut Conn) -> u64 {
    let offered = c.get_u64(Request::GetFeatures).unwrap();
    assert_ne!(offered & VERSION_1, 0, "VERSION_1 offered");
    c.set(Request::SetOwner, &[], &[]).unwrap();
    let features = offered & (VERSION_1 | PROTOCOL_FEATURES);
    c.set_u64(Request::SetFeatures, features).unwrap();
    features
}

fn region(gpa: u64, size: u64, uva: u64) -> MemRegion {
    MemRegion {
        guest_phys_addr: gpa,
        memory_size: size,
        userspace_addr: uva,
        mmap_offset: 0,
        fd: -1,
    }
}

/// Waits until the back end closed the connection (end-of-file).
fn assert_closed(c: &Conn, what: &str) {
    let mut s = c.socket();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        // Closed; with bytes of the refused message still unread on its side, a reset.
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Ok(n) => panic!("{what}: got {n} bytes instead of a disconnect"),
        Err(e) => panic!("{what}: no disconnect: {e}"),
    }
}

/// Writes a raw 12-byte header (and `payload`) with `fds`.
fn raw(c: &Conn, request: u32, size: u32, payload: &[u8], fds: &[&File]) {
    let mut m = Vec::new();
    m.extend_from_slice(&request.to_le_bytes());
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(payload);
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    pmd_core::unix::send_with_fds(c.socket().as_fd(), &m, &raw).unwrap();
}

#[test]
fn refused_messages_disconnect_and_the_next_front_end_is_served() {
    let p = port("vhhostile");
    let file = memfd(MEM);
    let fd = file.as_raw_fd();
    let one = |gpa, size, uva| {
        let mut r = region(gpa, size, uva);
        r.fd = fd;
        r
    };
    type Case<'a> = (&'a str, Box<dyn Fn(&mut Conn) + 'a>);
    let cases: Vec<Case> = vec![
        (
            "overlapping regions",
            Box::new(|c| {
                let t = mem_table(&[one(0, MEM, UVA), one(MEM - 4096, MEM, UVA + MEM)]);
                let _ = c.send(Request::SetMemTable, 0, &t, &[fd, fd]);
            }),
        ),
        (
            "a region past its file's end",
            Box::new(|c| {
                let t = mem_table(&[one(0, 2 * MEM, UVA)]);
                let _ = c.send(Request::SetMemTable, 0, &t, &[fd]);
            }),
        ),
        (
            "nine regions",
            Box::new(|c| {
                let rs: Vec<MemRegion> = (0..9u64)
                    .map(|i| one(i * MEM, 4096, UVA + i * MEM))
                    .collect();
                let t = mem_table(&rs);
                // Our front end refuses to send it: raw bytes.
                raw(c, 5, t.len() as u32, &t, &[&file; 9]);
            }),
        ),
        (
            "ring index beyond the port's rings",
            Box::new(|c| {
                let _ = c.send(Request::SetVringNum, 0, &vring_state(2, 256), &[]);
            }),
        ),
        (
            "ring size not a power of two",
            Box::new(|c| {
                let _ = c.send(Request::SetVringNum, 0, &vring_state(0, 300), &[]);
            }),
        ),
        (
            "ring addresses outside every region",
            Box::new(|c| {
                let t = mem_table(&[one(0, MEM, UVA)]);
                c.send(Request::SetMemTable, 0, &t, &[fd]).unwrap();
                c.send(Request::SetVringNum, 0, &vring_state(1, 256), &[])
                    .unwrap();
                let a = vring_addr(1, UVA + MEM - 16, UVA + 0x1000, UVA + 0x2000);
                let _ = c.send(Request::SetVringAddr, 0, &a, &[]);
            }),
        ),
        (
            "a descriptor on SET_VRING_NUM",
            Box::new(|c| {
                let _ = c.send(Request::SetVringNum, 0, &vring_state(0, 256), &[fd]);
            }),
        ),
        (
            "feature bits never offered",
            Box::new(|c| {
                let _ = c.send(Request::SetFeatures, 0, &(1u64 << 60).to_le_bytes(), &[]);
            }),
        ),
        (
            "a dirty log without LOG_SHMFD",
            Box::new(|c| {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&4096u64.to_le_bytes());
                raw(c, 6, 16, &b, &[&file]);
            }),
        ),
        ("an unknown request", Box::new(|c| raw(c, 99, 0, &[], &[]))),
        (
            "an oversized payload size",
            Box::new(|c| raw(c, 5, 0x10_0000, &[], &[])),
        ),
    ];
    let before = open_fds();
    for (i, (what, bad)) in cases.iter().enumerate() {
        let mut c = connect(&p.sock);
        negotiate(&mut c);
        bad(&mut c);
        assert_closed(&c, what);
        drop(c);
        let deadline = Instant::now() + Duration::from_secs(5);
        while xstat(&p.eal, 0, "ctrl_refused") < i as u64 + 1 {
            assert!(Instant::now() < deadline, "{what}: not counted as refused");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!p.eal.ports()[0].link().up, "{what}: link up");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds() > before {
        assert!(
            Instant::now() < deadline,
            "descriptors left open: {} > {before}",
            open_fds()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The next front end is served.
    let mut c = connect(&p.sock);
    negotiate(&mut c);
    assert_eq!(
        xstat(&p.eal, 0, "ctrl_refused"),
        cases.len() as u64,
        "{:?}",
        p.eal.ports()[0].xstats()
    );
}

/// The guest side of the hostile-ring test: its memory and ring positions.
struct Guest {
    mem: MmapMut,
    /// Each ring's available index.
    avail_idx: [u16; 2],
}

impl Guest {
    fn put_u16(&mut self, at: u64, v: u16) {
        self.mem[at as usize..at as usize + 2].copy_from_slice(&v.to_le_bytes());
    }

    fn get_u16(&self, at: u64) -> u16 {
        u16::from_le_bytes(self.mem[at as usize..at as usize + 2].try_into().unwrap())
    }

    fn get_u32(&self, at: u64) -> u32 {
        u32::from_le_bytes(self.mem[at as usize..at as usize + 4].try_into().unwrap())
    }

    /// Descriptor `i` of ring `r`.
    fn desc(&mut self, r: u16, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = (ring_at(r).0 + 16 * u64::from(i)) as usize;
        self.mem[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        self.mem[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        self.mem[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        self.mem[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
    }

    /// Makes chain `head` of ring `r` available.
    fn offer(&mut self, r: u16, head: u16) {
        let avail = ring_at(r).1;
        let i = &mut self.avail_idx[usize::from(r)];
        let slot = avail + 4 + 2 * u64::from(*i % RING);
        *i = i.wrapping_add(1);
        let idx = *i;
        self.put_u16(slot, head);
        self.put_u16(avail + 2, idx);
    }

    /// Maps `file` as the guest's memory.
    fn new(file: &File) -> Guest {
        // SAFETY: a shared mapping of the test's own memfd, used only by the test (and
        // read and written by the back end, which the test polls on this thread).
        let mem = unsafe { MmapMut::map_mut(file) }.unwrap();
        Guest {
            mem,
            avail_idx: [0; 2],
        }
    }

    fn used_idx(&self, r: u16) -> u16 {
        self.get_u16(ring_at(r).2 + 2)
    }

    fn used_id(&self, r: u16, slot: u16) -> u32 {
        self.get_u32(ring_at(r).2 + 4 + 8 * u64::from(slot % RING))
    }
}

/// The memory table (`file` at guest physical 0) and rings 0 and 1 (each with a kick
/// eventfd, returned), enabled; waits for the link.
fn start_rings(c: &mut Conn, file: &File, p: &Port) -> Vec<OwnedFd> {
    let mut r = region(0, MEM, UVA);
    r.fd = file.as_raw_fd();
    c.set(Request::SetMemTable, &mem_table(&[r]), &[file.as_raw_fd()])
        .unwrap();
    let mut kicks = Vec::new();
    for ring in 0..2u16 {
        let (d, a, u) = ring_at(ring);
        let i = u32::from(ring);
        c.set(Request::SetVringNum, &vring_state(i, u32::from(RING)), &[])
            .unwrap();
        c.set(Request::SetVringBase, &vring_state(i, 0), &[])
            .unwrap();
        c.set(
            Request::SetVringAddr,
            &vring_addr(i, UVA + d, UVA + u, UVA + a),
            &[],
        )
        .unwrap();
        let kick = pmd_core::unix::eventfd().unwrap();
        c.set(
            Request::SetVringKick,
            &u64::from(ring).to_le_bytes(),
            &[kick.as_raw_fd()],
        )
        .unwrap();
        kicks.push(kick);
        c.set(Request::SetVringEnable, &vring_state(i, 1), &[])
            .unwrap();
    }
    common::wait_link(&p.eal, 0, true, 5, String::new);
    kicks
}

const NEXT: u16 = 1;

#[test]
fn hostile_rings_are_counted_and_the_chains_returned() {
    let mut p = port("vhring");
    let file = memfd(MEM);
    let mut g = Guest::new(&file);
    let mut c = connect(&p.sock);
    let features = negotiate(&mut c);
    assert_eq!(
        features & PROTOCOL_FEATURES,
        PROTOCOL_FEATURES,
        "protocol features offered"
    );
    let _kicks = start_rings(&mut c, &file, &p);
    let idle = p.pool.stats().in_use;
    let mut b = PktBatch::new();
    let poll = |p: &mut Port, b: &mut PktBatch| {
        b.clear();
        p.rx.rx_burst(b)
    };
    // A chain that loops: 0 -> 1 -> 0 (short buffers: the loop, not the length, ends it).
    g.desc(1, 0, BUFS, 4, NEXT, 1);
    g.desc(1, 1, BUFS + 2048, 4, NEXT, 0);
    g.offer(1, 0);
    assert_eq!(poll(&mut p, &mut b), 0);
    assert_eq!(
        xstat(&p.eal, 0, "rx_q0_bad_chain"),
        1,
        "{:?}",
        p.eal.ports()[0].xstats()
    );
    assert_eq!(
        (g.used_idx(1), g.used_id(1, 0)),
        (1, 0),
        "the chain went back"
    );
    // A buffer outside every region.
    g.desc(1, 2, 0xf000_0000, 100, 0, 0);
    g.offer(1, 2);
    assert_eq!(poll(&mut p, &mut b), 0);
    assert_eq!(xstat(&p.eal, 0, "rx_q0_bad_addr"), 1);
    assert_eq!((g.used_idx(1), g.used_id(1, 1)), (2, 2));
    // A good frame still goes through: 12-byte header, then 60 bytes.
    let frame = pmd_testkit::frames::frame([2, 0, 0, 0, 0, 1], &[], 60, 7);
    let at = (BUFS + 4096) as usize;
    g.mem[at..at + 12].fill(0);
    g.mem[at + 12..at + 72].copy_from_slice(&frame);
    g.desc(1, 3, BUFS + 4096, 72, 0, 0);
    g.offer(1, 3);
    assert_eq!(poll(&mut p, &mut b), 1);
    assert_eq!(b.iter().next().unwrap().to_vec(), frame);
    b.clear();
    // The available index jumps past the ring: counted, and the ring stops.
    g.avail_idx[1] = g.avail_idx[1].wrapping_add(1000);
    let avail = ring_at(1).1;
    g.put_u16(avail + 2, g.avail_idx[1]);
    assert_eq!(poll(&mut p, &mut b), 0);
    assert_eq!(xstat(&p.eal, 0, "rx_q0_bad_ring"), 1);
    g.avail_idx[1] = g.avail_idx[1].wrapping_sub(1000);
    g.put_u16(avail + 2, g.avail_idx[1]);
    g.offer(1, 3);
    assert_eq!(poll(&mut p, &mut b), 0, "a stopped ring stays stopped");
    assert_eq!(p.pool.stats().in_use, idle, "every mbuf back in the pool");
    assert_eq!(p.eal.ports()[0].stats().ipackets, 1);
    drop(c);
}

/// Whether the log marks the page holding guest physical `gpa`.
fn logged(log: &MmapMut, gpa: u64) -> bool {
    let page = gpa / 4096;
    log[(page / 8) as usize] & (1 << (page % 8)) != 0
}

#[test]
fn a_migrating_front_end_gets_the_pages_written_logged() {
    let mut p = port("vhmig");
    let file = memfd(MEM);
    let mut g = Guest::new(&file);
    let mut c = connect(&p.sock);
    // QEMU's set-up with LOG_SHMFD (and REPLY_ACK, so each message is handled when
    // `set` returns).
    let offered = c.get_u64(Request::GetFeatures).unwrap();
    assert_ne!(offered & LOG_ALL, 0, "LOG_ALL offered");
    c.set(Request::SetOwner, &[], &[]).unwrap();
    c.set_u64(Request::SetFeatures, VERSION_1 | PROTOCOL_FEATURES)
        .unwrap();
    let pf = c.get_u64(Request::GetProtocolFeatures).unwrap();
    assert_ne!(pf & PROTOCOL_F_LOG_SHMFD, 0, "LOG_SHMFD offered");
    c.set_u64(
        Request::SetProtocolFeatures,
        PROTOCOL_F_LOG_SHMFD | PROTOCOL_F_REPLY_ACK,
    )
    .unwrap();
    c.set_reply_ack(true);
    let _kicks = start_rings(&mut c, &file, &p);
    // The migration starts: the log (4096 bytes: 128 MiB of guest memory), answered with
    // an empty reply, then LOG_ALL.
    let log_file = named_memfd(c"hostile-log", 4096);
    let mut desc = 4096u64.to_le_bytes().to_vec();
    desc.extend_from_slice(&0u64.to_le_bytes());
    raw(&c, 6, 16, &desc, &[&log_file]);
    let mut reply = [0u8; 12];
    c.socket().read_exact(&mut reply).unwrap();
    assert_eq!(reply[..4], 6u32.to_le_bytes(), "a reply to SET_LOG_BASE");
    assert_eq!(reply[8..], 0u32.to_le_bytes(), "with no payload");
    c.set_u64(
        Request::SetFeatures,
        VERSION_1 | PROTOCOL_FEATURES | LOG_ALL,
    )
    .unwrap();
    // SAFETY: a shared mapping of the test's log memfd; the back end sets bits in it.
    let log = unsafe { MmapMut::map_mut(&log_file) }.unwrap();
    assert!(log.iter().all(|&b| b == 0));
    // Host to guest: four 2048-byte buffers, each across a page boundary.
    let bufs: Vec<u64> = (0..4).map(|k| BUFS + 0x4000 * k + 3000).collect();
    for (k, &b) in bufs.iter().enumerate() {
        g.desc(0, k as u16, b, 2048, 2, 0);
        g.offer(0, k as u16);
    }
    let frame = pmd_testkit::frames::frame([2, 0, 0, 0, 0, 1], &[], 1514, 3);
    let mut batch = PktBatch::new();
    for _ in 0..4 {
        batch
            .push(pmd_core::mbuf::Mbuf::from_slice(&frame, &p.pool).unwrap())
            .unwrap();
    }
    assert_eq!(p.tx.tx_burst(&mut batch), 4);
    assert_eq!(g.used_idx(0), 4);
    for &b in &bufs {
        assert_eq!(&g.mem[b as usize + 12..b as usize + 12 + 1514], &frame[..]);
        assert!(logged(&log, b) && logged(&log, b + 1526), "buffer {b:#x}");
    }
    assert!(logged(&log, ring_at(0).2), "ring 0's used ring");
    // Guest to host: the used ring is written, the buffer only read.
    let at = BUFS + 0x20000;
    g.mem[at as usize..at as usize + 12].fill(0);
    g.mem[at as usize + 12..at as usize + 72].copy_from_slice(&frame[..60]);
    g.desc(1, 0, at, 72, 0, 0);
    g.offer(1, 0);
    batch.clear();
    assert_eq!(p.rx.rx_burst(&mut batch), 1);
    batch.clear();
    assert!(logged(&log, ring_at(1).2), "ring 1's used ring");
    assert!(!logged(&log, at), "a buffer read is not logged");
    assert_eq!(xstat(&p.eal, 0, "ctrl_log_bases"), 1);
    assert_eq!(xstat(&p.eal, 0, "ctrl_log_outside"), 0);
    // The migration ends; the connection goes, and the log with it.
    c.set_u64(Request::SetFeatures, VERSION_1 | PROTOCOL_FEATURES)
        .unwrap();
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mapped = || {
        std::fs::read_to_string("/proc/self/maps")
            .unwrap()
            .contains("/memfd:hostile-log")
    };
    // Our own mapping of it goes first; the queues let go of theirs at their next burst
    // after the disconnect.
    drop(log);
    while mapped() {
        assert!(Instant::now() < deadline, "the log is still mapped");
        std::thread::sleep(Duration::from_millis(10));
        p.rx.rx_burst(&mut batch);
        assert_eq!(batch.len(), 0);
        let mut one = PktBatch::new();
        one.push(pmd_core::mbuf::Mbuf::from_slice(&frame, &p.pool).unwrap())
            .unwrap();
        assert_eq!(p.tx.tx_burst(&mut one), 0, "link down: given back");
    }
    assert_eq!(p.pool.stats().in_use, 0);
}
