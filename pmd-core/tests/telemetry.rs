//! The telemetry socket as a client sees it: DPDK's v2 protocol (the info object first,
//! one JSON reply per command, keyed by the command), the commands the main lcore answers,
//! owner-only files removed at the end, and bad input: unknown and malformed commands,
//! oversized datagrams, a command nobody serves, more clients than allowed, a client that
//! never reads its replies.

use pmd_core::telemetry::{json, Telemetry, TelemetryConf, Value, MAX_CLIENTS, MAX_INPUT_LEN};
use pmd_core::unix::seqpacket::{SeqPacket, SockAddr};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn start(tag: &str) -> Telemetry {
    Telemetry::start(TelemetryConf {
        file_prefix: format!("pmd-tel-{tag}-{}", std::process::id()),
        eal_params: vec!["app".into(), "--no-huge".into()],
        app_params: vec!["-p".into(), "0x3".into()],
        lcores: vec![0, 1],
        socket: true,
        metrics: None,
        ports: Vec::new(),
    })
    .expect("telemetry socket")
}

fn connect(t: &Telemetry) -> SeqPacket {
    SeqPacket::connect(&SockAddr::Path(t.path().unwrap().to_path_buf())).expect("connect")
}

/// Receives one datagram (within 5 s) as JSON; `None` at end-of-file.
fn recv(c: &SeqPacket) -> Option<Value> {
    assert!(
        pmd_core::unix::seqpacket::wait_readable(c.raw(), 5000).unwrap(),
        "no reply within 5 s"
    );
    let mut buf = vec![0u8; 65536];
    let got = c.recv_into(&mut buf).unwrap();
    (got.len > 0).then(|| serde_json::from_slice(&buf[..got.len]).expect("a JSON reply"))
}

fn ask(c: &SeqPacket, cmd: &str) -> Value {
    c.send(cmd.as_bytes(), None).unwrap();
    recv(c).expect("reply")
}

#[test]
fn info_first_then_one_reply_per_command() {
    let t = start("proto");
    let c = connect(&t);
    let info = recv(&c).expect("info object");
    assert_eq!(info["max_output_len"], 16384, "{info}");
    assert_eq!(info["pid"], std::process::id(), "{info}");
    let list = ask(&c, "/");
    for cmd in [
        "/ethdev/stats",
        "/eal/params",
        "/mempool/list",
        "/help",
        "/info",
    ] {
        assert!(
            list["/"].as_array().unwrap().contains(&json!(cmd)),
            "{cmd} missing from {list}"
        );
    }
    assert_eq!(
        ask(&c, "/eal/params"),
        json!({"/eal/params": ["app", "--no-huge"]})
    );
    assert_eq!(
        ask(&c, "/eal/app_params"),
        json!({"/eal/app_params": ["-p", "0x3"]})
    );
    assert_eq!(
        ask(&c, "/eal/lcore/list"),
        json!({"/eal/lcore/list": [0, 1]})
    );
    assert_eq!(
        ask(&c, "/help,/ethdev/stats"),
        json!({"/help": {"/ethdev/stats": "Returns the common stats for a port. Parameters: int port_id"}})
    );
    // Unknown and malformed commands, and parameters where none is taken: null.
    for (cmd, key) in [
        ("/no/such", "/no/such"),
        ("/info,1", "/info"),
        ("/help,/no/such", "/help"),
        ("not-a-path", "not-a-path"),
        ("/eth dev", "/eth dev"),
    ] {
        assert_eq!(ask(&c, cmd), json!({ key: null }), "{cmd}");
    }
    // A datagram longer than a command may be.
    let long = format!("/{}", "x".repeat(MAX_INPUT_LEN + 100));
    assert_eq!(ask(&c, &long), json!({ "": null }));
    // Still served after all that.
    assert_eq!(ask(&c, "/info")["/info"]["max_output_len"], 16384);
}

#[test]
fn main_lcore_commands_are_answered_when_served_and_null_when_not() {
    let t = start("main");
    t.register("/app/thing", "An app command. Parameters: int n")
        .unwrap();
    assert!(t.register("no-slash", "x").is_err());
    let path = t.path().unwrap().to_path_buf();
    let client = std::thread::spawn(move || {
        let c = SeqPacket::connect(&SockAddr::Path(path)).unwrap();
        recv(&c);
        let a = ask(&c, "/ethdev/stats,0");
        let b = ask(&c, "/app/thing,7");
        (a, b)
    });
    // The "main lcore": serve until both were answered.
    let end = Instant::now() + Duration::from_secs(10);
    let mut served = 0;
    while served < 2 {
        assert!(Instant::now() < end, "requests never came");
        if t.pending() {
            for r in t.take_requests() {
                let v = match (r.cmd.as_str(), r.param.as_deref()) {
                    ("/ethdev/stats", Some("0")) => json!({"ipackets": 5}),
                    ("/app/thing", Some(n)) => json!({ "n": n }),
                    _ => Value::Null,
                };
                r.answer(Some(v));
                served += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (a, b) = client.join().unwrap();
    assert_eq!(a, json!({"/ethdev/stats": {"ipackets": 5}}));
    assert_eq!(b, json!({"/app/thing": {"n": "7"}}));
    // Nobody serves: null after the timeout, and the client is still served afterwards.
    let c = connect(&t);
    recv(&c);
    assert_eq!(ask(&c, "/ethdev/stats,0"), json!({"/ethdev/stats": null}));
    assert!(t.take_requests().iter().all(|r| r.cmd == "/ethdev/stats"));
    assert_eq!(ask(&c, "/info")["/info"]["max_output_len"], 16384);
}

#[test]
fn files_are_owner_only_and_removed_at_the_end() {
    let t = start("files");
    let path = t.path().unwrap().to_path_buf();
    let dir = path.parent().unwrap().to_path_buf();
    assert_eq!(path.file_name().unwrap(), "dpdk_telemetry.v2");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);
    // A second app with the same prefix gets the next name, as DPDK does.
    let t2 = Telemetry::start(TelemetryConf {
        file_prefix: dir.file_name().unwrap().to_string_lossy().into_owned(),
        socket: true,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(t2.path().unwrap(), dir.join("dpdk_telemetry.v2:1"));
    drop(t2);
    assert!(path.exists(), "the first socket stays");
    drop(t);
    assert!(
        !path.exists() && !dir.exists(),
        "{} left behind",
        dir.display()
    );
}

#[test]
fn too_many_clients_and_one_that_never_reads() {
    let t = start("clients");
    let mut held: Vec<SeqPacket> = (0..MAX_CLIENTS)
        .map(|_| {
            let c = connect(&t);
            recv(&c).expect("info");
            c
        })
        .collect();
    // One more is closed at once.
    let extra = connect(&t);
    assert!(
        recv(&extra).is_none(),
        "client {} was served",
        MAX_CLIENTS + 1
    );
    // A client that sends and never reads is dropped once its buffer fills; the others
    // are still served.
    let greedy = held.pop().unwrap();
    for _ in 0..5000 {
        if greedy.send(b"/", None).is_err() {
            break;
        }
    }
    let c = &held[0];
    assert_eq!(ask(c, "/info")["/info"]["max_output_len"], 16384);
    drop(greedy);
    drop(held);
    // Slots free up: a new client is served.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let c = connect(&t);
        if let Some(info) = recv(&c) {
            assert_eq!(info["max_output_len"], 16384);
            break;
        }
        assert!(Instant::now() < end, "no slot came free");
        std::thread::sleep(Duration::from_millis(50));
    }
}
