//! Shared by the memif integration tests: ports built straight from the driver, test
//! frames, and a checker that every frame arrives once, byte for byte.

#![allow(dead_code)]

pub mod testpmd;

use pmd_core::ethdev::{Driver, Port, PortConf, RxOffloads, RxQueueHandle, TxQueueHandle};
use pmd_core::mbuf::PktBatch;
use pmd_core::Mempool;
use std::time::{Duration, Instant};

/// Ethertype of the test frames.
pub const ETHERTYPE: u16 = 0x88b5;

/// A probed memif port with its queues, started.
pub struct Side {
    /// The port.
    pub port: Port,
    /// Its pool.
    pub pool: Mempool,
    /// Rx queues.
    pub rx: Vec<RxQueueHandle>,
    /// Tx queues.
    pub tx: Vec<TxQueueHandle>,
}

/// Probes `spec` as port `id`, with `queues` queues each way, and starts it.
pub fn side(id: u16, spec: &str, queues: u16) -> Side {
    side_with(id, spec, queues, None)
}

/// [`side`] with a pool of `data_room`-byte buffers and the SCATTER rx offload (frames
/// larger than a buffer arrive as chains), or default buffers without it.
pub fn side_with(id: u16, spec: &str, queues: u16, data_room: Option<u16>) -> Side {
    let vdev = spec.parse().expect("vdev spec");
    let dev = pmd_memif::DRIVER.probe(&vdev).expect("probe");
    let mut port = Port::new(id, spec.split(',').next().unwrap(), dev);
    let pool = Mempool::create_with(
        &format!("memif-test-{id}-{}", std::process::id()),
        &pmd_core::mempool::MempoolConfig {
            size: 4096,
            cache_size: 0,
            buf_size: data_room.map_or(pmd_core::mbuf::DEFAULT_BUF_SIZE, |r| {
                r + pmd_core::mbuf::HEADROOM
            }),
        },
    )
    .expect("pool");
    port.configure(&PortConf {
        rx_queues: queues,
        tx_queues: queues,
        rx_offloads: if data_room.is_some() {
            RxOffloads::SCATTER
        } else {
            RxOffloads::NONE
        },
        ..Default::default()
    })
    .expect("configure");
    let rx = (0..queues)
        .map(|q| port.setup_rx_queue(q, 0, &pool).expect("rx queue"))
        .collect();
    let tx = (0..queues)
        .map(|q| port.setup_tx_queue(q, 0).expect("tx queue"))
        .collect();
    port.start().expect("start");
    Side { port, pool, rx, tx }
}

impl Side {
    /// Stops the port, drops the queues and checks every buffer came back.
    pub fn finish(mut self) {
        self.port.stop().unwrap();
        self.rx.clear();
        self.tx.clear();
        assert_eq!(self.pool.stats().in_use, 0, "leaked buffers");
    }

    /// An xstat by name.
    pub fn xstat(&self, name: &str) -> u64 {
        self.port
            .xstats()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|x| x.1)
            .unwrap_or_else(|| panic!("no xstat {name}"))
    }
}

/// Waits for `cond` up to `secs` seconds.
pub fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Length of frame `seq` (60..=`max` bytes).
pub fn frame_len(seq: u32, max: usize) -> usize {
    60 + (seq as usize * 37) % (max - 60 + 1)
}

/// Frame `seq` from `src` to `dst`: ethertype 0x88b5, `dir` and `seq` after it, then a
/// pattern; 60..=1514 bytes.
pub fn frame(dst: [u8; 6], src: [u8; 6], dir: u8, seq: u32) -> Vec<u8> {
    frame_upto(dst, src, dir, seq, 1514)
}

/// [`frame`] with lengths up to `max` bytes.
pub fn frame_upto(dst: [u8; 6], src: [u8; 6], dir: u8, seq: u32, max: usize) -> Vec<u8> {
    let mut f = vec![0u8; frame_len(seq, max)];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14] = dir;
    f[15..19].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[19..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i * 3 + dir as usize) as u8;
    }
    f
}

/// The sequence number in a test frame.
pub fn seq_of(d: &[u8]) -> u32 {
    assert!(d.len() >= 19, "runt of {} bytes", d.len());
    u32::from_be_bytes(d[15..19].try_into().unwrap())
}

/// Sends `n` frames of direction `dir` on `side` (frame `seq` on queue `seq % queues`)
/// while receiving `n_in` frames of direction `peer_dir`, checking each byte for byte
/// (built with `expect`) and that it arrived on queue `seq % queues`.
#[allow(clippy::too_many_arguments)]
pub fn exchange(
    side: &mut Side,
    n: u32,
    n_in: u32,
    dir: u8,
    peer_dir: u8,
    expect: impl Fn(u32) -> Vec<u8>,
    send: impl Fn(u32) -> Vec<u8>,
    secs: u64,
) {
    let q = side.tx.len() as u32;
    let mut next = 0u32;
    let mut got = vec![false; n_in as usize];
    let mut received = 0u32;
    let mut pending: Vec<PktBatch> = (0..q).map(|_| PktBatch::new()).collect();
    let mut rb = PktBatch::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while received < n_in || next < n || pending.iter().any(|b| !b.is_empty()) {
        assert!(
            Instant::now() < end,
            "dir {dir}: timed out: sent {next}/{n}, received {received}/{n_in}; xstats {:?}",
            side.port.xstats()
        );
        // Queue frames per tx queue, then push what the ring takes.
        while next < n {
            let qi = (next % q) as usize;
            if pending[qi].spare() == 0 {
                break;
            }
            // One buffer, or a chain when the frame is larger than the pool's buffers.
            let m = pmd_core::Mbuf::from_slice(&send(next), &side.pool).expect("pool has room");
            pending[qi].push(m).unwrap();
            next += 1;
        }
        for (qi, b) in pending.iter_mut().enumerate() {
            side.tx[qi].tx_burst(b);
        }
        for (qi, rx) in side.rx.iter_mut().enumerate() {
            rb.clear();
            rx.rx_burst(&mut rb);
            for m in rb.iter() {
                let whole = m.to_vec();
                let d = &whole[..];
                assert_eq!(d[14], peer_dir, "direction byte");
                let seq = seq_of(d);
                assert!(seq < n_in, "bad sequence {seq}");
                assert_eq!(seq % q, qi as u32, "frame {seq} arrived on queue {qi}");
                let want = expect(seq);
                assert_eq!(d.len(), want.len(), "length of frame {seq}");
                assert!(d == &want[..], "contents of frame {seq}");
                assert!(!got[seq as usize], "duplicate frame {seq}");
                got[seq as usize] = true;
                received += 1;
            }
        }
    }
}

/// MAC addresses of the two sides of [`both_ways`].
pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
/// See [`MAC_A`].
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];

/// `n` frames of up to `max` bytes each way between `a` (in a thread of its own) and
/// `b`, each checked byte for byte; then every frame counted on both ports, nothing
/// dropped. Gives both sides back.
pub fn both_ways(mut a: Side, mut b: Side, n: u32, max: usize) -> (Side, Side) {
    let f = move |d, s, dir, seq| frame_upto(d, s, dir, seq, max);
    let ta = std::thread::spawn(move || {
        exchange(
            &mut a,
            n,
            n,
            1,
            2,
            |s| f(MAC_A, MAC_B, 2, s),
            |s| f(MAC_B, MAC_A, 1, s),
            60,
        );
        a
    });
    exchange(
        &mut b,
        n,
        n,
        2,
        1,
        |s| f(MAC_B, MAC_A, 1, s),
        |s| f(MAC_A, MAC_B, 2, s),
        60,
    );
    let a = ta.join().expect("thread A");
    for s in [&a, &b] {
        let st = s.port.stats();
        assert_eq!((st.ipackets, st.opackets), (n as u64, n as u64), "{st:?}");
        assert_eq!((st.ierrors, st.oerrors, st.rx_nombuf), (0, 0, 0), "{st:?}");
    }
    (a, b)
}
