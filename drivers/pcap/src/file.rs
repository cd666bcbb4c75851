//! pcap files: [`Trace`] (a whole file's frames loaded into memory, for replay) and
//! [`Sink`] (a buffered pcap writer, [`pmd_capture::FileWriter`], shared by a tx queue and
//! its device). The file format is the `pcap-file` crate's; reading accepts pcap (either
//! byte order, micro- or nanosecond timestamps) and pcapng, with Ethernet link type.

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, Endianness, PcapError};
use pmd_capture::FileWriter;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Largest record accepted (libpcap's `MAXIMUM_SNAPLEN`): larger ones mean a damaged file.
pub const MAX_RECORD: u32 = 262_144;

/// All frames of a capture file, in order, in one buffer.
#[derive(Debug, Default)]
pub struct Trace {
    data: Vec<u8>,
    /// (offset in `data`, length) of each frame.
    frames: Vec<(usize, u32)>,
}

/// Why a pcap file could not be read: the message names the file and what is wrong.
fn load_error(path: &Path, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", path.display())
}

fn damage(path: &Path, n: usize, at: usize, e: PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => load_error(
            path,
            format!(
                "truncated: record {} at byte {at} is cut short after {n} complete packets",
                n + 1
            ),
        ),
        e => load_error(path, format!("damaged: record {} at byte {at}: {e}", n + 1)),
    }
}

impl Trace {
    /// Reads a whole pcap or pcapng file. Errors say which file and what is wrong with it
    /// (missing, not a capture file, not Ethernet, truncated, damaged).
    pub fn load(path: &Path) -> Result<Trace, String> {
        let bytes =
            std::fs::read(path).map_err(|e| load_error(path, format!("cannot read: {e}")))?;
        Self::parse(path, &bytes)
    }

    /// Parses the bytes of a capture file (`path` only names it in errors).
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Trace, String> {
        let magic = bytes
            .get(..4)
            .map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
        match magic {
            Some(0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1) => {
                Self::parse_pcap(path, bytes)
            }
            Some(0x0a0d_0d0a) => Self::parse_pcapng(path, bytes),
            Some(m) => Err(load_error(
                path,
                format!("not a pcap or pcapng file (starts with 0x{m:08x})"),
            )),
            None => Err(load_error(
                path,
                format!("not a pcap file: only {} bytes", bytes.len()),
            )),
        }
    }

    fn push(&mut self, frame: &[u8]) {
        self.frames.push((self.data.len(), frame.len() as u32));
        self.data.extend_from_slice(frame);
    }

    fn parse_pcap(path: &Path, bytes: &[u8]) -> Result<Trace, String> {
        let (mut rest, parser) = PcapParser::new(bytes).map_err(|e| match e {
            PcapError::IncompleteBuffer => load_error(path, "truncated pcap file header"),
            e => load_error(path, format!("bad pcap file header: {e}")),
        })?;
        let link = parser.header().datalink;
        if link != DataLink::ETHERNET {
            return Err(load_error(
                path,
                format!("link type {link:?} is not Ethernet"),
            ));
        }
        let mut t = Trace::default();
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let n = t.frames.len();
            // The record's captured length (bytes 8..12 of its header), checked first: a
            // damaged length would otherwise look like a truncated file.
            let incl = rest.get(8..12).map(|b| {
                let b = [b[0], b[1], b[2], b[3]];
                match parser.header().endianness {
                    Endianness::Big => u32::from_be_bytes(b),
                    Endianness::Little => u32::from_le_bytes(b),
                }
            });
            if let Some(len) = incl.filter(|&l| l > MAX_RECORD) {
                return Err(load_error(
                    path,
                    format!(
                        "damaged: record {} at byte {at} claims {len} bytes (most: {MAX_RECORD})",
                        n + 1
                    ),
                ));
            }
            let (next, raw) = parser
                .next_raw_packet(rest)
                .map_err(|e| damage(path, n, at, e))?;
            t.push(&raw.data);
            rest = next;
        }
        Ok(t)
    }

    fn parse_pcapng(path: &Path, bytes: &[u8]) -> Result<Trace, String> {
        let (mut rest, mut parser) = PcapNgParser::new(bytes).map_err(|e| match e {
            PcapError::IncompleteBuffer => load_error(path, "truncated pcapng section header"),
            e => load_error(path, format!("bad pcapng section header: {e}")),
        })?;
        let mut t = Trace::default();
        while !rest.is_empty() {
            let at = bytes.len() - rest.len();
            let n = t.frames.len();
            let (next, block) = parser
                .next_block(rest)
                .map_err(|e| damage(path, n, at, e))?;
            let (iface, data) = match &block {
                Block::EnhancedPacket(p) => (p.interface_id, &p.data),
                Block::SimplePacket(p) => (0, &p.data),
                Block::Packet(p) => (u32::from(p.interface_id), &p.data),
                _ => {
                    rest = next;
                    continue;
                }
            };
            match parser.interfaces().get(iface as usize) {
                Some(i) if i.linktype == DataLink::ETHERNET => {}
                Some(i) => {
                    return Err(load_error(
                        path,
                        format!("link type {:?} is not Ethernet", i.linktype),
                    ))
                }
                None => {
                    return Err(load_error(
                        path,
                        format!("damaged: packet at byte {at} names unknown interface {iface}"),
                    ))
                }
            }
            t.push(data);
            rest = next;
        }
        Ok(t)
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the file held no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frame `i` (< len).
    #[inline(always)]
    pub fn frame(&self, i: usize) -> &[u8] {
        let (off, len) = self.frames[i];
        &self.data[off..off + len as usize]
    }
}

/// A tx file: the writer, shared by the device (flush on stop, close) and its tx queue.
#[derive(Debug)]
pub struct Sink {
    path: PathBuf,
    writer: Mutex<Option<FileWriter>>,
}

impl Sink {
    /// Creates the file and writes the pcap header.
    pub fn create(path: &Path) -> Result<Sink, String> {
        Ok(Sink {
            path: path.to_path_buf(),
            writer: Mutex::new(Some(FileWriter::create(path)?)),
        })
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the writer, if the sink is not closed (`None` then).
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut FileWriter) -> R) -> Option<R> {
        let mut g = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        g.as_mut().map(f)
    }

    /// Writes everything buffered to the file.
    pub fn flush(&self) -> std::io::Result<()> {
        self.with(FileWriter::flush).unwrap_or(Ok(()))
    }

    /// Flushes and closes the file; later writes are refused.
    pub fn close(&self) -> std::io::Result<()> {
        let mut g = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        match g.take() {
            Some(w) => w.finish(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byteorder::LittleEndian;
    use pcap_file::pcap::{PcapHeader, PcapPacket};
    use pcap_file::TsResolution;
    use pmd_capture::ethernet_header;
    use std::time::Duration;

    /// A little-endian microsecond pcap with `frames`, as `FileWriter` writes it.
    fn pcap_bytes(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        ethernet_header().write_to(&mut out).unwrap();
        for f in frames {
            PcapPacket::new(Duration::from_micros(7), f.len() as u32, f)
                .write_to::<_, LittleEndian>(&mut out, TsResolution::MicroSecond, 65_535)
                .unwrap();
        }
        out
    }

    fn frames() -> Vec<Vec<u8>> {
        (0..20u8)
            .map(|i| vec![i; 60 + usize::from(i) * 50])
            .collect()
    }

    #[test]
    fn parses_what_it_writes() {
        let f = frames();
        let t = Trace::parse(Path::new("x"), &pcap_bytes(&f)).unwrap();
        assert_eq!(t.len(), f.len());
        for (i, want) in f.iter().enumerate() {
            assert_eq!(t.frame(i), &want[..]);
        }
        let empty = Trace::parse(Path::new("x"), &pcap_bytes(&[])).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn snaplen_shorter_than_packets_is_accepted() {
        // tcpdump -s 96: records with orig_len > snaplen (pcap-file's strict reader refuses
        // these; libpcap and we accept them).
        let mut b = Vec::new();
        PcapHeader {
            snaplen: 96,
            ..ethernet_header()
        }
        .write_to(&mut b)
        .unwrap();
        for v in [7u32, 0, 96, 1514] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&[0xab; 96]);
        let t = Trace::parse(Path::new("s"), &b).unwrap();
        assert_eq!(t.frame(0), &[0xab; 96][..]);
    }

    #[test]
    fn errors_name_the_problem() {
        let p = Path::new("f.pcap");
        let good = pcap_bytes(&frames());
        let e = Trace::parse(p, &good[..good.len() - 5]).unwrap_err();
        assert!(e.starts_with("f.pcap: truncated: record 20 at byte"), "{e}");
        assert!(e.contains("after 19 complete packets"), "{e}");
        let e = Trace::parse(p, &good[..30]).unwrap_err();
        assert!(e.contains("truncated: record 1"), "{e}");
        let e = Trace::parse(p, &good[..10]).unwrap_err();
        assert_eq!(e, "f.pcap: truncated pcap file header");
        let e = Trace::parse(p, b"hello world, not a capture").unwrap_err();
        assert_eq!(
            e,
            "f.pcap: not a pcap or pcapng file (starts with 0x68656c6c)"
        );
        assert!(Trace::parse(p, b"").unwrap_err().contains("only 0 bytes"));
        let mut huge = pcap_bytes(&[]);
        for v in [0u32, 0, 0x7fff_ffff, 0x7fff_ffff] {
            huge.extend_from_slice(&v.to_le_bytes());
        }
        huge.extend_from_slice(&[0; 300_000]);
        let e = Trace::parse(p, &huge).unwrap_err();
        assert!(e.contains("claims 2147483647 bytes"), "{e}");
        let mut raw_ip = pcap_bytes(&[]);
        raw_ip[20..24].copy_from_slice(&101u32.to_le_bytes());
        let e = Trace::parse(p, &raw_ip).unwrap_err();
        assert!(e.contains("is not Ethernet"), "{e}");
        let e = Trace::load(Path::new("/nonexistent/x.pcap")).unwrap_err();
        assert!(e.starts_with("/nonexistent/x.pcap: cannot read: "), "{e}");
    }

    /// Damaged files (bytes flipped, cut anywhere, garbage after valid headers) give an
    /// error or a trace, never a panic.
    #[test]
    fn damaged_files_never_panic() {
        let good = pcap_bytes(&frames());
        let mut ng = Vec::new();
        {
            use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
            use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
            let mut w = pcap_file::pcapng::PcapNgWriter::new(&mut ng).unwrap();
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: DataLink::ETHERNET,
                snaplen: 0,
                options: vec![],
            })
            .unwrap();
            for f in frames() {
                w.write_pcapng_block(EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: Duration::from_micros(1),
                    original_len: f.len() as u32,
                    data: f.into(),
                    options: vec![],
                })
                .unwrap();
            }
        }
        let t = Trace::parse(Path::new("ng"), &ng).unwrap();
        assert_eq!(t.len(), 20);
        assert_eq!(t.frame(3), &frames()[3][..]);
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for base in [&good, &ng] {
            for cut in 0..base.len().min(400) {
                let _ = Trace::parse(Path::new("c"), &base[..cut]);
            }
            for _ in 0..3000 {
                let mut b = base.clone();
                for _ in 0..1 + rnd() % 8 {
                    let i = (rnd() as usize) % b.len();
                    b[i] = rnd() as u8;
                }
                let cut = (rnd() as usize) % (b.len() + 1);
                let _ = Trace::parse(Path::new("m"), &b[..cut.max(b.len() / 2)]);
            }
        }
    }
}
