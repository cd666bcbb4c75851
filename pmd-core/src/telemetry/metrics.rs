//! Prometheus metrics over HTTP (`--metrics IP:PORT`): `GET /metrics` answers the
//! text exposition format (version 0.0.4) with the ports' counters, their queues', their
//! links', their xstats and the mempools', so a Prometheus scrape and a Grafana dashboard
//! need no custom code. The page is made by the main lcore, which owns the ports
//! ([`crate::Eal::serve_telemetry`]); this thread only speaks HTTP, one connection at a
//! time, each closed after its answer.

use super::Shared;
use crate::ethdev::Port;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The command the HTTP thread queues for the main lcore (not listed by `/`).
pub(super) const SCRAPE_CMD: &str = "/_metrics";
/// The longest request head read; a longer one is answered 431.
const MAX_HEAD: usize = 8192;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// The HTTP thread; stopped when dropped.
#[derive(Debug)]
pub(super) struct MetricsServer {
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0: one the kernel picks) and starts the thread.
    pub(super) fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<MetricsServer> {
        let l = TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve(l, &sh))?;
        Ok(MetricsServer {
            addr,
            thread: Some(thread),
            shared,
        })
    }

    /// The address it listens on.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shared.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(l: TcpListener, sh: &Shared) {
    while sh.wait(l.as_raw_fd()) {
        if let Ok((c, _)) = l.accept() {
            let _ = answer(c, sh);
        }
    }
}

/// Reads one request and answers it.
fn answer(mut c: TcpStream, sh: &Shared) -> io::Result<()> {
    c.set_read_timeout(Some(READ_TIMEOUT))?;
    c.set_write_timeout(Some(READ_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD {
            return reply(
                &mut c,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            );
        }
        let n = c.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    let (method, path, version) = (parts.next(), parts.next(), parts.next());
    if !version.is_some_and(|v| v.starts_with("HTTP/1.")) {
        return reply(&mut c, "400 Bad Request", "text/plain", "");
    }
    if method != Some("GET") {
        return reply(&mut c, "405 Method Not Allowed", "text/plain", "");
    }
    if path.map(|p| p.split('?').next().unwrap_or(p)) != Some("/metrics") {
        return reply(&mut c, "404 Not Found", "text/plain", "try /metrics\n");
    }
    match sh.ask_main(SCRAPE_CMD, None) {
        Some(serde_json::Value::String(page)) => reply(
            &mut c,
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            &page,
        ),
        _ => reply(
            &mut c,
            "503 Service Unavailable",
            "text/plain",
            "the application's main lcore did not answer (does it call Eal::serve_telemetry?)\n",
        ),
    }
}

fn reply(c: &mut TcpStream, status: &str, ctype: &str, body: &str) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes())?;
    c.write_all(body.as_bytes())
}

/// A label value with `\`, `"` and newlines escaped, as the text format wants.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One metric family: its HELP and TYPE lines, then a sample per `(labels, value)`.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(String, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

/// The metrics page of `ports` and the live mempools.
pub fn page(ports: &[Port]) -> String {
    let mut out = String::new();
    let port_label = |p: &Port| format!("port=\"{}\",name=\"{}\"", p.id(), esc(p.name()));
    let stats: Vec<_> = ports.iter().map(|p| (port_label(p), p.stats())).collect();
    type Field = fn(&crate::ethdev::EthStats) -> u64;
    let counters: [(&str, &str, Field); 8] = [
        ("rx_packets", "Packets received.", |s| s.ipackets),
        ("tx_packets", "Packets sent.", |s| s.opackets),
        ("rx_bytes", "Bytes received.", |s| s.ibytes),
        ("tx_bytes", "Bytes sent.", |s| s.obytes),
        (
            "rx_missed",
            "Packets dropped on receive by the device or peer.",
            |s| s.imissed,
        ),
        ("rx_errors", "Erroneous packets received.", |s| s.ierrors),
        ("tx_errors", "Failed transmissions.", |s| s.oerrors),
        ("rx_nombuf", "Receive buffer allocation failures.", |s| {
            s.rx_nombuf
        }),
    ];
    for (name, help, f) in counters {
        let samples: Vec<_> = stats.iter().map(|(l, s)| (l.clone(), f(s))).collect();
        family(
            &mut out,
            &format!("pmd_port_{name}_total"),
            "counter",
            help,
            &samples,
        );
    }
    let links: Vec<_> = ports.iter().map(|p| (port_label(p), p.link())).collect();
    let up: Vec<_> = links
        .iter()
        .map(|(l, k)| (l.clone(), u64::from(k.up)))
        .collect();
    family(
        &mut out,
        "pmd_port_link_up",
        "gauge",
        "1 while the link is up.",
        &up,
    );
    let speed: Vec<_> = links
        .iter()
        .map(|(l, k)| (l.clone(), if k.up { u64::from(k.speed_mbps) } else { 0 }))
        .collect();
    family(
        &mut out,
        "pmd_port_link_speed_mbps",
        "gauge",
        "Link speed (0 while down).",
        &speed,
    );
    let mut q: [Vec<(String, u64)>; 4] = Default::default();
    for p in ports {
        let (rx, tx) = p.queue_counters();
        for (i, c) in rx.iter().enumerate() {
            let l = format!("{},queue=\"{i}\"", port_label(p));
            q[0].push((l.clone(), c.packets));
            q[1].push((l, c.bytes));
        }
        for (i, c) in tx.iter().enumerate() {
            let l = format!("{},queue=\"{i}\"", port_label(p));
            q[2].push((l.clone(), c.packets));
            q[3].push((l, c.bytes));
        }
    }
    let [rxp, rxb, txp, txb] = q;
    family(
        &mut out,
        "pmd_queue_rx_packets_total",
        "counter",
        "Packets an rx queue received.",
        &rxp,
    );
    family(
        &mut out,
        "pmd_queue_rx_bytes_total",
        "counter",
        "Bytes an rx queue received.",
        &rxb,
    );
    family(
        &mut out,
        "pmd_queue_tx_packets_total",
        "counter",
        "Packets a tx queue sent.",
        &txp,
    );
    family(
        &mut out,
        "pmd_queue_tx_bytes_total",
        "counter",
        "Bytes a tx queue sent.",
        &txb,
    );
    let xs: Vec<_> = ports
        .iter()
        .flat_map(|p| {
            let l = port_label(p);
            p.xstats()
                .into_iter()
                .map(move |(k, v)| (format!("{l},xstat=\"{}\"", esc(&k)), v))
        })
        .collect();
    family(
        &mut out,
        "pmd_port_xstat",
        "untyped",
        "A port's extended statistic, by name.",
        &xs,
    );
    let pools = crate::Mempool::list();
    let pl = |p: &crate::Mempool| format!("pool=\"{}\"", esc(p.name()));
    let size: Vec<_> = pools.iter().map(|p| (pl(p), u64::from(p.size()))).collect();
    let st: Vec<_> = pools.iter().map(|p| (pl(p), p.stats())).collect();
    let in_use: Vec<_> = st
        .iter()
        .map(|(l, s)| (l.clone(), s.in_use.max(0) as u64))
        .collect();
    let avail: Vec<_> = st
        .iter()
        .map(|(l, s)| (l.clone(), s.available as u64))
        .collect();
    let fails: Vec<_> = st
        .iter()
        .map(|(l, s)| (l.clone(), s.alloc_failures))
        .collect();
    family(
        &mut out,
        "pmd_mempool_size",
        "gauge",
        "Buffers in the pool.",
        &size,
    );
    family(
        &mut out,
        "pmd_mempool_in_use",
        "gauge",
        "Buffers handed out.",
        &in_use,
    );
    family(
        &mut out,
        "pmd_mempool_available",
        "gauge",
        "Buffers free (caches included).",
        &avail,
    );
    family(
        &mut out,
        "pmd_mempool_alloc_failures_total",
        "counter",
        "Allocations that found the pool empty.",
        &fails,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_escaping() {
        let mut out = String::new();
        family(
            &mut out,
            "m_total",
            "counter",
            "Help.",
            &[("a=\"x\"".into(), 3)],
        );
        assert_eq!(
            out,
            "# HELP m_total Help.\n# TYPE m_total counter\nm_total{a=\"x\"} 3\n"
        );
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
