//! Preferred busy polling, in its own test binary (its own process): it looks at the
//! options of every AF_XDP socket the process has, so no other test may have one open.
//! Needs root and a kernel with AF_XDP, like `af_xdp.rs`.

mod common;

use common::*;
use pmd_core::ethdev::PortConf;
use std::time::Duration;

/// The busy-polling options of this process's AF_XDP sockets as the kernel holds them:
/// `(SO_PREFER_BUSY_POLL, SO_BUSY_POLL)` per socket (the kernel does not report
/// `SO_BUSY_POLL_BUDGET` back).
fn xdp_busy_poll_options() -> Vec<(i32, i32)> {
    let get = |fd: i32, opt: i32| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the kernel writes at most `len` bytes into `v`, a live int; `fd` is one
        // of this process's descriptors (a failure just returns -1).
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut i32).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if get(fd, libc::SO_DOMAIN) == Some(libc::AF_XDP) {
            out.push((
                get(fd, libc::SO_PREFER_BUSY_POLL).unwrap(),
                get(fd, libc::SO_BUSY_POLL).unwrap(),
            ));
        }
    }
    out
}

/// Preferred busy polling is on by default with DPDK's budget (64) and what `busy_budget`
/// says otherwise, as the kernel holds it on the socket; each rx burst then makes one
/// busy-poll call, and frames arrive byte for byte either way. `busy_budget=0` turns it
/// off.
#[test]
fn preferred_busy_polling_follows_busy_budget() {
    let Some(ns) = netns("preferred_busy_polling_follows_busy_budget", 1) else {
        return;
    };
    ns.run(|| {
        for (spec, budget) in [
            ("net_af_xdp0,iface=va", 64),
            ("net_af_xdp0,iface=va,busy_budget=256", 256),
            ("net_af_xdp0,iface=va,busy_budget=0", 0),
        ] {
            let mut port = open_port(spec, PortConf::default());
            let p = pool("busy");
            let (mut rxqs, _txqs) = start(&mut port, &p, 1);
            let on = i32::from(budget > 0);
            assert_eq!(
                xdp_busy_poll_options(),
                [(on, 20 * on)],
                "{spec}: the socket's options"
            );
            assert_eq!(xstat(&port, "q0_busy_budget"), budget as u64, "{spec}");
            let mac = port.mac_addr().0;
            let peer = open_peer();
            const N: u32 = 300;
            for seq in 0..N {
                peer.send_retrying(&test_frame(mac, seq), Duration::from_secs(2));
            }
            let (got, _) = receive(&mut rxqs, N as usize);
            assert_eq!(
                got.len(),
                N as usize,
                "{spec}: received {} of {N}",
                got.len()
            );
            for seq in 0..N {
                assert_eq!(got[&seq], test_frame(mac, seq), "{spec}: frame {seq}");
            }
            let polls = xstat(&port, "q0_busy_polls");
            if budget > 0 {
                assert!(polls > 0, "{spec}: no busy-poll call");
            } else {
                assert_eq!(polls, 0, "{spec}");
            }
            drop(rxqs);
            drop(_txqs);
            port.close();
        }
    });
}
