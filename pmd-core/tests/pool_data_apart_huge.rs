//! `mempool::keep_data_apart` under `--huge-dir` (hugepages as files in a hugetlbfs mount,
//! as `ci/bench` runs): the headers stay in a hugetlbfs file, while the data rooms a
//! memif zero-copy client shares go into a hugetlb memfd sealed against resizing (a
//! hugetlbfs file takes no seals: a peer could truncate it under us). Needs root, the
//! hugetlbfs mount `ci/setup.sh` makes and 8 free hugepages. Its own binary: the memory
//! configuration and the switch are process-wide.

use pmd_core::memory::{self, MemoryConfig};
use pmd_core::mempool::{keep_data_apart, MempoolConfig};
use pmd_core::Mempool;
use pmd_testkit::dpdk::HUGE_DIR;
use std::os::fd::AsFd;

#[test]
fn shared_data_rooms_are_sealed_memfds_under_huge_dir() {
    let why = pmd_testkit::root_missing("hugepages")
        .or_else(|| pmd_testkit::hugetlbfs_missing(HUGE_DIR))
        .or_else(|| pmd_testkit::hugepages_missing(8));
    if !pmd_testkit::require("shared_data_rooms_are_sealed_memfds_under_huge_dir", why) {
        return;
    }
    memory::configure(MemoryConfig {
        no_huge: false,
        huge_dir: Some(HUGE_DIR.into()),
        file_prefix: format!("pmdapart{}", std::process::id()),
        ..MemoryConfig::default()
    });
    keep_data_apart();
    let p = Mempool::create_with(
        "apart-huge",
        &MempoolConfig {
            size: 512,
            cache_size: 0,
            buf_size: 2176,
        },
    )
    .expect("pool");
    let hdrs = p.segment();
    let data = p.data_segment().expect("a data segment");
    assert!(hdrs.is_huge() && data.is_huge(), "both on hugepages");
    // The headers: a file in the mount (already unlinked), unsealed (a hugetlbfs file
    // that is not a memfd is born with F_SEAL_SEAL: it takes none).
    let hs = pmd_core::unix::memfd::seals(hdrs.fd().as_fd()).unwrap_or(0);
    assert_eq!(hs & libc::F_SEAL_SHRINK, 0, "seals {hs:#x}");
    // The data rooms: a memfd, sealed.
    let seals = pmd_core::unix::memfd::seals(data.fd().as_fd()).expect("a memfd");
    assert_ne!(seals & libc::F_SEAL_SHRINK, 0);
    let m = p.alloc().expect("buffer");
    let at = m.data().as_ptr() as usize;
    let base = data.as_ptr() as usize;
    assert!(
        at >= base && at < base + data.len(),
        "buffer bytes in the data segment"
    );
    drop(m);
    drop(p);
    // Nothing left in the mount under our prefix.
    let left = std::fs::read_dir(HUGE_DIR)
        .expect("mount")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("pmdapart{}", std::process::id()))
        })
        .count();
    assert_eq!(left, 0);
}
