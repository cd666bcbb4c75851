//! A hostile peer over the real socket and real shared memory: malformed control
//! messages (sizes, types, versions, indices, offsets, ring sizes, descriptors) and
//! corrupted rings (counters beyond the ring, descriptors outside their buffer or region).
//! Each must end in a DISCONNECT with a reason and/or a counted error, never a panic,
//! and the device must keep working for the next, well-behaved peer.

mod common;

use common::{side, wait_for, Side};
use pmd_core::mbuf::PktBatch;
use pmd_memif::handshake::{
    client_layout, client_messages, client_reply, ClientParams, ServerHandshake, ServerParams,
    ServerStep,
};
use pmd_memif::proto::{self, AddRegion, AddRing, Init, Msg, Name, MSG_SIZE, VERSION};
use pmd_memif::ring::Desc;
use pmd_memif::session::Session;
use pmd_memif::sock::{wait_readable, Listener, SeqPacket, SockAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn name() -> String {
    format!(
        "pmd-memif-hostile-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn recv(c: &SeqPacket) -> Option<Msg> {
    if !wait_readable(c.raw(), 5000).unwrap() {
        panic!("no message within 5 s");
    }
    let r = pmd_memif::sock::recv(c).unwrap();
    if r.len == 0 {
        return None;
    }
    Some(proto::parse(r.bytes()).expect("our driver sends well-formed messages"))
}

/// Reads until a DISCONNECT and returns its reason.
fn disconnect_reason(c: &SeqPacket) -> String {
    loop {
        match recv(c) {
            Some(Msg::Disconnect(d)) => return d.reason.lossy(),
            Some(_) => continue,
            None => panic!("closed without DISCONNECT"),
        }
    }
}

fn params() -> ClientParams {
    ClientParams {
        id: 0,
        secret: None,
        rx_queues: 1,
        tx_queues: 1,
        log2: 4,
        bsize: 256,
        zero_copy: false,
        if_name: "fake".into(),
        app_name: "hostile".into(),
    }
}

fn connect(sock: &str) -> (SeqPacket, Msg) {
    let c = SeqPacket::connect(&SockAddr::Abstract(sock.into())).expect("connect");
    let hello = recv(&c).expect("HELLO");
    (c, hello)
}

/// A legitimate client handshake by hand; returns the socket and the shared session.
fn fake_client(sock: &str) -> (SeqPacket, Session) {
    let (c, hello) = connect(sock);
    let p = params();
    let (layout, _) = client_layout(hello, &p).unwrap();
    let s = layout.build("fake-client", false).unwrap();
    for (m, fd) in client_messages(&s, &p) {
        c.send(&m.encode(), fd).unwrap();
        client_reply(&m, recv(&c).unwrap()).unwrap();
    }
    s.reset_rings();
    (c, s)
}

fn memfd(len: u64, seal: bool) -> OwnedFd {
    let flags = libc::MFD_CLOEXEC | if seal { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: plain syscalls on a fresh descriptor; results checked.
    unsafe {
        let fd = libc::memfd_create(c"hostile".as_ptr(), flags);
        assert!(fd >= 0);
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        if seal {
            assert_eq!(libc::fcntl(fd, libc::F_ADD_SEALS, libc::F_SEAL_SHRINK), 0);
        }
        OwnedFd::from_raw_fd(fd)
    }
}

fn init(version: u16) -> Msg {
    Msg::Init(Init {
        version,
        id: 0,
        mode: 0,
        secret: proto::FixedStr::new(""),
        name: Name::new("hostile"),
    })
}

fn ack(c: &SeqPacket) {
    assert_eq!(recv(c), Some(Msg::Ack));
}

#[test]
fn malformed_control_messages_are_refused() {
    let sock = name();
    let srv = side(0, &format!("net_memif0,role=server,socket={sock}"), 1);
    let region = memfd(1 << 16, true);
    let add_region = |c: &SeqPacket, index: u16, size: u64, fd: &OwnedFd| {
        c.send(
            &Msg::AddRegion(AddRegion { index, size }).encode(),
            Some(fd.as_raw_fd()),
        )
        .unwrap();
    };
    let ev = pmd_memif::session::eventfd().unwrap();
    let add_ring = |c: &SeqPacket, offset: u32, log2: u8, region: u16| {
        let m = Msg::AddRing(AddRing {
            flags: proto::ADD_RING_FLAG_C2S,
            index: 0,
            region,
            offset,
            log2_ring_size: log2,
            private_hdr_size: 0,
        });
        c.send(&m.encode(), Some(ev.as_raw_fd())).unwrap();
    };
    type Case<'a> = (&'a str, Box<dyn Fn(&SeqPacket) + 'a>);
    let cases: Vec<Case> = vec![
        (
            "Invalid message size 100",
            Box::new(|c| c.send(&[3u8; 100], None).unwrap()),
        ),
        (
            "Invalid message size 256+",
            Box::new(|c| c.send(&[3u8; 300], None).unwrap()),
        ),
        (
            "Unknown message type 42",
            Box::new(|c| {
                let mut b = [0u8; MSG_SIZE];
                b[0] = 42;
                c.send(&b, None).unwrap()
            }),
        ),
        (
            "Unknown message type 0",
            Box::new(|c| c.send(&[0u8; MSG_SIZE], None).unwrap()),
        ),
        (
            "Incompatible memif version",
            Box::new(|c| c.send(&init(0x0100).encode(), None).unwrap()),
        ),
        (
            "Unexpected message ADD_RING before INIT",
            Box::new(|c| add_ring(c, 0, 4, 0)),
        ),
        (
            "Invalid region index 5",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 5, 4096, &region)
            }),
        ),
        (
            "Missing region fd",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                c.send(
                    &Msg::AddRegion(AddRegion {
                        index: 0,
                        size: 4096,
                    })
                    .encode(),
                    None,
                )
                .unwrap()
            }),
        ),
        (
            "exceeds its file",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 1 << 30, &region)
            }),
        ),
        (
            "sealed",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 4096, &memfd(4096, false))
            }),
        ),
        (
            "Ring at offset 65280 does not fit",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 1 << 16, &region);
                ack(c);
                add_ring(c, 65280, 4, 0)
            }),
        ),
        (
            "Ring size 2^20 too large",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 1 << 16, &region);
                ack(c);
                add_ring(c, 0, 20, 0)
            }),
        ),
        (
            "Invalid ring region 3",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 1 << 16, &region);
                ack(c);
                add_ring(c, 0, 4, 3)
            }),
        ),
        (
            "Too many file descriptors",
            Box::new(|c| {
                // Two descriptors in one message, by hand.
                let msg = init(VERSION).encode();
                send_two_fds(c, &msg, region.as_raw_fd(), ev.as_raw_fd());
            }),
        ),
        (
            "Wrong ring cookie",
            Box::new(|c| {
                c.send(&init(VERSION).encode(), None).unwrap();
                ack(c);
                add_region(c, 0, 1 << 16, &region);
                ack(c);
                add_ring(c, 0, 4, 0);
                ack(c);
                let m = Msg::AddRing(AddRing {
                    flags: 0,
                    index: 0,
                    region: 0,
                    offset: 1024,
                    log2_ring_size: 4,
                    private_hdr_size: 0,
                });
                c.send(&m.encode(), Some(ev.as_raw_fd())).unwrap();
                ack(c);
                c.send(&Msg::Connect(Name::new("x")).encode(), None)
                    .unwrap()
            }),
        ),
    ];
    let mut refused = 0;
    for (want, act) in &cases {
        let (c, _hello) = connect(&sock);
        act(&c);
        let reason = disconnect_reason(&c);
        assert!(reason.contains(want), "wanted {want:?}, got {reason:?}");
        refused += 1;
        assert!(!srv.port.link().up);
    }
    wait_for(5, "counters", || srv.xstat("ctrl_rejected") == refused);
    assert_eq!(srv.xstat("ctrl_malformed_msgs"), 5, "size/type/fd errors");
    // A well-behaved client still gets in.
    let (_c, _s) = fake_client(&sock);
    wait_for(5, "link up", || srv.port.link().up);
    srv.finish();
}

fn send_two_fds(c: &SeqPacket, msg: &[u8], a: i32, b: i32) {
    let mut iov = libc::iovec {
        iov_base: msg.as_ptr() as *mut libc::c_void,
        iov_len: msg.len(),
    };
    let mut ctl = [0u64; 4];
    // SAFETY: building one SCM_RIGHTS control message with two ints inside `ctl`.
    unsafe {
        let mut mh: libc::msghdr = std::mem::zeroed();
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
        mh.msg_controllen = libc::CMSG_SPACE(8) as _;
        let cm = libc::CMSG_FIRSTHDR(&mh);
        (*cm).cmsg_level = libc::SOL_SOCKET;
        (*cm).cmsg_type = libc::SCM_RIGHTS;
        (*cm).cmsg_len = libc::CMSG_LEN(8) as _;
        let d = libc::CMSG_DATA(cm) as *mut i32;
        d.write_unaligned(a);
        d.add(1).write_unaligned(b);
        assert_eq!(libc::sendmsg(c.raw(), &mh, 0), msg.len() as isize);
    }
}

/// Puts one packet on the fake client's client-to-server ring at counter `slot`.
fn client_put(s: &Session, slot: u16, d: Desc, data: &[u8]) {
    let r = &s.c2s[0];
    let base = s.regions[0].base();
    let off = r.buf_base as usize + (slot as usize & (r.ring.size() as usize - 1)) * 256;
    // SAFETY: writing our own (fake client's) buffer inside its region.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(off), data.len()) };
    r.ring.set_desc(slot, d);
}

fn rx_all(srv: &mut Side) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = PktBatch::new();
    for _ in 0..20 {
        b.clear();
        srv.rx[0].rx_burst(&mut b);
        out.extend(b.iter().map(|m| m.data().to_vec()));
    }
    out
}

#[test]
fn corrupt_descriptors_and_counters_from_a_client() {
    let sock = name();
    let mut srv = side(0, &format!("net_memif0,role=server,socket={sock}"), 1);
    let (c, s) = fake_client(&sock);
    wait_for(5, "link up", || srv.port.link().up);
    let r = &s.c2s[0];
    let own = |slot: u16| r.buf_base + (slot as u32 & 15) * 256;
    let region_len = s.regions[0].len() as u32;
    // Slot 0: good. 1: length beyond the region. 2: offset beyond the region.
    // 3: region 9. 4: good again.
    client_put(
        &s,
        0,
        Desc {
            flags: 0,
            region: 0,
            length: 60,
            offset: own(0),
        },
        &[0xa0; 60],
    );
    client_put(
        &s,
        1,
        Desc {
            flags: 0,
            region: 0,
            length: region_len,
            offset: own(1),
        },
        &[1; 60],
    );
    client_put(
        &s,
        2,
        Desc {
            flags: 0,
            region: 0,
            length: 60,
            offset: region_len - 10,
        },
        &[2; 60],
    );
    client_put(
        &s,
        3,
        Desc {
            flags: 0,
            region: 9,
            length: 60,
            offset: 0,
        },
        &[3; 60],
    );
    client_put(
        &s,
        4,
        Desc {
            flags: 0,
            region: 0,
            length: 64,
            offset: own(4),
        },
        &[0xa4; 64],
    );
    r.ring.head().store(5, Ordering::Release);
    let got = rx_all(&mut srv);
    assert_eq!(
        got,
        vec![vec![0xa0; 60], vec![0xa4; 64]],
        "bad descriptors dropped"
    );
    assert_eq!(srv.xstat("rx_q0_bad_desc"), 3);
    assert_eq!(srv.port.stats().ierrors, 3);
    assert_eq!(
        r.ring.tail().load(Ordering::Acquire),
        5,
        "all five slots consumed"
    );
    // A chained packet longer than an mbuf: dropped as too long.
    for k in 0..10u16 {
        let flags = if k < 9 { proto::DESC_FLAG_NEXT } else { 0 };
        client_put(
            &s,
            5 + k,
            Desc {
                flags,
                region: 0,
                length: 256,
                offset: own(5 + k),
            },
            &[7; 256],
        );
    }
    r.ring.head().store(15, Ordering::Release);
    assert!(rx_all(&mut srv).is_empty());
    assert_eq!(srv.xstat("rx_q0_too_long"), 1);
    // head far beyond the ring: the ring is corrupt, the server disconnects.
    r.ring.head().store(15 + 5000, Ordering::Release);
    assert!(rx_all(&mut srv).is_empty());
    assert!(srv.xstat("rx_q0_bad_ring_index") >= 1);
    let reason = disconnect_reason(&c);
    assert!(reason.contains("Ring index out of range"), "{reason}");
    wait_for(5, "link down", || !srv.port.link().up);
    assert_eq!(srv.xstat("ctrl_ring_faults"), 1);

    // Next client offers bad buffers on the server-to-client ring: the server's tx
    // refuses to write outside the region, keeps the packets and disconnects.
    let (c, s) = fake_client(&sock);
    wait_for(5, "link up", || srv.port.link().up);
    let r = &s.s2c[0];
    r.ring.set_desc(
        0,
        Desc {
            flags: 0,
            region: 0,
            length: 2048,
            offset: s.regions[0].len() as u32 - 100,
        },
    );
    r.ring.head().store(1, Ordering::Release);
    let mut b = PktBatch::new();
    let mut m = srv.pool.alloc().unwrap();
    assert!(m.copy_from(&[9u8; 200]));
    b.push(m).unwrap();
    assert_eq!(srv.tx[0].tx_burst(&mut b), 0);
    assert_eq!(b.len(), 1, "the packet stays with the caller");
    assert_eq!(srv.xstat("tx_q0_bad_desc"), 1);
    assert!(disconnect_reason(&c).contains("Descriptor out of bounds"));
    wait_for(5, "link down", || !srv.port.link().up);
    // And one whose head runs past the ring.
    let (c, s) = fake_client(&sock);
    wait_for(5, "link up", || srv.port.link().up);
    s.s2c[0].ring.head().store(3000, Ordering::Release);
    assert_eq!(srv.tx[0].tx_burst(&mut b), 0);
    assert_eq!(srv.xstat("tx_q0_bad_ring_index"), 1);
    assert!(disconnect_reason(&c).contains("Ring index out of range"));
    wait_for(5, "link down", || !srv.port.link().up);
    drop(b);
    // A well-behaved client works afterwards.
    let (_c, s) = fake_client(&sock);
    wait_for(5, "link up", || srv.port.link().up);
    client_put(
        &s,
        0,
        Desc {
            flags: 0,
            region: 0,
            length: 60,
            offset: s.c2s[0].buf_base,
        },
        &[5; 60],
    );
    s.c2s[0].ring.head().store(1, Ordering::Release);
    assert_eq!(rx_all(&mut srv), vec![vec![5; 60]]);
    srv.finish();
}

/// A fake server: a listener plus our own handshake logic, so the test holds the
/// client's rings.
fn fake_server(sock: &str) -> Listener {
    Listener::bind(&SockAddr::Abstract(sock.into())).unwrap()
}

fn accept(l: &Listener) -> SeqPacket {
    for _ in 0..500 {
        if let Some(c) = l.accept().unwrap() {
            return c;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("client did not connect");
}

fn serve(c: &SeqPacket) -> Session {
    let mut hs = ServerHandshake::new(ServerParams {
        id: 0,
        secret: None,
        rx_queues: 1,
        tx_queues: 1,
        if_name: "fake-srv".into(),
        app_name: "hostile".into(),
    });
    c.send(&hs.hello().encode(), None).unwrap();
    loop {
        assert!(wait_readable(c.raw(), 5000).unwrap());
        let r = pmd_memif::sock::recv(c).unwrap();
        let m = proto::parse(r.bytes()).unwrap();
        match hs.on_message(m, r.fds.into_iter().next()).unwrap() {
            ServerStep::Reply(m) => c.send(&m.encode(), None).unwrap(),
            ServerStep::Established(s, m) => {
                c.send(&m.encode(), None).unwrap();
                return *s;
            }
        }
    }
}

#[test]
fn hostile_server_against_our_client() {
    let sock = name();
    let l = fake_server(&sock);
    let mut cli = side(
        0,
        &format!("net_memif0,role=client,socket={sock},rsize=4,bsize=256"),
        1,
    );
    // 1. A HELLO with a version we do not speak.
    let c = accept(&l);
    let mut hello = [0u8; MSG_SIZE];
    hello[0] = 2;
    hello[34..36].copy_from_slice(&0x0300u16.to_le_bytes());
    hello[36..38].copy_from_slice(&0x0300u16.to_le_bytes());
    c.send(&hello, None).unwrap();
    assert!(disconnect_reason(&c).contains("Incompatible memif version"));
    // 2. A runt instead of ACK.
    let c = accept(&l);
    let hs = ServerHandshake::new(ServerParams {
        id: 0,
        secret: None,
        rx_queues: 1,
        tx_queues: 1,
        if_name: "x".into(),
        app_name: "x".into(),
    });
    c.send(&hs.hello().encode(), None).unwrap();
    assert!(matches!(recv(&c), Some(Msg::Init(_))));
    c.send(&[1u8; 10], None).unwrap();
    assert!(disconnect_reason(&c).contains("Invalid message size 10"));
    // 3. A full handshake, then corrupt counters and descriptors.
    let c = accept(&l);
    let s = serve(&c);
    wait_for(5, "client link up", || cli.port.link().up);
    assert!(cli.xstat("ctrl_rejected") >= 2 && cli.xstat("ctrl_malformed_msgs") >= 1);
    let mut b = PktBatch::new();
    // Let the client offer its buffers (head moves to 16).
    cli.rx[0].rx_burst(&mut b);
    let r = &s.s2c[0];
    assert_eq!(r.ring.head().load(Ordering::Acquire), 16);
    // Slot 0: length beyond the client's 256-byte buffer; slot 1: good.
    r.ring.set_desc(
        0,
        Desc {
            length: 5000,
            ..r.ring.desc(0)
        },
    );
    r.ring.set_desc(
        1,
        Desc {
            length: 60,
            ..r.ring.desc(1)
        },
    );
    let d1 = r.ring.desc(1);
    // SAFETY: writing the client's buffer for slot 1, as a server does.
    unsafe { std::ptr::write_bytes(s.regions[0].base().add(d1.offset as usize), 0x77, 60) };
    r.ring.tail().store(2, Ordering::Release);
    b.clear();
    cli.rx[0].rx_burst(&mut b);
    assert_eq!(b.len(), 1);
    assert_eq!(b.as_slice()[0].data(), &[0x77; 60][..]);
    assert_eq!(cli.xstat("rx_q0_bad_desc"), 1);
    // tail beyond what the client offered.
    r.ring.tail().store(2 + 100, Ordering::Release);
    b.clear();
    assert_eq!(cli.rx[0].rx_burst(&mut b), 0);
    assert_eq!(cli.xstat("rx_q0_bad_ring_index"), 1);
    assert!(disconnect_reason(&c).contains("Ring index out of range"));
    wait_for(5, "client link down", || !cli.port.link().up);
    // 4. Next connection: the server moves the client-to-server tail past head.
    let c = accept(&l);
    let s = serve(&c);
    wait_for(5, "client link up", || cli.port.link().up);
    s.c2s[0].ring.tail().store(9, Ordering::Release);
    let mut m = cli.pool.alloc().unwrap();
    assert!(m.copy_from(&[1u8; 64]));
    b.clear();
    b.push(m).unwrap();
    assert_eq!(cli.tx[0].tx_burst(&mut b), 0);
    assert_eq!(cli.xstat("tx_q0_bad_ring_index"), 1);
    assert!(disconnect_reason(&c).contains("Ring index out of range"));
    drop(b);
    drop(l);
    cli.finish();
}

/// Bytes `[off, off + len)` of region `r` of a fake server's session.
fn region_bytes(s: &Session, r: u16, off: u32, len: usize) -> Vec<u8> {
    let reg = &s.regions[usize::from(r)];
    assert!(
        reg.contains(u64::from(off), len as u64),
        "descriptor inside its region"
    );
    let mut v = vec![0u8; len];
    // SAFETY: inside the mapped region (checked above); a raw copy of shared memory.
    unsafe { std::ptr::copy_nonoverlapping(reg.base().add(off as usize), v.as_mut_ptr(), len) };
    v
}

/// Writes `data` at `off` in region `r` of a fake server's session, as a server filling a
/// client's buffer does.
fn region_write(s: &Session, r: u16, off: u32, data: &[u8]) {
    let reg = &s.regions[usize::from(r)];
    assert!(reg.contains(u64::from(off), data.len() as u64));
    // SAFETY: inside the mapped region (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), reg.base().add(off as usize), data.len())
    };
}

#[test]
fn hostile_server_against_our_zero_copy_client() {
    let sock = name();
    let l = fake_server(&sock);
    let mut cli = side(
        0,
        &format!("net_memif0,role=client,socket={sock},rsize=4,bsize=256,zero-copy=yes"),
        1,
    );
    let c = accept(&l);
    let s = serve(&c);
    wait_for(5, "client link up", || cli.port.link().up);
    // Region 0 (rings and their own buffers) and at least the client's pool.
    assert!(s.regions.len() >= 2);
    let r = &s.s2c[0];
    assert_eq!(
        r.ring.head().load(Ordering::Acquire),
        16,
        "own buffers offered at connect"
    );
    let mut b = PktBatch::new();
    // Slot 0: 60 bytes in the ring's own buffer (copied out); slot 1: beyond it.
    let d0 = r.ring.desc(0);
    assert_eq!(d0.region, 0);
    region_write(&s, 0, d0.offset, &[0x77; 60]);
    r.ring.set_desc(0, Desc { length: 60, ..d0 });
    r.ring.set_desc(
        1,
        Desc {
            length: 5000,
            ..r.ring.desc(1)
        },
    );
    r.ring.tail().store(2, Ordering::Release);
    cli.rx[0].rx_burst(&mut b);
    assert_eq!(b.len(), 1);
    assert_eq!(b.as_slice()[0].data(), &[0x77; 60][..]);
    assert_eq!(cli.xstat("rx_q0_bad_desc"), 1);
    assert_eq!(cli.xstat("rx_q0_zc_copied"), 1);
    // The two slots used were offered again, as mbufs in a shared pool's region.
    assert_eq!(r.ring.head().load(Ordering::Acquire), 18);
    let z0 = r.ring.desc(16);
    let z1 = r.ring.desc(17);
    assert!(z0.region >= 1 && z1.region >= 1, "{z0:?} {z1:?}");
    // Slots 2..16 in own buffers; slot 16 written in place, then its descriptor pointed
    // elsewhere (never read back: the mbuf offered there is the packet); slot 17 longer
    // than the mbuf offered.
    for k in 2..16u16 {
        r.ring.set_desc(
            k,
            Desc {
                length: 60,
                ..r.ring.desc(k)
            },
        );
    }
    region_write(&s, z0.region, z0.offset, &[0x55; 100]);
    r.ring.set_desc(
        16,
        Desc {
            flags: 0,
            region: 0,
            length: 100,
            offset: 0,
        },
    );
    r.ring.set_desc(
        17,
        Desc {
            length: z1.length + 1,
            ..z1
        },
    );
    r.ring.tail().store(18, Ordering::Release);
    b.clear();
    cli.rx[0].rx_burst(&mut b);
    assert_eq!(b.len(), 15);
    assert_eq!(
        b.as_slice()[14].data(),
        &[0x55; 100][..],
        "received in place"
    );
    assert!(cli.pool.owns(&b.as_slice()[14]));
    assert_eq!(cli.xstat("rx_q0_bad_desc"), 2);
    assert_eq!(cli.xstat("rx_q0_zc_copied"), 15);
    // Transmit in place: the server reads the frame from the client's mbuf.
    let mut m = cli.pool.alloc().unwrap();
    assert!(m.copy_from(&[0x33; 64]));
    let mut t = PktBatch::new();
    t.push(m).unwrap();
    assert_eq!(cli.tx[0].tx_burst(&mut t), 1);
    let d = s.c2s[0].ring.desc(0);
    assert!(d.region >= 1 && d.length == 64, "{d:?}");
    assert_eq!(region_bytes(&s, d.region, d.offset, 64), vec![0x33; 64]);
    assert_eq!(
        cli.pool.stats().in_use as usize,
        b.len() + 16 + 1,
        "16 offered, 1 sent"
    );
    // The server passes it: given back at the next flush.
    s.c2s[0].ring.tail().store(1, Ordering::Release);
    cli.tx[0].tx_flush();
    assert_eq!(cli.pool.stats().in_use as usize, b.len() + 16);
    // tail beyond what the client offered: the connection ends.
    r.ring.tail().store(18 + 100, Ordering::Release);
    let mut b2 = PktBatch::new();
    assert_eq!(cli.rx[0].rx_burst(&mut b2), 0);
    assert_eq!(cli.xstat("rx_q0_bad_ring_index"), 1);
    assert!(disconnect_reason(&c).contains("Ring index out of range"));
    wait_for(5, "client link down", || !cli.port.link().up);
    drop((b, b2, t));
    drop(l);
    cli.finish();
}
