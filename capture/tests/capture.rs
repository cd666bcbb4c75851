//! [`pmd_capture::Capture`] end to end: bursts recorded through taps on two "lcores" come
//! out of the writer thread as a pcap file that the `pcap-file` crate reads back byte for
//! byte; a capture that cannot keep up drops bursts (counted) instead of making the data
//! path wait; snaplen truncation keeps the original lengths. No root needed: files go
//! under the temporary directory.

use pcap_file::pcap::PcapReader;
use pmd_capture::{Capture, CaptureOptions};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use pmd_testkit::TempDir;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Frame `seq`: 60 to 1514 bytes, its sequence number after the Ethernet header.
fn frame(seq: u32) -> Vec<u8> {
    let len = 60 + (seq as usize * 37) % 1455;
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&[0x02, 0, 0, 0, 0xbb, 0x01, 0x02, 0, 0, 0, 0xaa, 0x01]);
    f.extend_from_slice(&0x88b5u16.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq.wrapping_mul(13)) as u8);
    }
    f
}

fn pool() -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("capt-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create(&n, 1024, 0).unwrap()
}

/// The frames of a pcap file, read with the `pcap-file` crate's own reader.
fn read_with_pcap_file(path: &Path) -> Vec<Vec<u8>> {
    let mut r = PcapReader::new(std::fs::File::open(path).unwrap()).unwrap();
    assert_eq!(r.header().datalink, pcap_file::DataLink::ETHERNET);
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        assert_eq!(p.orig_len as usize, p.data.len());
        v.push(p.data.into_owned());
    }
    v
}

#[test]
fn capture_records_what_passes_through_a_tap() {
    let dir = TempDir::new("pmdcapture-cap");
    let file = dir.file("cap.pcap");
    let cap = Capture::create(&file).unwrap();
    let mut taps = [cap.tap(), cap.tap()];
    let p = pool();
    let mut batch = PktBatch::new();
    const N: u32 = 2000;
    let mut next = 0u32;
    // Two taps (as two lcores would), alternating bursts of up to 64.
    while next < N {
        let n = (N - next).min(1 + next % 64);
        p.alloc_bulk(&mut batch, n as usize).unwrap();
        for m in batch.iter_mut() {
            m.copy_from(&frame(next));
            next += 1;
        }
        taps[(next % 2) as usize].record(&batch);
        // The batch is untouched: still ours to forward.
        assert_eq!(batch.len(), n as usize);
        batch.clear();
        // Pace so that the writer keeps up (nothing is dropped in this test).
        if next % 512 < 64 {
            let deadline = Instant::now() + Duration::from_secs(5);
            while cap.stats().written < cap.stats().captured && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    drop(taps);
    let s = cap.finish().unwrap();
    assert_eq!(
        (s.captured, s.dropped, s.written),
        (u64::from(N), 0, u64::from(N))
    );
    let got = read_with_pcap_file(&file);
    let want: Vec<Vec<u8>> = (0..N).map(frame).collect();
    assert_eq!(got, want);
    assert_eq!(p.stats().in_use, 0);
}

#[test]
fn capture_drops_instead_of_waiting_and_truncates_to_snaplen() {
    let dir = TempDir::new("pmdcapture-capdrop");
    let file = dir.file("cap.pcap");
    let cap = Capture::with_options(
        &file,
        &CaptureOptions {
            buffers: 64,
            bursts: 2,
            snaplen: 100,
        },
    )
    .unwrap();
    let mut tap = cap.tap();
    let p = pool();
    let mut batch = PktBatch::new();
    p.alloc_bulk(&mut batch, 32).unwrap();
    for m in batch.iter_mut() {
        m.copy_from(&frame(39)); // 1503 bytes
    }
    // Far more than 2 bursts / 64 buffers at once: some are dropped, none waits.
    let t = Instant::now();
    for _ in 0..200 {
        tap.record(&batch);
    }
    assert!(t.elapsed() < Duration::from_secs(1));
    drop(tap);
    let s = cap.finish().unwrap();
    assert_eq!(s.captured + s.dropped, 200 * 32);
    assert!(s.dropped > 0, "{s:?}");
    assert_eq!(s.written, s.captured);
    let mut r = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
    let mut n = 0;
    while let Some(pkt) = r.next_packet() {
        let pkt = pkt.unwrap();
        assert_eq!((pkt.data.len(), pkt.orig_len), (100, 1503));
        assert_eq!(pkt.data[..], frame(39)[..100]);
        n += 1;
    }
    assert_eq!(n, s.written);
}
