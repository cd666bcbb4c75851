//! `net_pcap` end to end: frames written through a tx queue come back byte for byte through
//! an rx queue and through third-party readers (the `pcap-file` crate's reader, and
//! `tcpdump -r` when installed); infinite replay; damaged files; and chains recorded whole
//! by a tx queue and by [`pmd_capture::Capture`].
//! No root needed: everything happens in files under the temporary directory.

use pcap_file::pcap::PcapReader;
use pmd_capture::{Capture, CaptureOptions};
use pmd_core::devargs::VdevSpec;
use pmd_core::ethdev::{Device, Driver, Port, PortConf};
use pmd_core::mbuf::PktBatch;
use pmd_core::mempool::Mempool;
use pmd_pcap::DRIVER;
use pmd_testkit::{unique, TempDir};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

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
    let n = format!("pcapt-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create(&n, 1024, 0).unwrap()
}

fn probe(spec: &str) -> pmd_core::Result<Box<dyn Device>> {
    let vdev: VdevSpec = spec.parse().unwrap();
    assert_eq!(vdev.driver_prefix(), DRIVER.name());
    DRIVER.probe(&vdev)
}

fn port(spec: &str) -> Port {
    let mut p = Port::new(0, "net_pcap0", probe(spec).unwrap());
    p.configure(&PortConf::default()).unwrap();
    p
}

/// Sends `frames` through a new port recording into `path`, then stops and closes it.
fn record(path: &Path, frames: &[Vec<u8>]) {
    let mut port = port(&format!("net_pcap0,tx_pcap={}", path.display()));
    let p = pool();
    let _rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let mut batch = PktBatch::new();
    for chunk in frames.chunks(32) {
        p.alloc_bulk(&mut batch, chunk.len()).unwrap();
        for (m, f) in batch.iter_mut().zip(chunk) {
            assert!(m.copy_from(f));
        }
        assert_eq!(tx.tx_burst(&mut batch), chunk.len());
        assert!(batch.is_empty());
    }
    let s = port.stats();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        (s.opackets, s.obytes, s.oerrors),
        (frames.len() as u64, bytes, 0)
    );
    port.stop().unwrap();
    port.close();
}

/// Everything an rx queue replays until it has been idle for 20 polls (or `limit` frames).
fn replay(rx: &mut pmd_core::ethdev::RxQueueHandle, limit: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut batch = PktBatch::new();
    let mut idle = 0;
    while idle < 20 && got.len() < limit {
        if rx.rx_burst(&mut batch) == 0 {
            idle += 1;
            continue;
        }
        idle = 0;
        got.extend(batch.iter().map(|m| m.data().to_vec()));
        batch.clear();
    }
    got
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

/// `tcpdump -r path -x` as (count, hex bytes of each frame), or `None` if not installed.
fn read_with_tcpdump(path: &Path) -> Option<Vec<Vec<u8>>> {
    let out = Command::new("tcpdump")
        .args(["-nn", "-x", "-e", "-r"])
        .arg(path)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tcpdump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each frame: a summary line, then lines "\t0x0000:  hhhh hhhh ..." of the bytes
    // after the Ethernet header (-x without -xx skips the link header).
    let mut frames: Vec<Vec<u8>> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(hex) = line.trim_start().strip_prefix("0x") {
            let (_, words) = hex.split_once(':').unwrap();
            let cur = frames.last_mut().unwrap();
            for w in words.split_whitespace() {
                for i in (0..w.len()).step_by(2) {
                    cur.push(u8::from_str_radix(&w[i..i + 2], 16).unwrap());
                }
            }
        } else {
            frames.push(Vec::new());
        }
    }
    Some(frames)
}

#[test]
fn tx_then_rx_round_trip_byte_for_byte() {
    let dir = TempDir::new("pmdpcap-rt");
    let file = dir.file("out.pcap");
    const N: u32 = 500;
    let frames: Vec<Vec<u8>> = (0..N).map(frame).collect();
    record(&file, &frames);

    // Third-party readers see exactly the frames sent.
    assert_eq!(read_with_pcap_file(&file), frames);
    match read_with_tcpdump(&file) {
        Some(t) => {
            assert_eq!(t.len(), frames.len(), "tcpdump frame count");
            for (i, (got, want)) in t.iter().zip(&frames).enumerate() {
                assert_eq!(got[..], want[14..], "tcpdump frame {i}");
            }
        }
        None => pmd_testkit::skip(
            "tx_then_rx_round_trip_byte_for_byte",
            "the tcpdump check (tcpdump is not installed; ci/setup.sh installs it)",
        ),
    }

    // Our rx replays them once, then goes idle.
    let mut port = port(&format!("net_pcap1,rx_pcap={}", file.display()));
    let p = pool();
    let mut rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    assert!(port.link().up);
    let got = replay(&mut rx, usize::MAX);
    assert_eq!(got.len(), N as usize);
    assert_eq!(got, frames);
    let s = port.stats();
    let bytes: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!((s.ipackets, s.ibytes, s.ierrors), (u64::from(N), bytes, 0));
    let xs = port.xstats();
    assert!(
        xs.contains(&("rx_q0_file_packets".into(), u64::from(N))),
        "{xs:?}"
    );

    // Without a tx file, sent packets are dropped and counted (DPDK's tx_drop).
    let mut batch = PktBatch::new();
    p.alloc_bulk(&mut batch, 3).unwrap();
    for m in batch.iter_mut() {
        m.copy_from(&frame(1));
    }
    assert_eq!(tx.tx_burst(&mut batch), 3);
    assert_eq!(port.stats().opackets, 3);

    // A restart replays from the beginning.
    port.stop().unwrap();
    port.start().unwrap();
    assert_eq!(replay(&mut rx, usize::MAX), frames);
    assert_eq!(p.stats().in_use, 0, "every buffer went back to the pool");
}

#[test]
fn infinite_rx_loops_over_the_file() {
    let dir = TempDir::new("pmdpcap-inf");
    let file = dir.file("five.pcap");
    let frames: Vec<Vec<u8>> = (0..5).map(frame).collect();
    record(&file, &frames);
    let mut port = port(&format!(
        "net_pcap0,rx_pcap={},infinite_rx=1",
        file.display()
    ));
    let p = pool();
    let mut rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let _tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    let got = replay(&mut rx, 1003);
    assert!(got.len() >= 1003, "{}", got.len());
    for (i, f) in got.iter().enumerate() {
        assert_eq!(f, &frames[i % 5], "frame {i}");
    }
    // Still going.
    let mut batch = PktBatch::new();
    assert_eq!(rx.rx_burst(&mut batch), 32);
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = TempDir::new("pmdpcap-bad");
    let err = |spec: String| probe(&spec).err().expect("probe should fail").to_string();

    let garbage = dir.file("garbage.pcap");
    std::fs::write(&garbage, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let e = err(format!("net_pcap0,rx_pcap={}", garbage.display()));
    assert_eq!(
        e,
        format!(
            "net_pcap0: rx_pcap {}: not a pcap or pcapng file (starts with 0x47455420)",
            garbage.display()
        )
    );

    let good = dir.file("good.pcap");
    record(&good, &(0..10).map(frame).collect::<Vec<_>>());
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.file("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    let e = err(format!("net_pcap0,rx_pcap={}", cut.display()));
    assert!(
        e.contains("truncated: record 10 at byte") && e.contains("after 9 complete packets"),
        "{e}"
    );

    let empty = dir.file("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let e = err(format!("net_pcap0,rx_pcap={}", empty.display()));
    assert!(e.contains("not a pcap file: only 0 bytes"), "{e}");

    let e = err(format!(
        "net_pcap0,rx_pcap={}",
        dir.file("missing.pcap").display()
    ));
    assert!(e.contains("missing.pcap: cannot read: No such file"), "{e}");

    let e = err(format!(
        "net_pcap0,tx_pcap={}",
        dir.file("no/such/dir/out.pcap").display()
    ));
    assert!(e.contains("cannot create: No such file"), "{e}");

    // An empty (header only) file with infinite_rx has nothing to loop over.
    let hdr = dir.file("hdr.pcap");
    record(&hdr, &[]);
    let e = err(format!("net_pcap0,rx_pcap={},infinite_rx=1", hdr.display()));
    assert!(e.contains("no packets, so infinite_rx=1"), "{e}");
    // Without infinite_rx it is a port that receives nothing.
    let mut port = port(&format!("net_pcap0,rx_pcap={}", hdr.display()));
    let p = pool();
    let mut rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let _tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    assert!(replay(&mut rx, 10).is_empty());

    let e = err("net_pcap0,rx_pcap=a.pcap,speed=1".into());
    assert!(e.contains("unknown argument(s) 'speed'"), "{e}");
}

#[test]
fn tx_file_is_complete_after_stop_and_keeps_growing_after_restart() {
    let dir = TempDir::new("pmdpcap-stop");
    let file = dir.file("out.pcap");
    let mut port = port(&format!("net_pcap0,tx_pcap={}", file.display()));
    let p = pool();
    let _rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let mut tx = port.setup_tx_queue(0, 0).unwrap();
    let send = |tx: &mut pmd_core::ethdev::TxQueueHandle, seqs: std::ops::Range<u32>| {
        let mut batch = PktBatch::new();
        for s in seqs {
            p.alloc_bulk(&mut batch, 1).unwrap()[0].copy_from(&frame(s));
            if batch.spare() == 0 {
                tx.tx_burst(&mut batch);
            }
        }
        tx.tx_burst(&mut batch);
    };
    port.start().unwrap();
    send(&mut tx, 0..100);
    port.stop().unwrap();
    // Complete while stopped (the queue still exists, the file is not closed).
    let want: Vec<Vec<u8>> = (0..100).map(frame).collect();
    assert_eq!(read_with_pcap_file(&file), want);
    port.start().unwrap();
    send(&mut tx, 100..150);
    // A flush writes the buffer out too.
    tx.tx_flush();
    let want: Vec<Vec<u8>> = (0..150).map(frame).collect();
    assert_eq!(read_with_pcap_file(&file), want);
    port.close();
    // After close the queue refuses packets (counted as errors) and the file stays whole.
    send(&mut tx, 150..151);
    assert_eq!(read_with_pcap_file(&file), want);
}

/// DPDK's own net_pcap (testpmd, io forwarding on one port looped to itself) replays a file
/// we wrote and records into a file we then replay: both ways byte for byte.
#[test]
fn dpdk_testpmd_reads_our_file_and_we_read_its_file() {
    const TEST: &str = "dpdk_testpmd_reads_our_file_and_we_read_its_file";
    if !pmd_testkit::have_root(TEST) || !pmd_testkit::require(TEST, pmd_testkit::dpdk_missing()) {
        return;
    }
    let dir = TempDir::new("pmdpcap-dpdk");
    let ours = dir.file("ours.pcap");
    let theirs = dir.file("dpdk.pcap");
    const N: u32 = 300;
    let frames: Vec<Vec<u8>> = (0..N).map(frame).collect();
    record(&ours, &frames);
    let prefix = unique("pmdpcapdpdk");
    let vdev = format!(
        "net_pcap0,rx_pcap={},tx_pcap={}",
        ours.display(),
        theirs.display()
    );
    let out = Command::new("timeout")
        .args([
            "-s",
            "INT",
            "4",
            "dpdk-testpmd",
            "-l",
            "0,1",
            "--no-pci",
            "--no-huge",
        ])
        .args(["-m", "512", "--file-prefix", &prefix, "--vdev", &vdev, "--"])
        .args([
            "--forward-mode=io",
            "--port-topology=loop",
            "--stats-period",
            "1",
        ])
        // Without --no-flush-rx testpmd drains (and drops) what rx has before forwarding.
        .args(["--total-num-mbufs=4096", "--no-flush-rx"])
        .output()
        .expect("running dpdk-testpmd");
    let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/{prefix}"));
    let log =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&format!("TX-packets: {N} ")),
        "testpmd did not forward {N} packets:\n{log}"
    );
    let mut port = port(&format!("net_pcap0,rx_pcap={}", theirs.display()));
    let p = pool();
    let mut rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let _tx = port.setup_tx_queue(0, 0).unwrap();
    port.start().unwrap();
    assert_eq!(replay(&mut rx, usize::MAX), frames, "{log}");
}

// ---- jumbo frames and mbuf chains ----------------------------------------------------

/// Frames of 60, 1514, 9014 and 20000 bytes (the last two larger than a default mbuf),
/// each with its own pattern.
fn jumbo_frames() -> Vec<Vec<u8>> {
    [60usize, 1514, 9014, 20_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let mut f = frame(i as u32);
            f.truncate(18);
            while f.len() < len {
                f.push(
                    (f.len() as u32)
                        .wrapping_mul(2_654_435_761)
                        .rotate_right(i as u32) as u8,
                );
            }
            f
        })
        .collect()
}

/// A pool whose buffers hold 512 bytes of data.
fn small_pool() -> Mempool {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let n = format!("pcapsmall-{}", SEQ.fetch_add(1, Ordering::Relaxed));
    Mempool::create_with(
        &n,
        &pmd_core::mempool::MempoolConfig {
            size: 1024,
            cache_size: 0,
            buf_size: 512 + pmd_core::mbuf::HEADROOM,
        },
    )
    .unwrap()
}

/// Writes `frames` with the `pcap-file` crate's writer (snaplen 65535).
fn write_with_pcap_file(path: &Path, frames: &[Vec<u8>]) {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let hdr = PcapHeader {
        snaplen: 65_535,
        datalink: pcap_file::DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(std::fs::File::create(path).unwrap(), hdr).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_millis(i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

/// Everything an rx queue replays until idle, as (bytes joined over the segments, segment
/// count); checks that each packet's length is its segments' total.
fn replay_chains(rx: &mut pmd_core::ethdev::RxQueueHandle) -> Vec<(Vec<u8>, u16)> {
    let mut got = Vec::new();
    let mut batch = PktBatch::new();
    let mut idle = 0;
    while idle < 20 {
        if rx.rx_burst(&mut batch) == 0 {
            idle += 1;
            continue;
        }
        idle = 0;
        for m in batch.iter() {
            let v = m.to_vec();
            assert_eq!(v.len(), m.len());
            assert_eq!(m.segments().map(<[u8]>::len).sum::<usize>(), m.len());
            got.push((v, m.nb_segs()));
        }
        batch.clear();
    }
    got
}

#[test]
fn jumbo_frames_replay_as_chains_with_scatter_and_are_counted_errors_without() {
    use pmd_core::ethdev::{RxOffloads, TxOffloads};
    let dir = TempDir::new("pmdpcap-jumbo");
    let file = dir.file("jumbo.pcap");
    let frames = jumbo_frames();
    write_with_pcap_file(&file, &frames);
    let spec = format!("net_pcap0,rx_pcap={}", file.display());

    let info = probe(&spec).unwrap().info();
    assert!(info.rx_offload_capa.contains(RxOffloads::SCATTER));
    assert!(info.tx_offload_capa.contains(TxOffloads::MULTI_SEGS));
    assert!(
        info.max_rx_pktlen >= 65_535 && info.nb_seg_max > 1,
        "{info:?}"
    );

    // SCATTER, 512-byte buffers: every frame arrives whole, as a chain of 512-byte segments.
    let mut pt = port(&spec);
    let small = small_pool();
    let e = pt.setup_rx_queue(0, 0, &small).unwrap_err().to_string();
    assert!(e.contains("SCATTER"), "{e}");
    let mut rx = pt
        .setup_rx_queue_with(0, 0, &small, RxOffloads::SCATTER)
        .unwrap();
    let _tx = pt.setup_tx_queue(0, 0).unwrap();
    pt.start().unwrap();
    let got = replay_chains(&mut rx);
    assert_eq!(got.len(), frames.len());
    for ((bytes, segs), want) in got.iter().zip(&frames) {
        assert_eq!(bytes, want, "frame of {} bytes differs", want.len());
        assert_eq!(
            usize::from(*segs),
            want.len().div_ceil(512),
            "{}",
            want.len()
        );
    }
    let s = pt.stats();
    let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!(
        (s.ipackets, s.ibytes, s.ierrors, s.rx_nombuf),
        (4, total, 0, 0)
    );
    drop(rx);
    assert_eq!(
        small.stats().in_use,
        0,
        "every segment went back to the pool"
    );

    // No SCATTER, 2048-byte buffers: the two frames larger than a buffer are counted
    // errors, the others arrive.
    let mut pt = port(&spec);
    let p = pool();
    let mut rx = pt.setup_rx_queue(0, 0, &p).unwrap();
    let _tx = pt.setup_tx_queue(0, 0).unwrap();
    pt.start().unwrap();
    let got = replay_chains(&mut rx);
    let want: Vec<(Vec<u8>, u16)> = frames[..2].iter().map(|f| (f.clone(), 1)).collect();
    assert_eq!(got, want);
    let s = pt.stats();
    assert_eq!((s.ipackets, s.ibytes, s.ierrors), (2, 60 + 1514, 2));

    // A pool too small for a chain: the frame is lost, counted once as rx_nombuf (as a
    // capture read without a buffer to put it in).
    let tiny = Mempool::create_with(
        "pcaptiny-jumbo",
        &pmd_core::mempool::MempoolConfig {
            size: 30,
            cache_size: 0,
            buf_size: 512 + pmd_core::mbuf::HEADROOM,
        },
    )
    .unwrap();
    let mut pt = port(&spec);
    let mut rx = pt
        .setup_rx_queue_with(0, 0, &tiny, RxOffloads::SCATTER)
        .unwrap();
    let _tx = pt.setup_tx_queue(0, 0).unwrap();
    pt.start().unwrap();
    let mut batch = PktBatch::new();
    let mut seen = Vec::new();
    for _ in 0..10 {
        rx.rx_burst(&mut batch);
        seen.extend(batch.iter().map(|m| m.to_vec()));
        batch.clear();
    }
    // 20000 bytes need 40 segments of a 30-buffer pool: never; the others come.
    assert_eq!(seen, frames[..3].to_vec());
    let s = pt.stats();
    assert!(s.rx_nombuf > 0 && s.ierrors == 0, "{s:?}");
    assert_eq!(
        s.rx_nombuf, 1,
        "the one frame that could not be chained, once"
    );
    assert_eq!(tiny.stats().in_use, 0);
}

/// A starved pool: rx_nombuf counts the packets lost for want of buffers, once each
/// however often the queue is polled, so received + nombuf is the whole trace.
#[test]
fn a_starved_pool_counts_each_lost_packet_once_in_rx_nombuf() {
    let dir = TempDir::new("pmdpcap-starved");
    let file = dir.file("forty.pcap");
    let frames: Vec<Vec<u8>> = (0..40).map(frame).collect();
    record(&file, &frames);
    let mut pt = port(&format!("net_pcap0,rx_pcap={}", file.display()));
    let p = Mempool::create("pcap-starved", 40, 0).unwrap();
    let mut rx = pt.setup_rx_queue(0, 0, &p).unwrap();
    let _tx = pt.setup_tx_queue(0, 0).unwrap();
    pt.start().unwrap();
    // 20 of the 40 buffers are held elsewhere: a burst of 32 cannot be served, the
    // 8 frames after it can.
    let held: Vec<_> = (0..20).map(|_| p.alloc().unwrap()).collect();
    let mut batch = PktBatch::new();
    assert_eq!(rx.rx_burst(&mut batch), 0);
    assert_eq!(
        pt.stats().rx_nombuf,
        32,
        "the 32 frames of the failed burst"
    );
    assert_eq!(rx.rx_burst(&mut batch), 8, "the rest of the trace");
    assert_eq!(
        &batch.iter().map(|m| m.to_vec()).collect::<Vec<_>>()[..],
        &frames[32..]
    );
    batch.clear();
    for _ in 0..5 {
        assert_eq!(rx.rx_burst(&mut batch), 0, "end of the trace");
    }
    drop(held);
    let s = pt.stats();
    assert_eq!((s.ipackets, s.rx_nombuf), (8, 32));
    assert_eq!(s.ipackets + s.rx_nombuf, frames.len() as u64);
    assert_eq!(p.stats().in_use, 0);
}

#[test]
fn chains_are_recorded_whole_by_tx_and_capture() {
    use pmd_core::ethdev::TxOffloads;
    use pmd_core::mbuf::Mbuf;
    let dir = TempDir::new("pmdpcap-chains");
    let out = dir.file("tx.pcap");
    let frames = jumbo_frames();
    let small = small_pool();
    let chains = |batch: &mut PktBatch| {
        for f in &frames {
            let m = Mbuf::from_slice(f, &small).unwrap();
            assert_eq!(usize::from(m.nb_segs()), f.len().div_ceil(512));
            batch.push(m).unwrap();
        }
    };

    // tx: every segment of every chain, in one record each.
    let mut port = port(&format!("net_pcap0,tx_pcap={}", out.display()));
    let p = pool();
    let _rx = port.setup_rx_queue(0, 0, &p).unwrap();
    let mut tx = port
        .setup_tx_queue_with(0, 0, TxOffloads::MULTI_SEGS)
        .unwrap();
    port.start().unwrap();
    let mut batch = PktBatch::new();
    chains(&mut batch);
    assert_eq!(tx.tx_burst(&mut batch), frames.len());
    port.stop().unwrap();
    let s = port.stats();
    let total: u64 = frames.iter().map(|f| f.len() as u64).sum();
    assert_eq!((s.opackets, s.obytes, s.oerrors), (4, total, 0));
    assert_eq!(read_with_pcap_file(&out), frames);
    assert_eq!(small.stats().in_use, 0);

    // Capture: chains whole (default snaplen), and cut at a snaplen across segments.
    for (snaplen, name) in [(u16::MAX, "cap.pcap"), (1000, "cap1000.pcap")] {
        let file = dir.file(name);
        let cap = Capture::with_options(
            &file,
            &CaptureOptions {
                snaplen,
                ..CaptureOptions::default()
            },
        )
        .unwrap();
        let mut tap = cap.tap();
        chains(&mut batch);
        tap.record(&batch);
        batch.clear();
        drop(tap);
        let s = cap.finish().unwrap();
        assert_eq!((s.captured, s.dropped, s.written), (4, 0, 4));
        let mut r = PcapReader::new(std::fs::File::open(&file).unwrap()).unwrap();
        for want in &frames {
            let pkt = r.next_packet().unwrap().unwrap();
            let keep = want.len().min(usize::from(snaplen));
            assert_eq!(pkt.orig_len as usize, want.len());
            assert_eq!(pkt.data[..], want[..keep], "snaplen {snaplen}");
        }
        assert!(r.next_packet().is_none());
    }
    assert_eq!(small.stats().in_use, 0);
}
