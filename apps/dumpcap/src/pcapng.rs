//! The output file: pcapng (one interface per captured port, nanosecond timestamps,
//! the direction in each packet's flags, drop counts in a statistics block per
//! interface at the end), written with the `pcap-file` crate.

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use pmd_core::pdump::{Dir, RingCounters};
use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

/// `epb_flags` direction bits (pcapng: 01 inbound, 10 outbound).
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

/// A pcapng file being written.
pub struct Output<W: Write> {
    w: PcapNgWriter<W>,
    /// Bytes written so far (blocks' sizes).
    pub bytes: u64,
}

fn err(e: pcap_file::PcapError) -> String {
    format!("writing the capture: {e}")
}

impl<W: Write> Output<W> {
    /// Writes the section header and one interface description per `(name, description)`.
    pub fn new(w: W, interfaces: &[(String, String)], snaplen: u32) -> Result<Self, String> {
        let shb = SectionHeaderBlock {
            options: vec![
                SectionHeaderOption::UserApplication(Cow::Borrowed(concat!(
                    "pmd-dumpcap ",
                    env!("CARGO_PKG_VERSION")
                ))),
                SectionHeaderOption::OS(Cow::Borrowed(std::env::consts::OS)),
            ],
            ..SectionHeaderBlock::default()
        };
        let mut out = Output {
            w: PcapNgWriter::with_section_header(w, shb).map_err(err)?,
            bytes: 0,
        };
        for (name, desc) in interfaces {
            out.bytes += out
                .w
                .write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: DataLink::ETHERNET,
                    snaplen,
                    options: vec![
                        InterfaceDescriptionOption::IfName(Cow::Owned(name.clone())),
                        InterfaceDescriptionOption::IfDescription(Cow::Owned(desc.clone())),
                        InterfaceDescriptionOption::IfTsResol(9),
                    ],
                })
                .map_err(err)? as u64;
        }
        Ok(out)
    }

    /// One packet of interface `iface`.
    pub fn packet(
        &mut self,
        iface: u32,
        dir: Dir,
        ts_ns: u64,
        orig_len: u32,
        data: &[u8],
    ) -> Result<(), String> {
        let flags = match dir {
            Dir::Rx => INBOUND,
            Dir::Tx => OUTBOUND,
        };
        self.bytes += self
            .w
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_nanos(ts_ns),
                original_len: orig_len,
                data: Cow::Borrowed(data),
                options: vec![EnhancedPacketOption::Flags(flags)],
            })
            .map_err(err)? as u64;
        Ok(())
    }

    /// The statistics of interface `iface` over `[start_ns, end_ns]`: what the app's
    /// queues saw (`c`) and how many packets this file holds (`written`).
    pub fn statistics(
        &mut self,
        iface: u32,
        start_ns: u64,
        end_ns: u64,
        c: RingCounters,
        written: u64,
    ) -> Result<(), String> {
        self.bytes += self
            .w
            .write_pcapng_block(InterfaceStatisticsBlock {
                interface_id: iface,
                timestamp: end_ns,
                options: vec![
                    InterfaceStatisticsOption::IsbStartTime(start_ns),
                    InterfaceStatisticsOption::IsbEndTime(end_ns),
                    InterfaceStatisticsOption::IsbIfRecv(c.packets + c.drops + c.filtered),
                    InterfaceStatisticsOption::IsbFilterAccept(c.packets + c.drops),
                    InterfaceStatisticsOption::IsbIfDrop(c.drops),
                    InterfaceStatisticsOption::IsbUsrDeliv(written),
                ],
            })
            .map_err(err)? as u64;
        Ok(())
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> Result<W, String> {
        let mut w = self.w.into_inner();
        w.flush().map_err(|e| format!("writing the capture: {e}"))?;
        Ok(w)
    }
}
