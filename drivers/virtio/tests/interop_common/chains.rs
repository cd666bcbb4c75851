//! Multi-segment transmit against DPDK's vhost (see `interop_chains.rs`).

use super::*;
use pmd_core::ethdev::TxOffloads;
use pmd_core::mempool::MempoolConfig;
use pmd_core::Mbuf;

const FRAMES: u32 = 600;

pub fn run(test: &str, packed: bool) {
    if !pmd_testkit::require(test, skip_reason()) {
        return;
    }
    let pid = std::process::id();
    let sock = PathBuf::from(format!("/tmp/pmd-virtio-chains-{pid}.sock"));
    let log = PathBuf::from(format!("/tmp/pmd-virtio-chains-{pid}.log"));
    let tp = Testpmd::start_args(&sock, &format!("pmdvch{pid}"), &log, "macswap", 1, "", &[]);
    wait_socket(&tp, &sock);
    let conf = PortConf {
        rx_offloads: RxOffloads::SCATTER,
        tx_offloads: TxOffloads::MULTI_SEGS,
        mtu: Some(9000),
        ..Default::default()
    };
    let (eal, (pool, seg_pool), mut rx, mut tx) =
        open_port(&sock, &format!("pmdvuch{pid}"), packed, &conf, || {
            // 1000-byte data rooms: a 9014-byte frame is a 10-segment chain.
            let seg_pool = Mempool::create_with(
                "virtio-chains-tx",
                &MempoolConfig {
                    size: 2048,
                    cache_size: 0,
                    buf_size: 1000 + pmd_core::mbuf::HEADROOM,
                },
            )
            .unwrap();
            (Mempool::create("virtio-chains", 2048, 0).unwrap(), seg_pool)
        });
    let info = eal.ports()[0].info();
    assert!(info.tx_offload_capa.contains(TxOffloads::MULTI_SEGS));
    assert_eq!(info.nb_seg_max, 64);
    let mut next = 0u32;
    let mut received = 0u32;
    let mut got = vec![false; FRAMES as usize];
    let mut max_segs = 0;
    let mut rb = PktBatch::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while received < FRAMES {
        assert!(
            Instant::now() < deadline,
            "timed out: sent {next}, received {received}; stats {:?}\ntestpmd log:\n{}",
            stats(&eal),
            tp.log()
        );
        if next < FRAMES && next - received < 32 {
            let mut b = PktBatch::new();
            while b.len() < 16 && next < FRAMES && next - received < 32 {
                let m = Mbuf::from_slice(&jumbo_frame(next), &seg_pool).unwrap();
                max_segs = max_segs.max(m.nb_segs());
                b.push(m).unwrap();
                next += 1;
            }
            while !b.is_empty() {
                tx.tx_burst(&mut b);
                assert!(Instant::now() < deadline, "tx stuck");
            }
        }
        rb.clear();
        rx.rx_burst(&mut rb);
        for m in rb.iter() {
            let d = m.to_vec();
            let seq = u32::from_be_bytes(d[14..18].try_into().unwrap());
            assert!(seq < FRAMES, "bad sequence {seq}");
            let want = swapped(jumbo_frame(seq));
            assert_eq!(d.len(), want.len(), "length of frame {seq}");
            assert!(d == want, "contents of frame {seq}");
            assert!(!got[seq as usize], "duplicate {seq}");
            got[seq as usize] = true;
            received += 1;
        }
    }
    let s = stats(&eal);
    eprintln!("{test}: stats {s:?}, longest chain {max_segs} segments");
    assert_eq!(max_segs, 10);
    assert_eq!((s.opackets, s.ipackets), (FRAMES as u64, FRAMES as u64));
    assert_eq!((s.oerrors, s.ierrors), (0, 0));
    assert_eq!(xstat(&eal, "tx_linearized"), 0, "sent as descriptor chains");
    assert_eq!(xstat(&eal, "tx_too_many_segs"), 0);
    let mut eal = eal;
    eal.port_mut(0).unwrap().stop().unwrap();
    drop(rx);
    drop(tx);
    drop(rb);
    assert_eq!(pool.stats().in_use, 0, "no leaked rx buffers");
    assert_eq!(
        seg_pool.stats().in_use,
        0,
        "every segment of every chain freed"
    );
    drop(tp);
}
