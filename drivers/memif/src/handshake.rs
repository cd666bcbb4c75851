//! The connection handshake (DPDK memif.rst, "Connection establishment"), as state
//! machines without I/O so they can be tested and fuzzed directly:
//!
//! ```text
//! server                          client
//!   HELLO (limits)          ->
//!                           <-      INIT (version, id, mode, secret)
//!   ACK                     ->
//!                           <-      ADD_REGION (index, size) + region fd      (each region)
//!   ACK                     ->
//!                           <-      ADD_RING (dir, index, region, offset, size) + eventfd  (each ring)
//!   ACK                     ->
//!                           <-      CONNECT (interface name)
//!   CONNECTED (name)        ->
//! ```
//!
//! Either side may send DISCONNECT (with a reason) at any time. Every field the peer
//! sends is checked against the state and our limits; a failure is a [`Fail`] whose
//! reason goes into our DISCONNECT.

use crate::config::Role;
use crate::proto::{
    AddRegion, AddRing, Hello, Init, Msg, Name, ADD_RING_FLAG_C2S, COOKIE, MAX_LOG2_RING_SIZE,
    MODE_ETHERNET, VERSION,
};
use crate::ring::RingPtr;
use crate::session::{check_eventfd, ClientLayout, RingInfo, Session};
use crate::shm::Region;
use std::os::fd::OwnedFd;

/// Most regions a server accepts (HELLO's `max_region` is this minus one).
pub const MAX_REGIONS: u16 = 16;

/// Why a handshake (or a connection) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fail {
    /// Human-readable reason (at most 95 bytes are sent in a DISCONNECT).
    pub reason: String,
    /// The peer ended it (its DISCONNECT): nothing to send back.
    pub by_peer: bool,
}

impl Fail {
    /// A failure on our side: we send DISCONNECT with `reason`.
    pub fn ours(reason: impl Into<String>) -> Fail {
        Fail {
            reason: reason.into(),
            by_peer: false,
        }
    }

    /// The peer disconnected with `reason` (possibly empty).
    pub fn peer(reason: String) -> Fail {
        Fail {
            reason: if reason.is_empty() {
                "DISCONNECT without a reason".into()
            } else {
                reason
            },
            by_peer: true,
        }
    }
}

fn unexpected(m: &Msg, state: &str) -> Fail {
    Fail::ours(format!("Unexpected message {} {state}", m.name()))
}

fn no_fd(m: &Msg, fd: &Option<OwnedFd>) -> Result<(), Fail> {
    if fd.is_some() {
        return Err(Fail::ours(format!(
            "Unexpected file descriptor with {}",
            m.name()
        )));
    }
    Ok(())
}

/// Server-side settings.
#[derive(Clone, Debug)]
pub struct ServerParams {
    /// Our interface id.
    pub id: u32,
    /// Required secret, if any.
    pub secret: Option<String>,
    /// Our rx queues (client-to-server rings accepted).
    pub rx_queues: u16,
    /// Our tx queues (server-to-client rings accepted).
    pub tx_queues: u16,
    /// Our interface name (CONNECTED).
    pub if_name: String,
    /// Our application name (HELLO).
    pub app_name: String,
}

#[derive(Debug)]
struct PendingRing {
    msg: AddRing,
    ring: RingPtr,
    intr: OwnedFd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    AwaitInit,
    Setup,
    Done,
}

/// What the server does next.
#[derive(Debug)]
pub enum ServerStep {
    /// Send this reply (ACK).
    Reply(Msg),
    /// The connection is complete: publish the session, then send the reply (CONNECTED).
    Established(Box<Session>, Msg),
}

/// The server's handshake with one client.
#[derive(Debug)]
pub struct ServerHandshake {
    p: ServerParams,
    state: ServerState,
    regions: Vec<Region>,
    c2s: Vec<Option<PendingRing>>,
    s2c: Vec<Option<PendingRing>>,
    peer_name: String,
}

impl ServerHandshake {
    /// A handshake for a freshly accepted connection.
    pub fn new(p: ServerParams) -> ServerHandshake {
        ServerHandshake {
            c2s: (0..p.rx_queues).map(|_| None).collect(),
            s2c: (0..p.tx_queues).map(|_| None).collect(),
            p,
            state: ServerState::AwaitInit,
            regions: Vec::new(),
            peer_name: String::new(),
        }
    }

    /// The HELLO to send first: our version and limits (ring indices are the highest
    /// accepted, i.e. queue count minus one).
    pub fn hello(&self) -> Msg {
        Msg::Hello(Hello {
            name: Name::new(&self.p.app_name),
            min_version: VERSION,
            max_version: VERSION,
            max_region: MAX_REGIONS - 1,
            max_s2c_ring: self.p.tx_queues.saturating_sub(1),
            max_c2s_ring: self.p.rx_queues.saturating_sub(1),
            max_log2_ring_size: MAX_LOG2_RING_SIZE,
        })
    }

    /// Handles one message from the client (with the descriptor that came with it).
    pub fn on_message(&mut self, msg: Msg, fd: Option<OwnedFd>) -> Result<ServerStep, Fail> {
        if let Msg::Disconnect(d) = &msg {
            return Err(Fail::peer(d.reason.lossy()));
        }
        match (self.state, msg) {
            (ServerState::AwaitInit, Msg::Init(i)) => {
                no_fd(&msg, &fd)?;
                self.init(&i)?;
                self.state = ServerState::Setup;
                Ok(ServerStep::Reply(Msg::Ack))
            }
            (ServerState::Setup, Msg::AddRegion(r)) => {
                self.add_region(&r, fd)?;
                Ok(ServerStep::Reply(Msg::Ack))
            }
            (ServerState::Setup, Msg::AddRing(r)) => {
                self.add_ring(&r, fd)?;
                Ok(ServerStep::Reply(Msg::Ack))
            }
            (ServerState::Setup, Msg::Connect(name)) => {
                no_fd(&msg, &fd)?;
                let s = self.connect(name)?;
                self.state = ServerState::Done;
                Ok(ServerStep::Established(
                    Box::new(s),
                    Msg::Connected(Name::new(&self.p.if_name)),
                ))
            }
            (ServerState::AwaitInit, m) => Err(unexpected(&m, "before INIT")),
            (ServerState::Setup, m) => Err(unexpected(&m, "during setup")),
            (ServerState::Done, m) => Err(unexpected(&m, "after CONNECT")),
        }
    }

    fn init(&mut self, i: &Init) -> Result<(), Fail> {
        if i.version != VERSION {
            return Err(Fail::ours(format!(
                "Incompatible memif version {}.{} (need 2.0)",
                i.version >> 8,
                i.version & 0xff
            )));
        }
        if i.id != self.p.id {
            return Err(Fail::ours(format!("ID {} not found", i.id)));
        }
        if i.mode != MODE_ETHERNET {
            return Err(Fail::ours("Only ethernet mode supported"));
        }
        if let Some(want) = &self.p.secret {
            if i.secret.bytes().is_empty() {
                return Err(Fail::ours("Secret required"));
            }
            if i.secret.bytes() != want.as_bytes() {
                return Err(Fail::ours("Incorrect secret"));
            }
        }
        self.peer_name = i.name.lossy();
        Ok(())
    }

    fn add_region(&mut self, r: &AddRegion, fd: Option<OwnedFd>) -> Result<(), Fail> {
        let fd = fd.ok_or_else(|| Fail::ours("Missing region fd"))?;
        if r.index as usize != self.regions.len() || r.index >= MAX_REGIONS {
            return Err(Fail::ours(format!("Invalid region index {}", r.index)));
        }
        let region = Region::map_peer(fd, r.size).map_err(Fail::ours)?;
        self.regions.push(region);
        Ok(())
    }

    fn add_ring(&mut self, r: &AddRing, fd: Option<OwnedFd>) -> Result<(), Fail> {
        let intr = fd.ok_or_else(|| Fail::ours("Missing interrupt fd"))?;
        if r.flags & !ADD_RING_FLAG_C2S != 0 {
            return Err(Fail::ours(format!("Invalid ring flags {:#x}", r.flags)));
        }
        let c2s = r.flags & ADD_RING_FLAG_C2S != 0;
        let rings = if c2s { &mut self.c2s } else { &mut self.s2c };
        let slot = rings
            .get_mut(r.index as usize)
            .ok_or_else(|| Fail::ours(format!("Invalid ring index {}", r.index)))?;
        if slot.is_some() {
            return Err(Fail::ours(format!("Ring {} added twice", r.index)));
        }
        if r.private_hdr_size != 0 {
            return Err(Fail::ours("Private ring header not supported"));
        }
        if r.log2_ring_size > MAX_LOG2_RING_SIZE {
            return Err(Fail::ours(format!(
                "Ring size 2^{} too large (max 2^{MAX_LOG2_RING_SIZE})",
                r.log2_ring_size
            )));
        }
        let region = self
            .regions
            .get(r.region as usize)
            .ok_or_else(|| Fail::ours(format!("Invalid ring region {}", r.region)))?;
        let ring = RingPtr::new(region, r.offset as u64, r.log2_ring_size).ok_or_else(|| {
            Fail::ours(format!(
                "Ring at offset {} does not fit region {} or is misaligned",
                r.offset, r.region
            ))
        })?;
        if !check_eventfd(&intr) {
            return Err(Fail::ours("Interrupt fd is not an eventfd"));
        }
        *slot = Some(PendingRing {
            msg: *r,
            ring,
            intr,
        });
        Ok(())
    }

    fn connect(&mut self, name: Name) -> Result<Session, Fail> {
        let mut counts = [0usize; 2];
        for (k, (what, rings)) in [
            ("client-to-server", &self.c2s),
            ("server-to-client", &self.s2c),
        ]
        .into_iter()
        .enumerate()
        {
            let n = rings.iter().take_while(|r| r.is_some()).count();
            if n == 0 {
                return Err(Fail::ours(format!("No {what} ring")));
            }
            if rings[n..].iter().any(Option::is_some) {
                return Err(Fail::ours(format!("{what} ring indices have gaps")));
            }
            counts[k] = n;
        }
        let mut dirs = Vec::new();
        for (rings, n) in [(&mut self.c2s, counts[0]), (&mut self.s2c, counts[1])] {
            let mut v = Vec::with_capacity(n);
            for p in rings.drain(..n).flatten() {
                if p.ring.cookie() != COOKIE {
                    return Err(Fail::ours(format!(
                        "Wrong ring cookie on ring {}",
                        p.msg.index
                    )));
                }
                v.push(RingInfo {
                    ring: p.ring,
                    region: p.msg.region,
                    offset: p.msg.offset,
                    log2: p.msg.log2_ring_size,
                    buf_base: 0,
                    intr: p.intr,
                });
            }
            dirs.push(v);
        }
        let s2c = dirs.pop().unwrap_or_default();
        let c2s = dirs.pop().unwrap_or_default();
        let s = Session {
            role: Role::Server,
            regions: std::mem::take(&mut self.regions),
            c2s,
            s2c,
            bsize: 0,
            zero_copy: false,
            peer_name: self.peer_name.clone(),
            peer_if: name.lossy(),
        };
        s.reset_rings();
        Ok(s)
    }
}

/// Client-side settings.
#[derive(Clone, Debug)]
pub struct ClientParams {
    /// Interface id to ask for.
    pub id: u32,
    /// Secret to present.
    pub secret: Option<String>,
    /// Our rx queues (server-to-client rings wanted).
    pub rx_queues: u16,
    /// Our tx queues (client-to-server rings wanted).
    pub tx_queues: u16,
    /// Ring size wanted, log2.
    pub log2: u8,
    /// Packet buffer size.
    pub bsize: u16,
    /// Share the pools' data segments as regions after region 0 (`zero-copy=yes`).
    pub zero_copy: bool,
    /// Our interface name (CONNECT).
    pub if_name: String,
    /// Our application name (INIT).
    pub app_name: String,
}

/// Checks the server's HELLO and picks the layout: as many rings as both sides allow,
/// the smaller ring size.
pub fn client_layout(msg: Msg, p: &ClientParams) -> Result<(ClientLayout, String), Fail> {
    let h = match msg {
        Msg::Hello(h) => h,
        Msg::Disconnect(d) => return Err(Fail::peer(d.reason.lossy())),
        m => return Err(unexpected(&m, "instead of HELLO")),
    };
    if h.min_version > VERSION || h.max_version < VERSION || h.min_version > h.max_version {
        return Err(Fail::ours("Incompatible memif version"));
    }
    let l = ClientLayout {
        c2s: p.tx_queues.min(h.max_c2s_ring.saturating_add(1)),
        s2c: p.rx_queues.min(h.max_s2c_ring.saturating_add(1)),
        log2: p.log2.min(h.max_log2_ring_size),
        bsize: p.bsize as u32,
        // HELLO's max_region is the highest index the server takes.
        pool_regions: if p.zero_copy { h.max_region } else { 0 },
    };
    if l.region_bytes().is_none() {
        return Err(Fail::ours("Rings and buffers exceed 4 GiB"));
    }
    Ok((l, h.name.lossy()))
}

/// The client's messages after HELLO, in order, each with the descriptor to attach; all
/// but the last (CONNECT, answered by CONNECTED) are answered by ACK.
pub fn client_messages(s: &Session, p: &ClientParams) -> Vec<(Msg, Option<std::os::fd::RawFd>)> {
    use std::os::fd::AsRawFd;
    let mut v = vec![(
        Msg::Init(Init {
            version: VERSION,
            id: p.id,
            mode: MODE_ETHERNET,
            secret: crate::proto::FixedStr::new(p.secret.as_deref().unwrap_or("")),
            name: Name::new(&p.app_name),
        }),
        None,
    )];
    for (i, r) in s.regions.iter().enumerate() {
        v.push((
            Msg::AddRegion(AddRegion {
                index: i as u16,
                size: r.len(),
            }),
            Some(r.fd().as_raw_fd()),
        ));
    }
    for (flags, rings) in [(ADD_RING_FLAG_C2S, &s.c2s), (0, &s.s2c)] {
        for (i, r) in rings.iter().enumerate() {
            v.push((
                Msg::AddRing(AddRing {
                    flags,
                    index: i as u16,
                    region: r.region,
                    offset: r.offset,
                    log2_ring_size: r.log2,
                    private_hdr_size: 0,
                }),
                Some(r.intr.as_raw_fd()),
            ));
        }
    }
    v.push((Msg::Connect(Name::new(&p.if_name)), None));
    v
}

/// Checks the server's answer to one of [`client_messages`]: ACK, or for CONNECT,
/// CONNECTED (whose interface name is returned).
pub fn client_reply(sent: &Msg, got: Msg) -> Result<Option<String>, Fail> {
    match (sent, got) {
        (_, Msg::Disconnect(d)) => Err(Fail::peer(d.reason.lossy())),
        (Msg::Connect(_), Msg::Connected(n)) => Ok(Some(n.lossy())),
        (Msg::Connect(_), m) => Err(unexpected(&m, "instead of CONNECTED")),
        (_, Msg::Ack) => Ok(None),
        (s, m) => Err(Fail::ours(format!(
            "Unexpected message {} in reply to {}",
            m.name(),
            s.name()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::FixedStr;
    use crate::session::eventfd;
    use std::os::fd::AsRawFd;

    fn params() -> ServerParams {
        ServerParams {
            id: 3,
            secret: Some("pw".into()),
            rx_queues: 2,
            tx_queues: 1,
            if_name: "srv".into(),
            app_name: "test".into(),
        }
    }

    fn init(id: u32, secret: &str) -> Msg {
        Msg::Init(Init {
            version: VERSION,
            id,
            mode: 0,
            secret: FixedStr::new(secret),
            name: Name::new("cli"),
        })
    }

    fn dup(fd: &OwnedFd) -> Option<OwnedFd> {
        Some(fd.try_clone().unwrap())
    }

    #[test]
    fn client_and_server_agree() {
        let sp = params();
        let mut srv = ServerHandshake::new(sp);
        let cp = ClientParams {
            id: 3,
            secret: Some("pw".into()),
            rx_queues: 4,
            tx_queues: 4,
            log2: 6,
            bsize: 512,
            zero_copy: false,
            if_name: "cli0".into(),
            app_name: "cli".into(),
        };
        let (layout, _) = client_layout(srv.hello(), &cp).unwrap();
        assert_eq!((layout.c2s, layout.s2c, layout.log2), (2, 1, 6));
        let cs = layout.build("hs-test", false).unwrap();
        let mut est = None;
        for (m, fd) in client_messages(&cs, &cp) {
            let owned = fd.map(|f| {
                // SAFETY: borrowing a live descriptor (owned by `cs`) only to duplicate it.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(f) }
                    .try_clone_to_owned()
                    .unwrap()
            });
            match srv.on_message(m, owned).unwrap() {
                ServerStep::Reply(r) => assert_eq!(client_reply(&m, r).unwrap(), None),
                ServerStep::Established(s, r) => {
                    assert_eq!(client_reply(&m, r).unwrap().as_deref(), Some("srv"));
                    est = Some(s);
                }
            }
        }
        let s = est.expect("established");
        assert_eq!(
            (s.c2s.len(), s.s2c.len(), s.peer_if.as_str()),
            (2, 1, "cli0")
        );
        assert_eq!(s.rx_ring(1).unwrap().offset, cs.c2s[1].offset);
        assert_eq!(s.c2s[0].ring.flags(), crate::proto::RING_FLAG_MASK_INT);
    }

    #[test]
    fn server_rejects_bad_fields() {
        let reject = |msgs: Vec<(Msg, Option<OwnedFd>)>| -> String {
            let mut srv = ServerHandshake::new(params());
            for (m, fd) in msgs {
                if let Err(f) = srv.on_message(m, fd) {
                    return f.reason;
                }
            }
            panic!("accepted")
        };
        let ok = || (init(3, "pw"), None);
        let region = Region::create("hs-bad", 1 << 16, false).unwrap();
        let rfd = region.fd();
        let efd = eventfd().unwrap();
        let add_region = |i: u16, size: u64| Msg::AddRegion(AddRegion { index: i, size });
        let ring = |flags, index, region, offset, log2, priv_| {
            Msg::AddRing(AddRing {
                flags,
                index,
                region,
                offset,
                log2_ring_size: log2,
                private_hdr_size: priv_,
            })
        };
        assert!(reject(vec![(Msg::Ack, None)]).contains("ACK before INIT"));
        assert!(reject(vec![(init(4, "pw"), None)]).contains("ID 4"));
        assert!(reject(vec![(init(3, ""), None)]).contains("Secret required"));
        assert!(reject(vec![(init(3, "px"), None)]).contains("Incorrect secret"));
        let mut bad_ver = init(3, "pw");
        if let Msg::Init(i) = &mut bad_ver {
            i.version = 0x0100;
        }
        assert!(reject(vec![(bad_ver, None)]).contains("version"));
        assert!(reject(vec![ok(), (add_region(0, 4096), None)]).contains("Missing region fd"));
        assert!(reject(vec![ok(), (add_region(1, 4096), dup(rfd))]).contains("region index"));
        assert!(reject(vec![ok(), (add_region(0, 1 << 20), dup(rfd))]).contains("exceeds"));
        let with_region = || vec![ok(), (add_region(0, 1 << 16), dup(rfd))];
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 0), None));
        assert!(reject(v).contains("Missing interrupt fd"));
        let mut v = with_region();
        v.push((ring(1, 2, 0, 0, 4, 0), dup(&efd)));
        assert!(reject(v).contains("Invalid ring index 2"));
        let mut v = with_region();
        v.push((ring(1, 0, 1, 0, 4, 0), dup(&efd)));
        assert!(reject(v).contains("Invalid ring region 1"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 65_200, 4, 0), dup(&efd)));
        assert!(reject(v).contains("does not fit"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 15, 0), dup(&efd)));
        assert!(reject(v).contains("too large"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 8), dup(&efd)));
        assert!(reject(v).contains("Private"));
        let mut v = with_region();
        v.push((ring(6, 0, 0, 0, 4, 0), dup(&efd)));
        assert!(reject(v).contains("flags"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 0), Some(rfd.try_clone().unwrap())));
        assert!(reject(v).contains("not an eventfd"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 0), dup(&efd)));
        v.push((ring(1, 0, 0, 1024, 4, 0), dup(&efd)));
        assert!(reject(v).contains("twice"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 0), dup(&efd)));
        v.push((Msg::Connect(Name::new("x")), None));
        assert!(reject(v).contains("No server-to-client ring"));
        let mut v = with_region();
        v.push((ring(1, 1, 0, 0, 4, 0), dup(&efd)));
        v.push((ring(0, 0, 0, 1024, 4, 0), dup(&efd)));
        v.push((Msg::Connect(Name::new("x")), None));
        assert!(reject(v).contains("No client-to-server"));
        let mut v = with_region();
        v.push((ring(1, 0, 0, 0, 4, 0), dup(&efd)));
        v.push((ring(0, 0, 0, 1024, 4, 0), dup(&efd)));
        v.push((Msg::Connect(Name::new("x")), None));
        assert!(reject(v).contains("cookie"), "rings in a zeroed region");
        let mut v = vec![ok()];
        v.push((Msg::Connect(Name::new("x")), dup(&efd)));
        assert!(reject(v).contains("file descriptor"));
        let _ = rfd.as_raw_fd();
    }

    #[test]
    fn client_checks_hello_and_replies() {
        let cp = ClientParams {
            id: 0,
            secret: None,
            rx_queues: 1,
            tx_queues: 1,
            log2: 10,
            bsize: 2048,
            zero_copy: false,
            if_name: "c".into(),
            app_name: "a".into(),
        };
        let hello = |min, max| {
            Msg::Hello(Hello {
                name: Name::new("s"),
                min_version: min,
                max_version: max,
                max_region: 0,
                max_s2c_ring: 0,
                max_c2s_ring: 0,
                max_log2_ring_size: 8,
            })
        };
        assert_eq!(
            client_layout(hello(VERSION, VERSION), &cp).unwrap().0.log2,
            8
        );
        assert!(client_layout(hello(0x0300, 0x0300), &cp).is_err());
        assert!(client_layout(hello(0x0100, 0x0100), &cp).is_err());
        assert!(client_layout(Msg::Ack, &cp).is_err());
        assert!(client_reply(
            &Msg::Ack,
            Msg::Hello(match hello(1, 1) {
                Msg::Hello(h) => h,
                _ => unreachable!(),
            })
        )
        .is_err());
        assert!(client_reply(&Msg::Connect(Name::new("x")), Msg::Ack).is_err());
    }
}
