//! The pcap file writer: [`FileWriter`] appends records (an mbuf chain's segments,
//! without joining them) behind a large write buffer. Files are little-endian pcap with
//! microsecond timestamps and Ethernet link type, written with `pcap-file`'s serialisers.

use pcap_file::pcap::PcapHeader;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Bytes buffered before a write to the file.
const WRITE_BUFFER: usize = 1 << 20;

/// An error about the file at `path`: its name, then what is wrong.
fn file_error(path: &Path, msg: impl std::fmt::Display) -> String {
    format!("{}: {msg}", path.display())
}

/// The time now, as the duration since the Unix epoch (0 if the clock is before it).
pub fn now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
}

/// The snaplen of the files written: longer packets are recorded truncated to it (the
/// record keeps their original length).
pub const SNAPLEN: u32 = 65_535;

/// A pcap header for Ethernet frames of up to 64 KiB, microsecond timestamps, little endian.
pub fn ethernet_header() -> PcapHeader {
    PcapHeader {
        snaplen: SNAPLEN,
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::MicroSecond,
        endianness: Endianness::Little,
        ..PcapHeader::default()
    }
}

/// A buffered pcap file being written. (`pcap_file::pcap::PcapWriter` cannot flush its
/// writer in place, so the header and records are written with `pcap-file`'s own
/// serialisers into a `BufWriter` we keep.)
#[derive(Debug)]
pub struct FileWriter {
    out: BufWriter<File>,
}

impl FileWriter {
    /// Creates (or truncates) `path` and writes the pcap header.
    pub fn create(path: &Path) -> Result<FileWriter, String> {
        let f = File::create(path).map_err(|e| file_error(path, format!("cannot create: {e}")))?;
        let mut out = BufWriter::with_capacity(WRITE_BUFFER, f);
        ethernet_header()
            .write_to(&mut out)
            .map_err(|e| file_error(path, format!("cannot write: {e}")))?;
        Ok(FileWriter { out })
    }

    /// Writes one packet record from the first `caplen` bytes of `segs` (the segments of
    /// an mbuf chain, in order), `orig_len` its whole length: the same record as
    /// `pcap-file` writes for the joined bytes, without joining them.
    #[inline]
    pub fn write_segments<'a>(
        &mut self,
        ts: Duration,
        orig_len: u32,
        caplen: u32,
        segs: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), PcapError> {
        if caplen > SNAPLEN || caplen > orig_len {
            return Err(PcapError::InvalidField(
                "record: caplen larger than the snaplen or the packet",
            ));
        }
        let secs = u32::try_from(ts.as_secs())
            .map_err(|_| PcapError::InvalidField("PcapPacket: timestamp_secs > u32::MAX"))?;
        let mut hdr = [0u8; 16];
        hdr[0..4].copy_from_slice(&secs.to_le_bytes());
        hdr[4..8].copy_from_slice(&ts.subsec_micros().to_le_bytes());
        hdr[8..12].copy_from_slice(&caplen.to_le_bytes());
        hdr[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&hdr).map_err(PcapError::IoError)?;
        let mut left = caplen as usize;
        for s in segs {
            if left == 0 {
                break;
            }
            let n = s.len().min(left);
            self.out.write_all(&s[..n]).map_err(PcapError::IoError)?;
            left -= n;
        }
        if left != 0 {
            // The segments held fewer bytes than promised: the file would be damaged.
            return Err(PcapError::InvalidField(
                "record: segments shorter than caplen",
            ));
        }
        Ok(())
    }

    /// Writes everything buffered to the file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    /// Flushes and closes the file, reporting the error a plain drop would hide.
    pub fn finish(self) -> std::io::Result<()> {
        self.out.into_inner().map_err(|e| e.into_error()).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use byteorder::LittleEndian;
    use pcap_file::pcap::PcapPacket;

    /// A record written from segments is byte for byte what `pcap-file` writes for the
    /// joined frame; truncation keeps the original length; bad lengths are refused.
    #[test]
    fn segmented_records_match_pcap_file() {
        let dir = std::env::temp_dir().join(format!("pmdpcap-seg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seg.pcap");
        let frame: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let ts = Duration::new(1_700_000_000, 123_456_789);
        let mut w = FileWriter::create(&path).unwrap();
        let segs = [
            &frame[..100],
            &frame[100..100],
            &frame[100..4000],
            &frame[4000..],
        ];
        w.write_segments(ts, 5000, 5000, segs.iter().copied())
            .unwrap();
        w.write_segments(ts, 5000, 1000, segs.iter().copied())
            .unwrap();
        assert!(w.write_segments(ts, 10, 20, segs.iter().copied()).is_err());
        assert!(w
            .write_segments(ts, 70_000, 70_000, std::iter::empty())
            .is_err());
        w.finish().unwrap();
        let got = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let mut want = Vec::new();
        ethernet_header().write_to(&mut want).unwrap();
        for (orig, data) in [(5000, &frame[..]), (5000, &frame[..1000])] {
            PcapPacket::new(ts, orig, data)
                .write_to::<_, LittleEndian>(&mut want, TsResolution::MicroSecond, SNAPLEN)
                .unwrap();
        }
        assert_eq!(got, want);
    }
}
