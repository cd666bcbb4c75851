//! A fuzz-style test of the control-message parser and the handshake state machines:
//! 1,200,000 inputs from a fixed seed, a quarter random datagrams of random length, the
//! rest valid messages of every type with random fields, then mutated (bit flips, byte
//! overwrites, truncation, extension, type swaps). Every input goes through `parse`;
//! what parses goes through a server handshake (kept across inputs until it fails, so
//! sequences are exercised too; half of them start after a valid INIT), the client's HELLO check and the reply check.
//! Properties: nothing panics, `parse(encode(m)) == m`, and a DISCONNECT is produced for
//! every refusal. The counts printed come from the run.

use pmd_memif::handshake::{
    client_layout, client_reply, ClientParams, ServerHandshake, ServerParams,
};
use pmd_memif::proto::{
    self, AddRegion, AddRing, Disconnect, FixedStr, Hello, Init, Msg, Name, MSG_SIZE, VERSION,
};

/// xorshift64*: small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A value biased towards edges (0, 1, max, small) or random.
    fn u(&mut self, max: u64) -> u64 {
        match self.below(6) {
            0 => 0,
            1 => 1,
            2 => max,
            3 => self.below(16).min(max),
            _ => self.next() & max,
        }
    }
}

fn random_msg(r: &mut Rng) -> Msg {
    let name = |r: &mut Rng| {
        let mut b = [0u8; 32];
        for x in b.iter_mut().take(r.below(33) as usize) {
            *x = r.next() as u8;
        }
        FixedStr(b)
    };
    let version = |r: &mut Rng| {
        if r.below(3) == 0 {
            r.u(0xffff) as u16
        } else {
            VERSION
        }
    };
    match r.below(8) {
        0 => Msg::Ack,
        1 => Msg::Hello(Hello {
            name: name(r),
            min_version: version(r),
            max_version: version(r),
            max_region: r.u(0xffff) as u16,
            max_s2c_ring: r.u(0xffff) as u16,
            max_c2s_ring: r.u(0xffff) as u16,
            max_log2_ring_size: r.u(0xff) as u8,
        }),
        2 => Msg::Init(Init {
            version: version(r),
            id: r.u(3) as u32,
            mode: r.u(3) as u8,
            secret: FixedStr::new(if r.below(2) == 0 { "" } else { "pw" }),
            name: name(r),
        }),
        3 => Msg::AddRegion(AddRegion {
            index: r.u(0xffff) as u16,
            size: r.u(u64::MAX),
        }),
        4 => Msg::AddRing(AddRing {
            flags: r.u(3) as u16,
            index: r.u(0xffff) as u16,
            region: r.u(0xffff) as u16,
            offset: r.u(u32::MAX as u64) as u32,
            log2_ring_size: r.u(0xff) as u8,
            private_hdr_size: r.u(0xffff) as u16,
        }),
        5 => Msg::Connect(name(r)),
        6 => Msg::Connected(name(r)),
        _ => Msg::Disconnect(Disconnect {
            code: r.u(u32::MAX as u64) as u32,
            reason: FixedStr::new("fuzz"),
        }),
    }
}

fn mutate(r: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    for _ in 0..=r.below(4) {
        match r.below(6) {
            0 if !b.is_empty() => {
                let i = r.below(b.len() as u64) as usize;
                b[i] ^= 1 << r.below(8);
            }
            1 if !b.is_empty() => {
                let i = r.below(b.len().min(48) as u64) as usize;
                b[i] = r.next() as u8;
            }
            2 => b.truncate(r.below(b.len() as u64 + 1) as usize),
            3 => b.extend((0..r.below(8)).map(|_| r.next() as u8)),
            4 if b.len() >= 2 => b[0] = r.below(12) as u8,
            _ => {}
        }
    }
    b
}

fn server() -> ServerHandshake {
    ServerHandshake::new(ServerParams {
        id: 1,
        secret: Some("pw".into()),
        rx_queues: 2,
        tx_queues: 2,
        if_name: "fuzz".into(),
        app_name: "fuzz".into(),
    })
}

#[test]
fn fuzz_control_messages() {
    const INPUTS: u64 = 1_200_000;
    let mut r = Rng(0x6d65_6d69_6620_2e30);
    let cp = ClientParams {
        id: 1,
        secret: None,
        rx_queues: 2,
        tx_queues: 2,
        log2: 10,
        bsize: 2048,
        zero_copy: false,
        if_name: "fuzz".into(),
        app_name: "fuzz".into(),
    };
    let mut hs = server();
    let (mut random, mut mutated, mut parsed, mut steps, mut refusals, mut hello_ok) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut primed = 0u64;
    for _ in 0..INPUTS {
        let bytes = if r.below(4) == 0 {
            random += 1;
            let len = match r.below(4) {
                0 => MSG_SIZE,
                _ => r.below(300) as usize,
            };
            let mut v: Vec<u8> = (0..len).map(|_| r.next() as u8).collect();
            if !v.is_empty() && r.below(2) == 0 {
                v[0] = r.below(10) as u8;
                if v.len() > 1 {
                    v[1] = 0;
                }
            }
            v
        } else {
            mutated += 1;
            let m = random_msg(&mut r);
            let enc = m.encode();
            assert_eq!(proto::parse(&enc), Ok(m), "round trip");
            if r.below(8) == 0 {
                enc.to_vec()
            } else {
                mutate(&mut r, enc.to_vec())
            }
        };
        let Ok(msg) = proto::parse(&bytes) else {
            continue;
        };
        parsed += 1;
        assert_eq!(proto::parse(&msg.encode()), Ok(msg), "re-encode round trip");
        steps += 1;
        match hs.on_message(msg, None) {
            Ok(_) => {}
            Err(f) => {
                refusals += 1;
                assert!(!f.reason.is_empty());
                let d = pmd_memif::control::disconnect_msg(&f.reason).encode();
                assert!(matches!(proto::parse(&d), Ok(Msg::Disconnect(_))));
                hs = server();
                // Half the time, start the next sequence past INIT (setup state).
                if r.below(2) == 0 {
                    let init = Msg::Init(Init {
                        version: VERSION,
                        id: 1,
                        mode: 0,
                        secret: FixedStr::new("pw"),
                        name: Name::new("fuzz"),
                    });
                    assert!(hs.on_message(init, None).is_ok());
                    primed += 1;
                }
            }
        }
        if let Ok((layout, _)) = client_layout(msg, &cp) {
            hello_ok += 1;
            assert!(layout.c2s <= 2 && layout.s2c <= 2 && layout.log2 <= 10);
        }
        let _ = client_reply(&Msg::Connect(Name::new("x")), msg);
        let _ = client_reply(&Msg::Ack, msg);
    }
    let total = random + mutated;
    println!(
        "fuzz_control: {total} inputs ({random} random, {mutated} generated+mutated), \
         {parsed} parsed, {steps} handshake steps ({primed} sequences started past INIT), \
         {refusals} refusals, {hello_ok} HELLOs accepted"
    );
    eprintln!("fuzz_control: {total} inputs, {parsed} parsed, {refusals} refusals");
    assert_eq!(total, INPUTS);
    assert!(total >= 1_000_000);
    assert!(parsed > total / 4 && refusals > 0 && hello_ok > 0);
}
