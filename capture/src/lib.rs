//! pcap capture for applications and drivers:
//!
//! - [`Capture`] records the packets that pass any point of an application's data path
//!   (an rx or tx burst of any port) into a pcap file: [`CaptureTap`]s copy bursts, a
//!   writer thread does the file I/O;
//! - [`FileWriter`] is the buffered pcap writer underneath, which the pcap driver
//!   (`net_pcap`) also uses for its tx files.
//!
//! Files are little-endian pcap with microsecond timestamps and Ethernet link type; mbuf
//! chains are recorded whole, every segment, and records hold at most [`SNAPLEN`] bytes
//! (longer packets are truncated, keeping their original length).

mod capture;
mod writer;

pub use capture::{Capture, CaptureOptions, CaptureStats, CaptureTap};
pub use writer::{ethernet_header, now, FileWriter, SNAPLEN};
