//! `--pcap-capture PORT:FILE`: records what a port receives and what l2fwd sends on it
//! into a pcap file (through `pmd_capture::Capture`: copies go to a writer thread, the
//! forwarding loop does no file I/O).

use crate::fwd::Task;
use pmd_capture::Capture;
use pmd_core::ethdev::PortId;
use pmd_core::numarg;
use pmd_core::Error;
use std::path::PathBuf;

/// Parses `PORT:FILE`.
pub fn parse_spec(s: &str) -> Result<(PortId, PathBuf), String> {
    let (port, file) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid capture {s:?}: expected PORT:FILE, e.g. 0:port0.pcap"))?;
    let port = numarg::whole(port, 0..=PortId::MAX)
        .map_err(|e| format!("invalid capture {s:?}: not a port number: {e}"))?;
    if file.is_empty() {
        return Err(format!("invalid capture {s:?}: no file name after ':'"));
    }
    Ok((port, PathBuf::from(file)))
}

/// Opens one capture per spec and gives taps to the tasks that receive on or transmit to
/// its port. Each port must be enabled and captured once.
pub fn attach(
    specs: &[(PortId, PathBuf)],
    enabled: &[PortId],
    tasks: &mut [Vec<Task>],
) -> Result<Vec<(PortId, Capture)>, Error> {
    let mut caps: Vec<(PortId, Capture)> = Vec::new();
    for (port, file) in specs {
        if !enabled.contains(port) {
            return Err(Error::Config(format!(
                "--pcap-capture {port}:{}: port {port} is not in the portmask",
                file.display()
            )));
        }
        if caps.iter().any(|(p, _)| p == port) {
            return Err(Error::Config(format!(
                "--pcap-capture: port {port} is captured twice"
            )));
        }
        caps.push((*port, Capture::create(file)?));
    }
    for t in tasks.iter_mut().flatten() {
        let tap = |p: PortId| caps.iter().find(|(q, _)| *q == p).map(|(_, c)| c.tap());
        let (rx, tx) = (tap(t.rx_port()), tap(t.dst_port()));
        t.set_capture(rx, tx);
    }
    for (p, c) in &caps {
        println!("Port {p}: capturing to {}", c.path().display());
    }
    Ok(caps)
}

/// Closes the captures (after the tasks, and with them the taps, are gone) and prints
/// what each recorded.
pub fn finish(caps: Vec<(PortId, Capture)>) {
    for (p, c) in caps {
        let path = c.path().display().to_string();
        match c.finish() {
            Ok(s) => println!(
                "Port {p}: captured {} packets to {path} ({} not recorded: capture buffers full)",
                s.written, s.dropped
            ),
            Err(e) => eprintln!("l2fwd: port {p}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(parse_spec("1:/tmp/a.pcap"), Ok((1, "/tmp/a.pcap".into())));
        assert_eq!(parse_spec("0:c:d.pcap"), Ok((0, "c:d.pcap".into())));
        assert!(parse_spec("x.pcap").unwrap_err().contains("PORT:FILE"));
        assert!(parse_spec("a:x.pcap").unwrap_err().contains("not a port"));
        assert!(parse_spec("+1:x.pcap").unwrap_err().contains("not a port"));
        assert!(parse_spec("65536:x.pcap")
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_spec("0:").unwrap_err().contains("no file"));
    }
}
