//! `mempool::keep_data_apart`: pools made after it keep their buffers' data rooms in a
//! segment of their own (what memif's zero-copy client shares with its server), and
//! nothing else changes: every buffer's bytes lie in that segment, the headers in the
//! other, the two never overlap, the data segment is a memfd sealed against resizing,
//! and buffers and chains work as before. Its own test binary: the switch is
//! process-wide.

use pmd_core::mempool::{keep_data_apart, MempoolConfig};
use pmd_core::{Mbuf, Mempool};
use std::os::fd::AsFd;

fn pool(name: &str) -> Mempool {
    Mempool::create_with(
        name,
        &MempoolConfig {
            size: 512,
            cache_size: 0,
            buf_size: 1152,
        },
    )
    .expect("pool")
}

fn within(p: usize, len: usize, base: usize, seg_len: usize) -> bool {
    p >= base && p + len <= base + seg_len
}

#[test]
fn data_rooms_live_apart_after_the_switch() {
    let before = pool("apart-before");
    assert!(
        before.data_segment().is_none(),
        "pools made earlier keep their layout"
    );
    keep_data_apart();
    let p = pool("apart-after");
    let data = p.data_segment().expect("a data segment");
    let hdrs = p.segment();
    let (db, dl) = (data.as_ptr() as usize, data.len());
    let (hb, hl) = (hdrs.as_ptr() as usize, hdrs.len());
    assert!(
        db + dl <= hb || hb + hl <= db,
        "the segments do not overlap"
    );
    assert!(dl >= 512 * 1152, "room for every data room");
    // The data segment can be passed to a peer: a memfd sealed against resizing.
    let seals = pmd_core::unix::memfd::seals(data.fd().as_fd()).expect("a memfd");
    assert_ne!(seals & libc::F_SEAL_SHRINK, 0);
    assert_ne!(seals & libc::F_SEAL_GROW, 0);
    // Every buffer: its whole room in the data segment, none shared with another, and
    // filling it leaves every header intact.
    let mut all: Vec<Mbuf> = (0..512).map(|_| p.alloc().expect("buffer")).collect();
    assert!(p.alloc().is_none());
    let mut starts = Vec::new();
    for (i, m) in all.iter_mut().enumerate() {
        let room = m.buf_len() - m.headroom();
        let d = m.append(room).expect("room");
        d.fill(i as u8);
        let start = d.as_ptr() as usize - m.headroom();
        assert!(
            within(start, m.buf_len(), db, dl),
            "buffer {i} in the data segment"
        );
        starts.push(start);
    }
    starts.sort_unstable();
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= 1152),
        "rooms do not overlap"
    );
    for (i, m) in all.iter().enumerate() {
        assert_eq!(m.len(), 1152 - m.headroom());
        assert!(
            m.data().iter().all(|&b| b == i as u8),
            "buffer {i} kept its bytes"
        );
        assert_eq!((m.nb_segs(), m.refcnt()), (1, 1));
    }
    drop(all);
    assert_eq!(p.stats().in_use, 0);
    // Chains across buffers of the pool, and back.
    let frame: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
    let m = Mbuf::from_slice(&frame, &p).expect("a chain");
    assert!(m.nb_segs() > 1);
    assert_eq!(m.to_vec(), frame);
    drop(m);
    assert_eq!(p.stats().in_use, 0);
    assert_eq!(p.element_size(), 128 + 1152);
    drop(before);
}
