//! The front end against a tiny in-process vhost-user back end that misbehaves: every
//! malformed reply must give a clear error, never a panic or a hang.

use pmd_core::ethdev::Driver;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::JoinHandle;

const GET_FEATURES: u32 = 1;
const SET_FEATURES: u32 = 2;
const SET_OWNER: u32 = 3;
const GET_PROTOCOL_FEATURES: u32 = 15;
const SET_PROTOCOL_FEATURES: u32 = 16;
const REPLY: u32 = 0x4 | 0x1;
const VERSION_1: u64 = 1 << 32;
const PROTOCOL_FEATURES: u64 = 1 << 30;
const REPLY_ACK: u64 = 1 << 3;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A listening socket path, removed on drop.
struct Sock(PathBuf);
impl Drop for Sock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn read_msg(s: &mut UnixStream) -> Option<(u32, u32, Vec<u8>)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h).ok()?;
    let req = u32::from_le_bytes(h[0..4].try_into().unwrap());
    let flags = u32::from_le_bytes(h[4..8].try_into().unwrap());
    let size = u32::from_le_bytes(h[8..12].try_into().unwrap());
    let mut p = vec![0u8; size as usize];
    s.read_exact(&mut p).ok()?;
    Some((req, flags, p))
}

fn reply(s: &mut UnixStream, req: u32, flags: u32, size: u32, payload: &[u8]) {
    let mut m = Vec::new();
    m.extend_from_slice(&req.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&size.to_le_bytes());
    m.extend_from_slice(payload);
    let _ = s.write_all(&m);
}

/// Serves one connection with `script`, which sees each message and answers.
fn serve(
    script: impl FnMut(&mut UnixStream, u32, u32) -> bool + Send + 'static,
) -> (Sock, JoinHandle<()>) {
    let path = std::env::temp_dir().join(format!(
        "pmd-virtio-fake-{}-{}.sock",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let mut script = script;
    let h = std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        while let Some((req, flags, _)) = read_msg(&mut s) {
            if !script(&mut s, req, flags) {
                break;
            }
        }
    });
    (Sock(path), h)
}

fn probe_err(sock: &Sock) -> String {
    let spec = format!("net_virtio_user0,path={}", sock.0.display());
    match pmd_virtio::DRIVER.probe(&spec.parse().unwrap()) {
        Ok(_) => panic!("probe succeeded against a broken back end"),
        Err(e) => e.to_string(),
    }
}

fn features_reply(s: &mut UnixStream, req: u32, v: u64) {
    reply(s, req, REPLY, 8, &v.to_le_bytes());
}

#[test]
fn wrong_request_code_in_reply() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            features_reply(s, SET_FEATURES, VERSION_1);
        }
        true
    });
    let e = probe_err(&sock);
    assert!(
        e.contains("GET_FEATURES") && e.contains("answered request 2"),
        "{e}"
    );
    drop(sock);
    h.join().unwrap();
}

#[test]
fn short_payload() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            reply(s, GET_FEATURES, REPLY, 4, &[1, 2, 3, 4]);
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("carries 4 payload bytes, expected 8"), "{e}");
    h.join().unwrap();
}

#[test]
fn absurd_size_field() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            reply(s, GET_FEATURES, REPLY, u32::MAX, &[0; 8]);
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("size field 4294967295"), "{e}");
    h.join().unwrap();
}

#[test]
fn size_field_larger_than_sent_then_close() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            reply(s, GET_FEATURES, REPLY, 64, &[0; 8]);
            return false; // closes the connection mid-payload
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("closed the connection"), "{e}");
    h.join().unwrap();
}

#[test]
fn missing_reply_flag() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            reply(s, GET_FEATURES, 0x1, 8, &VERSION_1.to_le_bytes());
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("flags 0x1"), "{e}");
    h.join().unwrap();
}

#[test]
fn back_end_hangs_up() {
    let (sock, h) = serve(|_, req, _| req != GET_FEATURES);
    let e = probe_err(&sock);
    assert!(
        e.contains("closed the connection instead of answering GET_FEATURES"),
        "{e}"
    );
    h.join().unwrap();
}

#[test]
fn reply_ack_failure_is_reported() {
    // A back end that negotiates REPLY_ACK, then rejects SET_FEATURES.
    let (sock, h) = serve(|s, req, flags| {
        match req {
            SET_OWNER => {}
            GET_FEATURES => features_reply(s, req, VERSION_1 | PROTOCOL_FEATURES),
            GET_PROTOCOL_FEATURES => features_reply(s, req, REPLY_ACK | (1 << 9)),
            SET_PROTOCOL_FEATURES => {}
            SET_FEATURES => {
                assert!(
                    flags & 0x8 != 0,
                    "NEED_REPLY set once REPLY_ACK is negotiated"
                );
                features_reply(s, req, 1);
            }
            _ => {}
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("rejected SET_FEATURES"), "{e}");
    h.join().unwrap();
}

#[test]
fn garbage_bytes() {
    let (sock, h) = serve(|s, req, _| {
        if req == GET_FEATURES {
            let _ = s.write_all(&[0xff; 7]);
            return false;
        }
        true
    });
    let e = probe_err(&sock);
    assert!(e.contains("GET_FEATURES"), "{e}");
    h.join().unwrap();
}

/// A back end in client mode: connects to `path` (retrying until it listens) and serves
/// the connection with a plain feature script: GET_FEATURES answered with `features`,
/// everything else taken without reply; it hangs up after SET_FEATURES when `hang_up`.
fn connect_and_serve(path: PathBuf, features: u64, hang_up: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut s = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(e) => panic!("no listener on {}: {e}", path.display()),
            }
        };
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        while let Some((req, _, _)) = read_msg(&mut s) {
            if req == GET_FEATURES {
                features_reply(&mut s, req, features);
            }
            if req == SET_FEATURES && hang_up {
                break;
            }
        }
    })
}

/// Calls `reconnect` until a back end has connected and it gives an answer.
fn reconnect_answer(t: &pmd_virtio::user::VirtioUser) -> pmd_core::Result<bool> {
    use pmd_virtio::transport::Transport;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match t.reconnect(&[]) {
            Ok(false) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            other => return other,
        }
    }
}

#[test]
fn server_mode_takes_back_a_back_end_that_offers_what_was_negotiated() {
    use pmd_virtio::transport::Transport;
    const CSUM: u64 = 1;
    let path = std::env::temp_dir().join(format!(
        "pmd-virtio-fake-server-{}.sock",
        std::process::id()
    ));
    let first = connect_and_serve(path.clone(), VERSION_1 | CSUM, true);
    let mut t = pmd_virtio::user::VirtioUser::listen(
        "net_virtio_user0",
        &path,
        1,
        pmd_core::ethdev::MacAddr::local(1),
    )
    .unwrap();
    assert!(t.is_server() && t.can_reconnect());
    assert_eq!(t.negotiate(VERSION_1 | CSUM).unwrap(), VERSION_1 | CSUM);
    first.join().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.link_up() {
        assert!(std::time::Instant::now() < deadline, "link still up");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // A back end without the checksum feature negotiated before is refused...
    let lesser = connect_and_serve(path.clone(), VERSION_1, false);
    let e = reconnect_answer(&t).unwrap_err().to_string();
    assert!(e.contains("without 0x1 that were negotiated"), "{e}");
    lesser.join().unwrap();
    assert!(!t.link_up());
    // ...one that offers it (and more) is taken.
    let equal = connect_and_serve(path.clone(), VERSION_1 | CSUM | (1 << 5), false);
    assert!(reconnect_answer(&t).unwrap());
    assert!(t.link_up());
    let xs = t.xstats();
    let get = |k: &str| xs.iter().find(|(n, _)| n == k).map(|x| x.1);
    assert_eq!(get("backend_reconnects"), Some(1));
    assert_eq!(get("server_mode"), Some(1));
    drop(t);
    assert!(!path.exists(), "socket file removed with the port");
    equal.join().unwrap();
}
