//! Reading and changing the kernel's hugepage pools and hugetlbfs mounts.

use pmd_core::memory::{self, HugepagePool, HugetlbfsMount};
use pmd_core::numarg;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// Where the kernel's hugepage controls live (a temp dir in tests).
#[derive(Debug, Clone)]
pub struct SysPaths {
    /// `/sys/kernel/mm/hugepages`.
    pub global: PathBuf,
    /// `/sys/devices/system/node`.
    pub nodes: PathBuf,
    /// `/proc/mounts`.
    pub mounts: PathBuf,
}

impl SysPaths {
    /// The same files under another root directory (a fake tree in tests).
    pub fn under(root: &Path) -> SysPaths {
        SysPaths {
            global: root.join("sys/kernel/mm/hugepages"),
            nodes: root.join("sys/devices/system/node"),
            mounts: root.join("proc/mounts"),
        }
    }
}

/// How much to reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    /// A number of pages.
    Pages(u64),
    /// A total size in bytes (rounded up to whole pages).
    Bytes(u64),
}

impl Amount {
    /// Parses `1024` (pages) or `2G` / `512M` / `4096K` (a size).
    pub fn parse(s: &str) -> Result<Amount, String> {
        let s = s.trim();
        if let Ok(n) = numarg::whole(s, 0..=u64::MAX) {
            return Ok(Amount::Pages(n));
        }
        let has_suffix = s.ends_with(['k', 'K', 'm', 'M', 'g', 'G']);
        match memory::parse_size(s) {
            Some(b) if has_suffix => Ok(Amount::Bytes(b as u64)),
            _ => Err(format!(
                "invalid amount {s:?}: give a page count (1024) or a size (2G, 512M)"
            )),
        }
    }

    fn pages(self, page_bytes: u64) -> u64 {
        match self {
            Amount::Pages(n) => n,
            Amount::Bytes(b) => b.div_ceil(page_bytes),
        }
    }
}

/// The pools of one NUMA node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePools {
    /// Node number.
    pub node: u32,
    /// Its pools, by page size.
    pub pools: Vec<HugepagePool>,
}

/// Everything `status` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// System-wide pools.
    pub pools: Vec<HugepagePool>,
    /// Per-node pools.
    pub nodes: Vec<NodePools>,
    /// hugetlbfs mounts.
    pub mounts: Vec<HugetlbfsMount>,
    /// Default hugepage size in KiB.
    pub default_kb: u64,
    /// RLIMIT_MEMLOCK soft limit in bytes (None = unlimited).
    pub memlock: Option<u64>,
}

fn default_page_kb() -> u64 {
    memory::default_hugepage_size()
        .map(|b| b as u64 / 1024)
        .unwrap_or(2048)
}

/// Reads the current state.
pub fn status(sys: &SysPaths) -> Result<Status, String> {
    let mut nodes: Vec<NodePools> = fs::read_dir(&sys.nodes)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let node = e.file_name().to_str()?.strip_prefix("node")?.parse().ok()?;
            Some(NodePools {
                node,
                pools: memory::hugepage_pools_in(&e.path().join("hugepages")),
            })
        })
        .collect();
    nodes.sort_by_key(|n| n.node);
    let default_kb = default_page_kb();
    let mounts_text = fs::read_to_string(&sys.mounts).unwrap_or_default();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0;
    Ok(Status {
        pools: memory::hugepage_pools_in(&sys.global),
        nodes,
        mounts: memory::parse_hugetlbfs_mounts(&mounts_text, (default_kb * 1024) as usize),
        default_kb,
        memlock: (ok && lim.rlim_cur != libc::RLIM_INFINITY).then_some(lim.rlim_cur),
    })
}

fn size_name(kb: u64) -> String {
    if kb >= 1 << 20 {
        format!("{}G", kb >> 20)
    } else if kb >= 1024 {
        format!("{}M", kb >> 10)
    } else {
        format!("{kb}K")
    }
}

impl Status {
    /// Human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::from("Hugepages (system):\n");
        if self.pools.is_empty() {
            s.push_str("  none: this kernel has no hugepage support; use --no-huge\n");
        }
        for p in &self.pools {
            let default = if p.size_kb == self.default_kb {
                " (default)"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "  {:>4} pages{default}: {} reserved, {} free",
                size_name(p.size_kb),
                p.total,
                p.free
            );
        }
        for n in &self.nodes {
            for p in &n.pools {
                let _ = writeln!(
                    s,
                    "  node {} {:>4}: {} reserved, {} free",
                    n.node,
                    size_name(p.size_kb),
                    p.total,
                    p.free
                );
            }
        }
        s.push_str("hugetlbfs mounts:\n");
        if self.mounts.is_empty() {
            s.push_str("  none (not needed: the EAL uses memfd; mount one for --huge-dir)\n");
        }
        for m in &self.mounts {
            let _ = writeln!(
                s,
                "  {} (pagesize {})",
                m.path.display(),
                size_name(m.page_size as u64 / 1024)
            );
        }
        match self.memlock {
            None => s.push_str("memlock limit: unlimited\n"),
            Some(b) => {
                let _ = writeln!(
                    s,
                    "memlock limit: {} KiB (raise with `ulimit -l unlimited` for large pools)",
                    b / 1024
                );
            }
        }
        let free: u64 = self.pools.iter().map(|p| p.free * p.size_kb).sum();
        if free == 0 {
            let _ = writeln!(
                s,
                "No free hugepages: reserve some with `pmd-setup reserve 1024`, or run applications with --no-huge"
            );
        }
        s
    }

    /// JSON report (hand-written: a fixed, flat shape).
    #[cfg(test)]
    pub fn to_json(&self) -> String {
        self.to_json_with("")
    }

    /// JSON report with `extra` (already-rendered `"key":value` pairs, comma-separated)
    /// appended to the top-level object.
    pub fn to_json_with(&self, extra: &str) -> String {
        let pool = |p: &HugepagePool| {
            format!(
                "{{\"size_kb\":{},\"total\":{},\"free\":{}}}",
                p.size_kb, p.total, p.free
            )
        };
        let pools: Vec<String> = self.pools.iter().map(pool).collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{{\"node\":{},\"pools\":[{}]}}",
                    n.node,
                    n.pools.iter().map(pool).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        let mounts: Vec<String> = self
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{{\"path\":{},\"page_size\":{}}}",
                    json_str(&m.path.display().to_string()),
                    m.page_size
                )
            })
            .collect();
        format!(
            "{{\"default_page_kb\":{},\"pools\":[{}],\"nodes\":[{}],\"mounts\":[{}],\"memlock_bytes\":{}{}{}}}",
            self.default_kb,
            pools.join(","),
            nodes.join(","),
            mounts.join(","),
            self.memlock.map_or("null".to_string(), |b| b.to_string()),
            if extra.is_empty() { "" } else { "," },
            extra
        )
    }
}

/// A JSON string literal for `s`.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn page_kb_arg(page_size: Option<&str>) -> Result<u64, String> {
    match page_size {
        None => Ok(default_page_kb()),
        Some(p) => memory::parse_size(p)
            .filter(|b| *b >= 1024)
            .map(|b| b as u64 / 1024)
            .ok_or_else(|| format!("invalid page size {p:?}: expected 2M or 1G")),
    }
}

/// Sets the number of reserved pages; returns a report of what the kernel granted.
pub fn reserve(
    sys: &SysPaths,
    amount: Amount,
    page_size: Option<&str>,
    node: Option<u32>,
) -> Result<String, String> {
    let kb = page_kb_arg(page_size)?;
    let base = match node {
        Some(n) => sys.nodes.join(format!("node{n}/hugepages")),
        None => sys.global.clone(),
    };
    let dir = base.join(format!("hugepages-{kb}kB"));
    if !dir.is_dir() {
        let sizes: Vec<String> = memory::hugepage_pools_in(&base)
            .iter()
            .map(|p| size_name(p.size_kb))
            .collect();
        return Err(match node {
            Some(n) if !sys.nodes.join(format!("node{n}")).is_dir() => {
                format!("NUMA node {n} does not exist")
            }
            _ => format!(
                "no {} hugepages on this system (available sizes: {})",
                size_name(kb),
                sizes.join(", ")
            ),
        });
    }
    let want = amount.pages(kb * 1024);
    let file = dir.join("nr_hugepages");
    fs::write(&file, format!("{want}\n")).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (run as root)"
        } else {
            ""
        };
        format!("writing {}: {e}{hint}", file.display())
    })?;
    let got: u64 = fs::read_to_string(&file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let where_ = node.map(|n| format!(" on node {n}")).unwrap_or_default();
    if got < want {
        Err(format!(
            "asked for {want} x {} pages{where_}, the kernel reserved {got} (memory too fragmented or too small; \
             try fewer, or reserve at boot with hugepages={want} on the kernel command line)",
            size_name(kb)
        ))
    } else {
        Ok(format!(
            "{got} x {} hugepages reserved{where_} ({} MiB)",
            size_name(kb),
            got * kb / 1024
        ))
    }
}

/// Mounts hugetlbfs at `dir`.
pub fn mount(dir: &Path, page_size: Option<&str>) -> Result<String, String> {
    let kb = page_kb_arg(page_size)?;
    if memory::hugetlbfs_mounts().iter().any(|m| m.path == dir) {
        return Ok(format!("{} is already a hugetlbfs mount", dir.display()));
    }
    fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let status = std::process::Command::new("mount")
        .args([
            "-t",
            "hugetlbfs",
            "-o",
            &format!("pagesize={}", size_name(kb)),
            "nodev",
        ])
        .arg(dir)
        .status()
        .map_err(|e| format!("running mount: {e}"))?;
    if !status.success() {
        return Err(format!(
            "mount -t hugetlbfs at {} failed (root needed; is the page size supported?)",
            dir.display()
        ));
    }
    Ok(format!(
        "hugetlbfs (pagesize {}) mounted at {}",
        size_name(kb),
        dir.display()
    ))
}

/// Unmounts the hugetlbfs at `dir`.
pub fn unmount(dir: &Path) -> Result<String, String> {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if !memory::hugetlbfs_mounts().iter().any(|m| m.path == canon) {
        return Err(format!("{} is not a hugetlbfs mount", dir.display()));
    }
    let status = std::process::Command::new("umount")
        .arg(&canon)
        .status()
        .map_err(|e| format!("running umount: {e}"))?;
    if !status.success() {
        return Err(format!(
            "umount {} failed (in use by a running application?)",
            canon.display()
        ));
    }
    Ok(format!("unmounted {}", canon.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sys(tag: &str) -> SysPaths {
        let root = std::env::temp_dir().join(format!("hps-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let pool = |dir: PathBuf, total: u32, free: u32| {
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("nr_hugepages"), format!("{total}\n")).unwrap();
            fs::write(dir.join("free_hugepages"), format!("{free}\n")).unwrap();
        };
        pool(root.join("global/hugepages-2048kB"), 8, 3);
        pool(root.join("global/hugepages-1048576kB"), 0, 0);
        pool(root.join("nodes/node0/hugepages/hugepages-2048kB"), 8, 3);
        fs::write(
            root.join("mounts"),
            "nodev /mnt/h hugetlbfs rw,pagesize=2M 0 0\nproc /proc proc rw 0 0\n",
        )
        .unwrap();
        SysPaths {
            global: root.join("global"),
            nodes: root.join("nodes"),
            mounts: root.join("mounts"),
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(Amount::parse("1024"), Ok(Amount::Pages(1024)));
        assert_eq!(Amount::parse("2G"), Ok(Amount::Bytes(2 << 30)));
        assert_eq!(Amount::Bytes(3 << 20).pages(2 << 20), 2);
        assert!(Amount::parse("2X").is_err());
        assert!(Amount::parse("").is_err());
        assert!(Amount::parse("-1").is_err());
        assert!(Amount::parse("+1").is_err());
        assert!(Amount::parse("18446744073709551616").is_err());
    }

    #[test]
    fn status_reads_pools_nodes_and_mounts() {
        let sys = fake_sys("status");
        let s = status(&sys).unwrap();
        assert_eq!(s.pools.len(), 2);
        assert_eq!(
            s.pools[0],
            HugepagePool {
                size_kb: 2048,
                total: 8,
                free: 3
            }
        );
        assert_eq!(s.nodes.len(), 1);
        assert_eq!(s.mounts[0].path, PathBuf::from("/mnt/h"));
        let text = s.to_text();
        assert!(
            text.contains("2M pages") && text.contains("8 reserved, 3 free"),
            "{text}"
        );
        let json = s.to_json();
        assert!(
            json.contains("\"size_kb\":2048,\"total\":8,\"free\":3"),
            "{json}"
        );
        assert!(json.contains("\"path\":\"/mnt/h\""), "{json}");
        let _ = fs::remove_dir_all(sys.global.parent().unwrap());
    }

    #[test]
    fn reserve_writes_the_count_and_reports_shortfalls() {
        let sys = fake_sys("reserve");
        let msg = reserve(&sys, Amount::Pages(16), Some("2M"), None).unwrap();
        assert!(msg.contains("16 x 2M"), "{msg}");
        assert_eq!(
            fs::read_to_string(sys.global.join("hugepages-2048kB/nr_hugepages")).unwrap(),
            "16\n"
        );
        let msg = reserve(&sys, Amount::Bytes(8 << 20), Some("2M"), Some(0)).unwrap();
        assert!(msg.contains("4 x 2M") && msg.contains("node 0"), "{msg}");
        assert!(reserve(&sys, Amount::Pages(1), Some("2M"), Some(7))
            .unwrap_err()
            .contains("node 7 does not exist"));
        let e = reserve(&sys, Amount::Pages(1), Some("16M"), None).unwrap_err();
        assert!(e.contains("no 16M hugepages") && e.contains("2M"), "{e}");
        assert!(reserve(&sys, Amount::Pages(1), Some("x"), None).is_err());
        let _ = fs::remove_dir_all(sys.global.parent().unwrap());
    }

    #[test]
    fn advised_gigabyte_reserve_leaves_the_2m_pool_alone() {
        // What pmd-core's hugepage errors advise for 1 GiB pages: `reserve N --page-size 1G`.
        let sys = fake_sys("reserve1g");
        let msg = reserve(&sys, Amount::parse("7").unwrap(), Some("1G"), None).unwrap();
        assert!(msg.contains("7 x 1G"), "{msg}");
        let nr = |kb: &str| {
            fs::read_to_string(sys.global.join(format!("hugepages-{kb}kB/nr_hugepages"))).unwrap()
        };
        assert_eq!(
            (nr("1048576").as_str(), nr("2048").as_str()),
            ("7\n", "8\n")
        );
        let _ = fs::remove_dir_all(sys.global.parent().unwrap());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
