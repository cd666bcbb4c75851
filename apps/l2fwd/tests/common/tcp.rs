//! A kernel TCP transfer between two namespaces, for the tests that forward it through
//! l2fwd: a server in one namespace checks every byte a client in the other sends.

use pmd_testkit::NetNs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Bytes each transfer sends.
pub const BYTES: usize = 20 * 1000 * 1000;

/// Byte `i` of the transfer.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Sends [`BYTES`] from a client in `client` to a server listening on `server_ip:port` in
/// `server`; returns (bytes sent, bytes received intact), each an error saying what
/// failed (a byte that differs is an error).
pub fn transfer(
    client: &NetNs,
    server: &NetNs,
    server_ip: &'static str,
    port: u16,
) -> (Result<usize, String>, Result<usize, String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let srv = server.spawn(move || -> Result<usize, String> {
        let l = TcpListener::bind((server_ip, port)).map_err(|e| format!("bind: {e}"))?;
        tx.send(()).unwrap();
        let (mut s, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut at = 0usize;
        loop {
            let n = s.read(&mut buf).map_err(|e| format!("read at {at}: {e}"))?;
            if n == 0 {
                return Ok(at);
            }
            if let Some(k) = (0..n).find(|&k| buf[k] != pattern(at + k)) {
                return Err(format!("byte {} differs", at + k));
            }
            at += n;
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let sent = client.run(move || -> Result<usize, String> {
        let addr = format!("{server_ip}:{port}").parse().unwrap();
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
        let data: Vec<u8> = (0..BYTES).map(pattern).collect();
        for c in data.chunks(1 << 20) {
            s.write_all(c).map_err(|e| format!("write: {e}"))?;
        }
        Ok(BYTES)
    });
    (sent, srv.join().expect("server thread"))
}

/// Packets received on `port` in l2fwd's last statistics print.
pub fn received(out: &str, port: u16) -> Option<u64> {
    let at = out.rfind(&format!("Statistics for port {port} "))?;
    let line = out[at..]
        .lines()
        .find(|l| l.starts_with("Packets received:"))?;
    line.split_whitespace().last()?.parse().ok()
}
