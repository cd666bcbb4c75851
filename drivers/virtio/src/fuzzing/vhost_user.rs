//! The `vhost_user_reply` target: the back end's side of the socket is the input. The
//! front end either runs its handshake ([`VirtioUser::handshake`]: GET_FEATURES,
//! GET_PROTOCOL_FEATURES, GET_QUEUE_NUM, REPLY_ACK statuses) and SET_FEATURES, or a
//! sequence of [`Conn`] requests (the u64 getters, GET_VRING_BASE, acknowledged sets)
//! chosen by the input. A reference reader of the same bytes says what each step must
//! return: the value of a well-formed reply, an error naming the request for a reply with
//! a wrong request code, flags or size, and no use of the connection after a framing error.

use crate::transport::vhost_user::proto::{
    self, Conn, Request, HDR_LEN, MAX_PAYLOAD, VHOST_USER_REPLY, VHOST_USER_VERSION,
    VHOST_USER_VERSION_MASK,
};
use crate::transport::vhost_user::VirtioUser;
use crate::transport::Transport;
use pmd_core::ethdev::MacAddr;
use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Largest input used (the back end's bytes must fit in the socket buffer at once).
pub const MAX_INPUT: usize = 16 * 1024;

/// What the front end must make of the back end's bytes, read the same way.
struct Reference<'a> {
    stream: &'a [u8],
    broken: bool,
}

impl Reference<'_> {
    /// The payload of the reply to `req` if it is well formed with `len` bytes; `None` if
    /// the front end must refuse it.
    fn reply(&mut self, req: Request, len: usize) -> Option<&[u8]> {
        if self.broken {
            return None;
        }
        let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        if self.stream.len() < HDR_LEN {
            self.broken = true;
            return None;
        }
        let (code, flags, size) = (
            word(self.stream, 0),
            word(self.stream, 4),
            word(self.stream, 8) as usize,
        );
        if size > MAX_PAYLOAD || self.stream.len() < HDR_LEN + size {
            self.broken = true;
            return None;
        }
        let (msg, rest) = self.stream.split_at(HDR_LEN + size);
        self.stream = rest;
        if code != req as u32
            || flags & VHOST_USER_VERSION_MASK != VHOST_USER_VERSION
            || flags & VHOST_USER_REPLY == 0
        {
            self.broken = true;
            return None;
        }
        (size == len).then(|| &msg[HDR_LEN..])
    }

    /// A u64 reply.
    fn u64(&mut self, req: Request) -> Option<u64> {
        self.reply(req, 8)
            .map(|p| u64::from_le_bytes(p.try_into().unwrap()))
    }

    /// A set request: fails only on a broken connection, or (with REPLY_ACK) on a bad or
    /// non-zero status.
    fn set(&mut self, req: Request, ack: bool) -> bool {
        match ack {
            true => self.u64(req) == Some(0),
            false => !self.broken,
        }
    }
}

/// A socket whose peer has already written `replies` and closed its sending side.
fn back_end(replies: &[u8]) -> (UnixStream, UnixStream) {
    let (ours, theirs) = UnixStream::pair().expect("socketpair");
    (&theirs)
        .write_all(replies)
        .expect("replies fit the socket buffer");
    theirs.shutdown(Shutdown::Write).expect("shutdown");
    (ours, theirs)
}

/// Runs one input: byte 0 picks the mode (bit 7: handshake with 1–4 queue pairs from bits
/// 0–1; else a request sequence: count in bits 0–2, requests from bytes 1–2), the rest is
/// what the back end sends. Returns how many steps the front end accepted and refused.
pub fn fuzz_vhost_user_reply(data: &[u8]) -> (u32, u32) {
    if data.len() < 3 || data.len() > MAX_INPUT {
        return (0, 0);
    }
    if data[0] & 0x80 != 0 {
        handshake(data[0], &data[1..])
    } else {
        let ops = u16::from_le_bytes([data[1], data[2]]);
        requests(data[0], ops, &data[3..])
    }
}

/// The probe-time handshake and SET_FEATURES against `replies`.
fn handshake(sel: u8, replies: &[u8]) -> (u32, u32) {
    let (ours, _theirs) = back_end(replies);
    let pairs = 1 + u16::from(sel & 3);
    let got = VirtioUser::handshake(
        "fuzz",
        Path::new("fuzz.sock"),
        ours,
        pairs,
        MacAddr::local(1),
    );
    let mut r = Reference {
        stream: replies,
        broken: false,
    };
    // SET_OWNER goes out unacknowledged (REPLY_ACK is not negotiated yet).
    let expected = r
        .set(Request::SetOwner, false)
        .then_some(())
        .and_then(|()| {
            let features = r.u64(Request::GetFeatures)?;
            let (mut protocol, mut queues, mut ack) = (0, 1u16, false);
            if features & proto::VHOST_USER_F_PROTOCOL_FEATURES != 0 {
                protocol =
                    r.u64(Request::GetProtocolFeatures)? & proto::SUPPORTED_PROTOCOL_FEATURES;
                r.set(Request::SetProtocolFeatures, false).then_some(())?;
                ack = protocol & proto::PROTOCOL_F_REPLY_ACK != 0;
                if protocol & proto::PROTOCOL_F_MQ != 0 {
                    queues = r.u64(Request::GetQueueNum)?.clamp(1, u64::from(u16::MAX)) as u16;
                }
            }
            (pairs == 1 || queues >= pairs).then_some((features, protocol, queues, ack))
        });
    let mut user = match (got, expected) {
        (Ok(u), Some((_, protocol, queues, _))) => {
            assert_eq!(u.protocol_features(), protocol);
            assert_eq!(u.max_queue_pairs(), pairs);
            let xs = u.xstats();
            assert!(xs.contains(&("backend_queue_pairs".to_string(), u64::from(queues))));
            u
        }
        (Err(e), None) => {
            assert!(!e.to_string().is_empty());
            return (0, 1);
        }
        (Ok(_), None) => panic!("handshake accepted replies it must refuse: {replies:02x?}"),
        (Err(e), Some(_)) => panic!("handshake refused good replies ({e}): {replies:02x?}"),
    };
    let (_, _, _, ack) = expected.unwrap();
    let negotiated = user.negotiate(u64::MAX);
    assert_eq!(
        negotiated.is_ok(),
        r.set(Request::SetFeatures, ack),
        "{negotiated:?}"
    );
    // Nothing was started: stopping asks the back end nothing.
    assert_eq!(user.stop().ok(), Some(Vec::new()));
    match negotiated {
        Ok(_) => (2, 0),
        Err(_) => (1, 1),
    }
}

/// Up to 7 requests (two bits each of `ops`) against `replies`.
fn requests(sel: u8, ops: u16, replies: &[u8]) -> (u32, u32) {
    let (ours, _theirs) = back_end(replies);
    let mut conn = Conn::new(ours, "fuzz", Duration::from_secs(1)).expect("timeouts");
    let mut r = Reference {
        stream: replies,
        broken: false,
    };
    let getters = [
        Request::GetFeatures,
        Request::GetProtocolFeatures,
        Request::GetQueueNum,
    ];
    let mut tally = (0, 0);
    let mut count = |ok: bool| {
        if ok {
            tally.0 += 1
        } else {
            tally.1 += 1
        }
    };
    for i in 0..usize::from(sel & 7) {
        let op = (ops >> (2 * i)) & 3;
        let req = getters[i % 3];
        match op {
            0 => {
                let got = conn.get_u64(req);
                assert_eq!(got.as_ref().ok().copied(), r.u64(req), "{got:?}");
                count(got.is_ok());
                if let Err(e) = got {
                    assert!(e.to_string().contains(req.name()), "{e}");
                }
            }
            1 => {
                let ring = (i % 2) as u32;
                let got = conn.get_vring_base(ring);
                let want = r.reply(Request::GetVringBase, 8).and_then(|p| {
                    let idx = u32::from_le_bytes(p[..4].try_into().unwrap());
                    (idx == ring).then(|| u32::from_le_bytes(p[4..].try_into().unwrap()))
                });
                assert_eq!(got.as_ref().ok().copied(), want, "{got:?}");
                count(got.is_ok());
                if let Err(e) = got {
                    assert!(e.to_string().contains("GET_VRING_BASE"), "{e}");
                }
            }
            op => {
                let ack = op == 3;
                conn.set_reply_ack(ack);
                let got = conn.set_u64(Request::SetFeatures, 1);
                assert_eq!(got.is_ok(), r.set(Request::SetFeatures, ack), "{got:?}");
                count(got.is_ok());
                if let Err(e) = got {
                    assert!(e.to_string().contains("SET_FEATURES"), "{e}");
                }
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::xorshift;

    /// A reply message as a back end would send it.
    fn reply(code: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        for w in [code, flags, payload.len() as u32] {
            m.extend_from_slice(&w.to_le_bytes());
        }
        m.extend_from_slice(payload);
        m
    }

    /// The fuzz body on streams of replies, each well formed or damaged in one field
    /// (request code, flags, size, payload length, a cut).
    #[test]
    fn fixed_seed_fuzz_of_the_vhost_user_replies() {
        let mut rnd = xorshift(0xd1b5_4a32_d192_ed03);
        let codes = [1u32, 15, 17, 11, 2, 99];
        let (mut accepted, mut refused) = (0, 0);
        for _ in 0..3000 {
            let mut d = vec![rnd() as u8, rnd() as u8, rnd() as u8];
            for _ in 0..rnd() % 6 {
                let code = codes[(rnd() % codes.len() as u64) as usize];
                let flags = if rnd().is_multiple_of(6) {
                    rnd() as u32 & 0xf
                } else {
                    5
                };
                let len = if rnd().is_multiple_of(6) {
                    (rnd() % 20) as usize
                } else {
                    8
                };
                let mut payload: Vec<u8> = (0..len).map(|_| rnd() as u8 & 0x43).collect();
                if code == 11 && len == 8 && rnd().is_multiple_of(2) {
                    payload[..4].fill(0);
                }
                let mut m = reply(code, flags, &payload);
                match rnd() % 12 {
                    0 => m[8..12].copy_from_slice(&(MAX_PAYLOAD as u32 + 1).to_le_bytes()),
                    1 => m.truncate((rnd() % 12) as usize),
                    _ => {}
                }
                d.extend_from_slice(&m);
            }
            let (a, r) = fuzz_vhost_user_reply(&d);
            accepted += a;
            refused += r;
        }
        assert!(
            accepted > 300 && refused > 1000,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// A handshake that goes through: features with protocol features, MQ and REPLY_ACK,
    /// two queue pairs, then an acknowledged SET_FEATURES.
    #[test]
    fn a_good_handshake_is_accepted() {
        let mut d = vec![0x81];
        d.extend(reply(
            1,
            5,
            &(proto::VHOST_USER_F_PROTOCOL_FEATURES | 1).to_le_bytes(),
        ));
        d.extend(reply(15, 5, &9u64.to_le_bytes()));
        d.extend(reply(17, 5, &2u64.to_le_bytes()));
        d.extend(reply(2, 5, &0u64.to_le_bytes()));
        assert_eq!(fuzz_vhost_user_reply(&d), (2, 0));
        // One queue pair too few.
        d[0] = 0x82;
        assert_eq!(fuzz_vhost_user_reply(&d), (0, 1));
    }
}
