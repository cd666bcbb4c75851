//! libFuzzer target: the input is cut into datagrams (a length byte, then that many
//! bytes) that go through `proto::parse`, then — when they parse — through a server
//! handshake (kept across the datagrams of one input), the client's HELLO check and the
//! reply check. Must never panic; `parse(encode(m)) == m` must hold.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pmd_memif::handshake::{client_layout, client_reply, ClientParams, ServerHandshake, ServerParams};
use pmd_memif::proto::{self, Msg, Name};

fuzz_target!(|data: &[u8]| {
    let mut hs = ServerHandshake::new(ServerParams {
        id: 1,
        secret: Some("pw".into()),
        rx_queues: 2,
        tx_queues: 2,
        if_name: "fuzz".into(),
        app_name: "fuzz".into(),
    });
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
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        // Lengths 0..=255, with 128 (a well-sized message) made common.
        let len = if n >= 0xc0 { proto::MSG_SIZE } else { n as usize * 2 };
        let take = len.min(tail.len());
        let (dgram, next) = tail.split_at(take);
        rest = next;
        let Ok(msg) = proto::parse(dgram) else { continue };
        assert_eq!(proto::parse(&msg.encode()), Ok(msg));
        let _ = hs.on_message(msg, None);
        let _ = client_layout(msg, &cp);
        let _ = client_reply(&Msg::Connect(Name::new("x")), msg);
        let _ = client_reply(&Msg::Ack, msg);
    }
});
