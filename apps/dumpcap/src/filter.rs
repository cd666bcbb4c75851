//! tcpdump-style filter expressions compiled to classic BPF by libpcap (through the
//! `pcap` crate), for Ethernet frames.

/// Compiles `expr` (pcap-filter(7) syntax) with libpcap's optimiser.
pub fn compile(expr: &str) -> Result<Vec<libc::sock_filter>, String> {
    let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| format!("libpcap: {e}"))?;
    let prog = cap
        .compile(expr, true)
        .map_err(|e| format!("filter {expr:?}: {e}"))?;
    // The crate shows an instruction only as text, "code jt jf k" (as `tcpdump -ddd`).
    prog.get_instructions()
        .iter()
        .map(|i| {
            let text = i.to_string();
            let f: Vec<u32> = text
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            match f[..] {
                [code, jt, jf, k] => Ok(libc::sock_filter {
                    code: code as u16,
                    jt: jt as u8,
                    jf: jf as u8,
                    k,
                }),
                _ => Err(format!(
                    "libpcap gave an instruction we cannot read: {text:?}"
                )),
            }
        })
        .collect()
}

/// The program as `tcpdump -ddd` prints it: the count, then `code jt jf k` per line.
pub fn dump(prog: &[libc::sock_filter]) -> String {
    let mut s = format!("{}\n", prog.len());
    for i in prog {
        s += &format!("{} {} {} {}\n", i.code, i.jt, i.jf, i.k);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use pmd_core::pdump::Filter;

    /// Frames of many kinds: IPv4 UDP/TCP/ICMP with and without a VLAN tag, ARP, IPv6,
    /// odd lengths, truncated headers; then each with random bytes flipped.
    fn frames() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 0..400u32 {
            let vlan = i % 7 == 0;
            let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
            if vlan {
                f.extend_from_slice(&[0x81, 0x00, 0x00, (i % 7) as u8]);
            }
            let (ethertype, l3): (u16, Vec<u8>) = match i % 5 {
                0..=2 => {
                    let proto = [17u8, 6, 1][(i % 3) as usize];
                    let mut ip = vec![0x45, 0, 0, 40, 0, 0, 0, 0, 64, proto, 0, 0];
                    ip.extend_from_slice(&[10, 0, 0, (i % 4) as u8, 10, 0, 1, 1]);
                    let sport = (i * 7919 % 3000) as u16;
                    let dport = [53u16, 80, 1500, 443][(i % 4) as usize];
                    ip.extend_from_slice(&sport.to_be_bytes());
                    ip.extend_from_slice(&dport.to_be_bytes());
                    ip.extend_from_slice(&[0; 16]);
                    (0x0800, ip)
                }
                3 => (0x0806, vec![0, 1, 8, 0, 6, 4, 0, 1]),
                _ => (0x86dd, {
                    let mut ip6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
                    ip6.extend_from_slice(&[0xfe; 32]);
                    ip6.extend_from_slice(&[0, 53, 0, 53, 0, 8, 0, 0]);
                    ip6
                }),
            };
            f.extend_from_slice(&ethertype.to_be_bytes());
            f.extend_from_slice(&l3);
            f.resize(f.len() + (i as usize % 50), 0xab);
            v.push(f.clone());
            let mut g = f.clone();
            for _ in 0..3 {
                let at = rnd() as usize % g.len();
                g[at] = rnd() as u8;
            }
            v.push(g);
            v.push(f[..(rnd() as usize % f.len())].to_vec());
        }
        v
    }

    #[test]
    fn the_interpreter_agrees_with_libpcaps_on_every_frame() {
        let exprs = [
            "udp",
            "tcp port 80",
            "ip src 10.0.0.1",
            "vlan and udp",
            "ether[13] & 1 = 0",
            "len > 100",
            "ip6 and udp port 53",
            "arp",
            "udp dst portrange 1000-2000",
            "not icmp",
            "ip[2:2] > 30 or ether src 02:00:00:00:00:02",
            "tcp[tcpflags] & tcp-syn != 0",
        ];
        let frames = frames();
        let cap = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        for e in exprs {
            let ours = Filter::new(&compile(e).unwrap()).unwrap();
            let theirs = cap.compile(e, true).unwrap();
            let mut matched = 0;
            for f in &frames {
                let want = theirs.filter(f);
                assert_eq!(ours.matches_bytes(f), want, "{e:?} on {f:02x?}");
                matched += usize::from(want);
            }
            // Each expression tells frames apart (neither all nor none match).
            assert!(matched > 0 && matched < frames.len(), "{e:?}: {matched}");
        }
    }

    #[test]
    fn a_bad_expression_is_an_error_naming_it() {
        let e = compile("udp port (((").unwrap_err();
        assert!(e.contains("udp port ((("), "{e}");
        assert_eq!(dump(&compile("arp").unwrap()).lines().next(), Some("4"));
    }
}
