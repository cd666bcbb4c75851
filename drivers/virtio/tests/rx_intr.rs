//! Rx interrupts of virtio-user queues ([`pmd_core::intr`]): an armed rx queue with nothing
//! pending says `Sleep` and its call eventfd stays quiet; frames the back end adds make
//! it readable; after `intr_disable` the queue holds exactly those frames; and arming
//! races a frame arriving at that moment 2000 times without losing a wake-up.
//!
//! Two back ends:
//! - an in-process vhost-user back end ([`Backend`], below): just the messages
//!   virtio-user sends without protocol features, and an rx ring it fills on demand and
//!   signals the way the spec says (split: unless `VRING_AVAIL_F_NO_INTERRUPT`, or
//!   `vring_need_event(used_event)` with `EVENT_IDX`; packed: the driver event
//!   suppression, `DESC` with `EVENT_IDX`), after a full fence. Runs everywhere, split and
//!   packed, with and without `EVENT_IDX`;
//! - DPDK's `net_vhost` in `dpdk-testpmd` (macswap): the frames are our own, sent from
//!   another thread and echoed. Needs root, hugepages and `dpdk-testpmd`; otherwise the
//!   test prints why and passes (and fails under `PMD_REQUIRE_ALL=1`).

mod interop_common;

use pmd_core::ethdev::{Driver, Port, PortConf, RxQueueHandle, TxQueueHandle};
use pmd_core::intr::Armed;
use pmd_core::mbuf::PktBatch;
use pmd_core::{Mbuf, Mempool};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Frames of the "peer sends N" step.
const N: usize = 32;
/// Rounds of the lost-wake-up loop.
const ROUNDS: u32 = 2000;
/// The longest a wake-up may take.
const WAKE_MS: u64 = 1000;

const VERSION_1: u64 = 1 << 32;
const EVENT_IDX: u64 = 1 << 29;
const RING_PACKED: u64 = 1 << 34;
/// The virtio-net header with VERSION_1.
const HDR_LEN: usize = 12;

/// One test at a time: each port sends every live memory segment to its back end (at
/// most 8), and the machine has few cores.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------
// The in-process vhost-user back end.

/// The back end's view of the rx ring (vring 0), once it was started.
enum RxRing {
    Split {
        desc: u64,
        avail: u64,
        used: u64,
        size: u16,
        last_avail: u16,
        used_idx: u16,
    },
    Packed {
        ring: u64,
        driver_event: u64,
        size: u16,
        pos: u16,
        wrap: bool,
    },
}

#[derive(Default)]
struct VringConf {
    num: u16,
    base: u16,
    /// desc, used, avail (the SET_VRING_ADDR order).
    addrs: [u64; 3],
}

#[derive(Default)]
struct BackendState {
    features: u64,
    rx_conf: VringConf,
    rx: Option<RxRing>,
    call: Option<OwnedFd>,
    /// Signals written to the call eventfd.
    signals: u64,
}

/// A vhost-user back end on a socket of its own, serving one front end in a thread.
struct Backend {
    path: PathBuf,
    offered: u64,
    state: Arc<Mutex<BackendState>>,
    thread: Option<JoinHandle<()>>,
}

fn u16_at(addr: u64) -> &'static AtomicU16 {
    // SAFETY: `addr` is a 2-aligned field of a ring in this process's memory (virtio-user
    // gives the back end its own addresses, and the back end is in the same process); the
    // ring segment outlives the port's use of it in every test.
    unsafe { &*(addr as *const AtomicU16) }
}

fn u32_at(addr: u64) -> &'static AtomicU32 {
    // SAFETY: as for `u16_at`, 4-aligned.
    unsafe { &*(addr as *const AtomicU32) }
}

fn u64_of(p: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(p[at..at + 8].try_into().unwrap())
}

fn u32_of(p: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
}

/// One message: request, payload, descriptors (which travel with the header).
fn read_msg(s: &mut UnixStream) -> Option<(u32, Vec<u8>, Vec<OwnedFd>)> {
    let mut hdr = [0u8; 12];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < hdr.len() {
        let r = pmd_core::unix::recv_with_fds(s.as_fd(), &mut hdr[got..]).ok()?;
        if r.len == 0 {
            return None;
        }
        fds.extend(r.fds);
        got += r.len;
    }
    let mut payload = vec![0u8; u32_of(&hdr, 8) as usize];
    s.read_exact(&mut payload).ok()?;
    Some((u32_of(&hdr, 0), payload, fds))
}

fn reply(s: &mut UnixStream, req: u32, payload: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&req.to_le_bytes());
    m.extend_from_slice(&(0x1u32 | 0x4).to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    m.extend_from_slice(payload);
    let _ = s.write_all(&m);
}

impl Backend {
    /// Listens on a fresh socket and serves the first front end that connects; offers
    /// VERSION_1 plus `extra` (EVENT_IDX, RING_PACKED) and no protocol features.
    fn listen(tag: &str, extra: u64) -> Backend {
        let path =
            std::env::temp_dir().join(format!("pmd-virtio-intr-{tag}-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path).unwrap();
        let offered = VERSION_1 | extra;
        let state = Arc::new(Mutex::new(BackendState::default()));
        let st = state.clone();
        let thread = std::thread::spawn(move || {
            let Ok((mut s, _)) = l.accept() else { return };
            while let Some((req, p, mut fds)) = read_msg(&mut s) {
                let mut st = st.lock().unwrap();
                let index = p.get(..4).map_or(u32::MAX, |_| u32_of(&p, 0));
                match req {
                    // GET_FEATURES
                    1 => reply(&mut s, req, &offered.to_le_bytes()),
                    // SET_FEATURES
                    2 => st.features = u64_of(&p, 0),
                    // SET_VRING_NUM / SET_VRING_BASE (vring 0: rx)
                    8 if index == 0 => st.rx_conf.num = u32_of(&p, 4) as u16,
                    10 if index == 0 => st.rx_conf.base = u32_of(&p, 4) as u16,
                    // SET_VRING_ADDR {index, flags, desc, used, avail, log}
                    9 if index == 0 => {
                        st.rx_conf.addrs = [u64_of(&p, 8), u64_of(&p, 16), u64_of(&p, 24)]
                    }
                    // SET_VRING_CALL
                    13 if index == 0 => st.call = fds.pop(),
                    // SET_VRING_KICK: without protocol features the ring starts now.
                    12 if index == 0 => {
                        let c = &st.rx_conf;
                        let ring = if st.features & RING_PACKED != 0 {
                            RxRing::Packed {
                                ring: c.addrs[0],
                                driver_event: c.addrs[2],
                                size: c.num,
                                pos: c.base & 0x7fff,
                                wrap: c.base & 0x8000 != 0,
                            }
                        } else {
                            RxRing::Split {
                                desc: c.addrs[0],
                                avail: c.addrs[2],
                                used: c.addrs[1],
                                size: c.num,
                                last_avail: c.base,
                                used_idx: c.base,
                            }
                        };
                        st.rx = Some(ring);
                    }
                    // GET_VRING_BASE: the ring stops.
                    11 => {
                        let base = match st.rx.take() {
                            Some(RxRing::Split { last_avail, .. }) if index == 0 => last_avail,
                            Some(RxRing::Packed { pos, wrap, .. }) if index == 0 => {
                                pos | if wrap { 0x8000 } else { 0 }
                            }
                            _ => 0,
                        };
                        let mut b = [0u8; 8];
                        b[..4].copy_from_slice(&index.to_le_bytes());
                        b[4..].copy_from_slice(&(base as u32).to_le_bytes());
                        reply(&mut s, req, &b);
                    }
                    // SET_OWNER, SET_MEM_TABLE (our own addresses: nothing to map), the
                    // tx ring: nothing to do.
                    _ => {}
                }
            }
        });
        Backend {
            path,
            offered,
            state,
            thread: Some(thread),
        }
    }

    /// Signals written to the call eventfd so far.
    fn signals(&self) -> u64 {
        self.state.lock().unwrap().signals
    }

    /// Puts `frames` into receive buffers of the rx ring as one burst, then (after a full
    /// fence, pairing with the driver's between arming and looking at the ring) signals
    /// the call eventfd if the driver asked for it. Panics if the driver posted too few
    /// buffers.
    fn send(&self, frames: &[Vec<u8>]) {
        let mut st = self.state.lock().unwrap();
        let event_idx = st.features & EVENT_IDX != 0;
        let st = &mut *st;
        let ring = st.rx.as_mut().expect("rx ring started");
        let want = match ring {
            RxRing::Split {
                desc,
                avail,
                used,
                size,
                last_avail,
                used_idx,
            } => {
                let old = *used_idx;
                for f in frames {
                    let avail_idx = u16_at(*avail + 2).load(Ordering::Acquire);
                    assert_ne!(*last_avail, avail_idx, "no receive buffer posted");
                    let slot = (*last_avail & (*size - 1)) as u64;
                    let id = u16_at(*avail + 4 + 2 * slot).load(Ordering::Relaxed);
                    assert!(id < *size);
                    let d = *desc + 16 * id as u64;
                    // SAFETY: a descriptor of the table (id < size), 16-aligned, ours to
                    // read: the driver published it (acquire above).
                    let (addr, len) = unsafe {
                        (
                            std::ptr::read_volatile(d as *const u64),
                            std::ptr::read_volatile((d + 8) as *const u32),
                        )
                    };
                    let n = write_frame(addr, len, f);
                    let e = *used + 4 + 8 * (*used_idx & (*size - 1)) as u64;
                    u32_at(e).store(id as u32, Ordering::Relaxed);
                    u32_at(e + 4).store(n, Ordering::Relaxed);
                    *used_idx = used_idx.wrapping_add(1);
                    *last_avail = last_avail.wrapping_add(1);
                }
                u16_at(*used + 2).store(*used_idx, Ordering::Release);
                fence(Ordering::SeqCst);
                if event_idx {
                    let ev = u16_at(*avail + 4 + 2 * *size as u64).load(Ordering::Relaxed);
                    let new = *used_idx;
                    new.wrapping_sub(ev).wrapping_sub(1) < new.wrapping_sub(old)
                } else {
                    u16_at(*avail).load(Ordering::Relaxed) & 1 == 0
                }
            }
            RxRing::Packed {
                ring,
                driver_event,
                size,
                pos,
                wrap,
            } => {
                const AVAIL: u16 = 1 << 7;
                const USED: u16 = 1 << 15;
                let lin = |p: u16, w: bool| if w { p } else { p + *size };
                let old = lin(*pos, *wrap);
                for f in frames {
                    let d = *ring + 16 * *pos as u64;
                    let flags = u16_at(d + 14).load(Ordering::Acquire);
                    assert!(
                        (flags & AVAIL != 0) == *wrap && (flags & USED != 0) != *wrap,
                        "no receive buffer posted"
                    );
                    // SAFETY: an in-bounds descriptor of the ring, made available (acquire
                    // above).
                    let (addr, len) = unsafe {
                        (
                            std::ptr::read_volatile(d as *const u64),
                            std::ptr::read_volatile((d + 8) as *const u32),
                        )
                    };
                    let n = write_frame(addr, len, f);
                    u32_at(d + 8).store(n, Ordering::Relaxed);
                    let used = if *wrap { AVAIL | USED } else { 0 };
                    u16_at(d + 14).store(used | 2, Ordering::Release);
                    *pos += 1;
                    if *pos == *size {
                        *pos = 0;
                        *wrap = !*wrap;
                    }
                }
                fence(Ordering::SeqCst);
                let off_wrap = u16_at(*driver_event).load(Ordering::Relaxed);
                match u16_at(*driver_event + 2).load(Ordering::Relaxed) {
                    1 => false,
                    2 if event_idx => {
                        let span = 2 * *size;
                        let dist = |a: u16, b: u16| (a + span - b) % span;
                        let ev = lin(off_wrap & 0x7fff, off_wrap & 0x8000 != 0);
                        let new = lin(*pos, *wrap);
                        dist(ev, old) < dist(new, old)
                    }
                    _ => true,
                }
            }
        };
        if want && !frames.is_empty() {
            let call = st.call.as_ref().expect("SET_VRING_CALL");
            pmd_core::unix::eventfd_signal(call.as_fd()).unwrap();
            st.signals += 1;
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a zero virtio-net header and `f` into the receive buffer at `addr` (`len`
/// bytes); returns the bytes written.
fn write_frame(addr: u64, len: u32, f: &[u8]) -> u32 {
    let n = HDR_LEN + f.len();
    assert!(
        n <= len as usize,
        "frame of {} in a {len}-byte buffer",
        f.len()
    );
    // SAFETY: a receive buffer of `len` bytes the driver posted (a mempool buffer of this
    // process), device-writable until it is marked used.
    unsafe {
        let p = addr as *mut u8;
        std::ptr::write_bytes(p, 0, HDR_LEN);
        std::ptr::copy_nonoverlapping(f.as_ptr(), p.add(HDR_LEN), f.len());
    }
    n as u32
}

// ---------------------------------------------------------------------------------------
// Shared by both back ends.

/// Frame `seq`: 60 bytes, the sequence number at offset 14.
fn frame(seq: u32, dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(m: &Mbuf) -> u32 {
    u32::from_be_bytes(m.data()[14..18].try_into().unwrap())
}

/// Whether `fd` is readable within `ms` milliseconds.
fn readable(fd: std::os::fd::BorrowedFd<'_>, ms: u64) -> bool {
    pmd_core::unix::readable(fd, Duration::from_millis(ms)).expect("poll")
}

/// Receives until `n` frames came (at most `within`), then checks nothing more is
/// there; returns their sequence numbers.
fn receive(rx: &mut RxQueueHandle, n: usize, within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    let mut seqs = Vec::new();
    let mut b = PktBatch::new();
    while seqs.len() < n {
        assert!(
            Instant::now() < deadline,
            "received {} of {n} frames: {seqs:?}",
            seqs.len()
        );
        b.clear();
        if rx.rx_burst(&mut b) == 0 {
            std::thread::yield_now();
        }
        seqs.extend(b.iter().map(seq_of));
    }
    b.clear();
    assert_eq!(rx.rx_burst(&mut b), 0, "more than {n} frames: {seqs:?}");
    seqs
}

/// What the peer does on request: deliver frame `seq` to our rx queue, after spinning
/// for about `delay` (so its arrival falls before, during or after the arming).
type Deliver = Box<dyn FnMut(u32) + Send>;

/// A peer thread that delivers one frame per request and acknowledges it.
struct Peer {
    go: Option<mpsc::Sender<(u32, Duration)>>,
    done: mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn spawn(mut deliver: Deliver) -> Peer {
        let (go, rx) = mpsc::channel::<(u32, Duration)>();
        let (ack, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            while let Ok((seq, delay)) = rx.recv() {
                let t = Instant::now();
                while t.elapsed() < delay {
                    std::hint::spin_loop();
                }
                deliver(seq);
                let _ = ack.send(());
            }
        });
        Peer {
            go: Some(go),
            done,
            thread: Some(thread),
        }
    }

    fn deliver(&self, seq: u32, delay: Duration) {
        self.go.as_ref().unwrap().send((seq, delay)).unwrap();
    }

    fn wait(&self) {
        self.done
            .recv_timeout(Duration::from_secs(5))
            .expect("peer delivered");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.go = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How the lost-wake-up loop went.
#[derive(Debug, Default)]
struct Race {
    ready_at_arm: u32,
    woken: u32,
}

/// Steps 1 and 2 of every test: armed with nothing pending → Sleep, fd quiet; the peer
/// delivers `N` frames (`deliver_n`, from another thread) → fd readable within 1 s;
/// after `intr_disable` exactly `N` frames. `seq0` is the first frame's number.
fn sleep_then_wake(rx: &mut RxQueueHandle, deliver_n: impl FnOnce() + Send, seq0: u32) {
    assert!(rx.has_intr(), "virtio-user rx queues have interrupts");
    assert_eq!(rx.intr_enable().unwrap(), Armed::Sleep, "nothing pending");
    let fd = rx.intr_fd().expect("call eventfd");
    assert!(!readable(fd, 0), "armed, nothing pending: fd quiet");
    std::thread::scope(|s| {
        s.spawn(deliver_n);
        assert!(
            readable(rx.intr_fd().unwrap(), WAKE_MS),
            "no interrupt within 1 s for {N} frames"
        );
    });
    rx.intr_disable();
    let seqs = receive(rx, N, Duration::from_secs(1));
    let want: Vec<u32> = (seq0..seq0 + N as u32).collect();
    assert_eq!(seqs, want);
}

/// Step 3: `ROUNDS` times, the peer delivers one frame while the queue is being armed;
/// every frame is received, either seen at arming or after a wake-up, never after
/// waiting out the 1-s timeout. Frames are numbered from `seq0`.
fn lost_wakeup_loop(rx: &mut RxQueueHandle, peer: &Peer, seq0: u32) -> Race {
    let mut race = Race::default();
    for i in 0..ROUNDS {
        let seq = seq0 + i;
        // 0 to ~20 µs of spinning: the frame lands before, during or after the arming.
        peer.deliver(seq, Duration::from_nanos((i as u64 * 397) % 20_000));
        match rx.intr_enable().unwrap() {
            Armed::Ready => race.ready_at_arm += 1,
            Armed::Sleep => {
                let t = Instant::now();
                assert!(
                    readable(rx.intr_fd().unwrap(), WAKE_MS),
                    "round {i}: frame {seq} lost: no wake-up within {:?}",
                    t.elapsed()
                );
                race.woken += 1;
            }
        }
        rx.intr_disable();
        peer.wait();
        assert_eq!(receive(rx, 1, Duration::from_secs(1)), [seq], "round {i}");
    }
    race
}

// ---------------------------------------------------------------------------------------
// Against the in-process back end.

/// Our port on `backend`: one queue pair of 256 descriptors, started.
fn open(
    backend: &Backend,
    tag: &str,
    packed: bool,
) -> (Port, Mempool, RxQueueHandle, TxQueueHandle) {
    let spec = format!(
        "net_virtio_user0,path={},queue_size=256,packed_vq={}",
        backend.path.display(),
        u8::from(packed)
    );
    let dev = pmd_virtio::DRIVER.probe(&spec.parse().unwrap()).unwrap();
    let mut port = Port::new(0, "net_virtio_user0", dev);
    let pool = Mempool::create(&format!("virtio-intr-{tag}"), 1024, 0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    // Without REPLY_ACK nothing is answered: wait until the back end took the last
    // message of the rx ring (SET_VRING_KICK, after SET_VRING_CALL).
    let deadline = Instant::now() + Duration::from_secs(5);
    while backend.state.lock().unwrap().rx.is_none() {
        assert!(
            Instant::now() < deadline,
            "the back end did not start the rx ring"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let xs = port.xstats();
    let features = xs.iter().find(|(k, _)| k == "features").map_or(0, |x| x.1);
    let wanted = backend.offered & (EVENT_IDX | RING_PACKED);
    assert_eq!(
        features & (EVENT_IDX | RING_PACKED),
        wanted,
        "negotiated {features:#x}"
    );
    (port, pool, rx, tx)
}

const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const OUR_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

fn in_process(tag: &str, extra: u64) {
    let _serial = serial();
    let backend = Arc::new(Backend::listen(tag, extra));
    let (mut port, pool, mut rx, tx) = open(&backend, tag, extra & RING_PACKED != 0);

    // 1 and 2: Sleep with nothing pending, a wake-up for N frames, exactly N after.
    let b = backend.clone();
    sleep_then_wake(
        &mut rx,
        move || {
            let frames: Vec<Vec<u8>> = (0..N as u32).map(|s| frame(s, OUR_MAC, PEER_MAC)).collect();
            b.send(&frames);
        },
        0,
    );
    assert!(
        !readable(rx.intr_fd().unwrap(), 0),
        "drained by intr_disable"
    );

    // Disarmed, the queue is polled: the back end is asked for no interrupt.
    let before = backend.signals();
    for s in 0..3u32 {
        backend.send(&[frame(1000 + s, OUR_MAC, PEER_MAC)]);
    }
    assert_eq!(
        backend.signals(),
        before,
        "no interrupt wanted while disarmed"
    );
    assert!(!readable(rx.intr_fd().unwrap(), 0));
    assert_eq!(
        receive(&mut rx, 3, Duration::from_secs(1)),
        [1000, 1001, 1002]
    );

    // 3: the lost-wake-up loop; the ring wraps many times (256 entries).
    let b = backend.clone();
    let peer = Peer::spawn(Box::new(move |seq| {
        b.send(&[frame(seq, OUR_MAC, PEER_MAC)])
    }));
    let race = lost_wakeup_loop(&mut rx, &peer, 10_000);
    drop(peer);
    eprintln!("{tag}: {race:?}, {} signals", backend.signals());
    assert_eq!(race.ready_at_arm + race.woken, ROUNDS);
    assert!(race.woken > 0, "some rounds slept");

    port.stop().unwrap();
    drop(rx);
    drop(tx);
    assert_eq!(pool.stats().in_use, 0, "buffers back in the pool");
    drop(port);
    drop(Arc::try_unwrap(backend).ok().expect("peer gone"));
}

#[test]
fn split_rx_intr_with_vhost_user() {
    in_process("split", 0);
}

#[test]
fn split_rx_intr_with_vhost_user_event_idx() {
    in_process("split-ev", EVENT_IDX);
}

#[test]
fn packed_rx_intr_with_vhost_user() {
    in_process("packed", RING_PACKED);
}

#[test]
fn packed_rx_intr_with_vhost_user_event_idx() {
    in_process("packed-ev", RING_PACKED | EVENT_IDX);
}

/// A queue without a call eventfd (what PCI queues are): no interrupts, an error that
/// names the PMD, and no descriptor.
#[test]
fn queue_without_call_eventfd_has_no_intr() {
    let _serial = serial();
    // The device tests' transports and PCI give no call eventfd; virtio-user always does,
    // so this goes through the net layer with a transport that has none.
    use pmd_core::ethdev::MacAddr;
    use pmd_virtio::net::{NetConf, VirtioNet};
    use pmd_virtio::transport::{Notifier, RingSetup, Transport};
    use pmd_virtio::virtqueue::AddrMode;
    struct Quiet;
    impl Notifier for Quiet {
        fn notify(&self) {}
    }
    struct NoCall;
    impl Transport for NoCall {
        fn describe(&self) -> String {
            "no-call".into()
        }
        fn addr_mode(&self) -> AddrMode {
            AddrMode::Va
        }
        fn device_features(&self) -> u64 {
            VERSION_1
        }
        fn negotiate(&mut self, wanted: u64) -> pmd_core::Result<u64> {
            Ok(wanted & VERSION_1)
        }
        fn mac(&self) -> Option<MacAddr> {
            None
        }
        fn max_queue_pairs(&self) -> u16 {
            1
        }
        fn notifier(&mut self, _index: u16) -> pmd_core::Result<Arc<dyn Notifier>> {
            Ok(Arc::new(Quiet))
        }
        fn start(&mut self, _rings: &[RingSetup]) -> pmd_core::Result<()> {
            Ok(())
        }
        fn stop(&mut self) -> pmd_core::Result<Vec<u16>> {
            Ok(vec![0, 0])
        }
        fn link_up(&self) -> bool {
            true
        }
    }
    let dev = VirtioNet::new(
        NetConf {
            driver: pmd_virtio::PCI_DRIVER_NAME,
            name: "net_virtio_nocall".into(),
            queue_size: 64,
            queue_pairs: 1,
            mac: MacAddr::local(3),
        },
        Box::new(NoCall),
    )
    .unwrap();
    let mut port = Port::new(0, "net_virtio_nocall", Box::new(dev));
    let pool = Mempool::create("virtio-intr-nocall", 256, 0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    assert!(!rx.has_intr());
    assert!(rx.intr_fd().is_none());
    let e = rx.intr_enable().unwrap_err().to_string();
    assert!(e.contains("net_virtio has no rx interrupts"), "{e}");
    rx.intr_disable();
}

// ---------------------------------------------------------------------------------------
// Against DPDK's net_vhost (testpmd, macswap).

fn with_testpmd(test: &str, packed: bool) {
    if !pmd_testkit::require(test, interop_common::skip_reason()) {
        return;
    }
    let _serial = serial();
    let pid = std::process::id();
    let tag = if packed { "p" } else { "s" };
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-intr-{tag}-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-intr-{tag}-{pid}.log"));
    let tp =
        interop_common::Testpmd::start_mode(&sock, &format!("pmdvintr{tag}{pid}"), &log, "macswap");
    interop_common::wait_socket(&tp, &sock);
    let spec = format!(
        "net_virtio_user0,path={},queue_size=256,mac=02:00:00:00:00:01,packed_vq={}",
        sock.display(),
        u8::from(packed)
    );
    let dev = pmd_virtio::DRIVER.probe(&spec.parse().unwrap()).unwrap();
    let mut port = Port::new(0, "net_virtio_user0", dev);
    let pool = Mempool::create(&format!("virtio-intr-dpdk-{tag}"), 2048, 0).unwrap();
    port.configure(&PortConf::default()).unwrap();
    let mut rx = port.setup_rx_queue(0, 0, &pool).unwrap();
    let tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let features = port
        .xstats()
        .into_iter()
        .find(|(k, _)| k == "features")
        .map_or(0, |x| x.1);
    eprintln!("{test}: negotiated {features:#x}");
    assert_eq!(features & RING_PACKED != 0, packed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !port.link().up {
        assert!(
            Instant::now() < deadline,
            "link down; testpmd log:\n{}",
            tp.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }

    // Our frames, echoed with the MACs swapped: sent from the peer thread.
    let tx = Arc::new(Mutex::new(tx));
    let send = {
        let (tx, pool) = (tx.clone(), pool.clone());
        move |seqs: std::ops::Range<u32>| {
            let mut b = PktBatch::new();
            for s in seqs {
                let f = frame(s, PEER_MAC, OUR_MAC);
                b.push(Mbuf::from_slice(&f, &pool).unwrap()).unwrap();
            }
            let want = b.len();
            let mut tx = tx.lock().unwrap();
            let deadline = Instant::now() + Duration::from_secs(1);
            let mut sent = 0;
            while sent < want {
                assert!(Instant::now() < deadline, "tx stuck at {sent} of {want}");
                sent += tx.tx_burst(&mut b);
            }
        }
    };
    // testpmd may take a moment to start forwarding: a first echo before the test.
    let s0 = send.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut b = PktBatch::new();
    'warm: loop {
        s0(0..1);
        for _ in 0..100 {
            if rx.rx_burst(&mut b) > 0 {
                break 'warm;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            Instant::now() < deadline,
            "no echo; testpmd log:\n{}",
            tp.log()
        );
    }
    // Echoes of further warm-up frames, if any, come well within this.
    std::thread::sleep(Duration::from_millis(200));
    while rx.rx_burst(&mut b) > 0 {
        b.clear();
    }
    drop(b);

    let s1 = send.clone();
    sleep_then_wake(&mut rx, move || s1(100..100 + N as u32), 100);
    let s2 = send.clone();
    let peer = Peer::spawn(Box::new(move |seq| s2(seq..seq + 1)));
    let race = lost_wakeup_loop(&mut rx, &peer, 10_000);
    drop(peer);
    eprintln!("{test}: {race:?}");
    assert_eq!(race.ready_at_arm + race.woken, ROUNDS);

    port.stop().unwrap();
    drop(rx);
    drop(send);
    drop(tx);
    drop(port);
    drop(tp);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn split_rx_intr_with_dpdk_vhost() {
    with_testpmd("split_rx_intr_with_dpdk_vhost", false);
}

#[test]
fn packed_rx_intr_with_dpdk_vhost() {
    with_testpmd("packed_rx_intr_with_dpdk_vhost", true);
}
