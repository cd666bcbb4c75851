//! DPDK's runtime directory, where an app's sockets live (telemetry, capture): one
//! scheme for every file a running app shares with the tools that watch it.

use std::path::PathBuf;

/// DPDK's runtime directory for `file_prefix`: `/var/run/dpdk/<prefix>` for root, else
/// `$XDG_RUNTIME_DIR/dpdk/<prefix>` (or `/tmp/dpdk/<prefix>`); `RUNTIME_DIRECTORY`
/// replaces the part before `dpdk` when set, as in DPDK's EAL.
pub fn runtime_dir(file_prefix: &str) -> PathBuf {
    let base = std::env::var_os("RUNTIME_DIRECTORY")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            if crate::pci::is_root() {
                PathBuf::from("/var/run")
            } else {
                std::env::var_os("XDG_RUNTIME_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| PathBuf::from("/tmp"))
            }
        });
    base.join("dpdk").join(file_prefix)
}
