//! Records of the driver each device had before `bind`, so `unbind` can give it back:
//! one small file per device under `/run/pmd-rs/bind` (gone after a reboot, like the
//! bindings themselves).

use crate::bind::BindOutcome;
use crate::error::SetupError;
use pmd_core::pci::{PciAddr, SysfsRoot};
use std::fs;
use std::io;
use std::path::PathBuf;

/// Result of the operations here.
type Result<T, E = SetupError> = std::result::Result<T, E>;

/// What a device was bound to before we took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRecord {
    /// The device.
    pub addr: PciAddr,
    /// Its driver before the first bind we did (None: it had none).
    pub original: Option<String>,
    /// The driver we bound it to.
    pub target: String,
}

/// Bind records, one file per device (`<dir>/<addr>` holding `original=` and `target=`
/// lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindStore {
    dir: PathBuf,
}

impl BindStore {
    /// Where the live system keeps records (gone after a reboot, like the bindings).
    pub const DEFAULT_DIR: &'static str = "/run/pmd-rs/bind";

    /// A store in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> BindStore {
        BindStore { dir: dir.into() }
    }

    /// The store at `<root>/run/pmd-rs/bind` (the default one for the real root).
    pub fn under(root: &SysfsRoot) -> BindStore {
        BindStore::at(root.join(Self::DEFAULT_DIR.trim_start_matches('/')))
    }

    /// The store's directory (for tests; the commands go through [`BindStore::load`] and
    /// friends).
    #[cfg(test)]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn file(&self, addr: PciAddr) -> PathBuf {
        self.dir.join(addr.to_string())
    }

    /// The record for `addr`, if there is one.
    pub fn load(&self, addr: PciAddr) -> Result<Option<BindRecord>> {
        let path = self.file(addr);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SetupError::io(format!("reading {}", path.display()), e)),
        };
        let field = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .map(str::trim)
        };
        match (field("original"), field("target")) {
            (Some(o), Some(t)) if !t.is_empty() => Ok(Some(BindRecord {
                addr,
                original: (!o.is_empty()).then(|| o.to_string()),
                target: t.to_string(),
            })),
            _ => Err(SetupError::CorruptRecord { path }),
        }
    }

    /// Writes `rec`, replacing any record for the same device.
    pub fn save(&self, rec: &BindRecord) -> Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| SetupError::io(format!("creating {}", self.dir.display()), e))?;
        let path = self.file(rec.addr);
        let text = format!(
            "original={}\ntarget={}\n",
            rec.original.as_deref().unwrap_or(""),
            rec.target
        );
        fs::write(&path, text).map_err(|e| SetupError::io(format!("writing {}", path.display()), e))
    }

    /// Deletes the record for `addr` (no error if there is none).
    pub fn remove(&self, addr: PciAddr) -> Result<()> {
        let path = self.file(addr);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(SetupError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }

    /// Records a bind of `addr` to `target` that found the device on `outcome.previous`.
    /// An existing record keeps its original driver, so a chain of binds still restores the
    /// driver the device had before the first one. Returns the record now stored.
    pub fn note_bind(
        &self,
        addr: PciAddr,
        outcome: &BindOutcome,
        target: &str,
    ) -> Result<BindRecord> {
        let original = match self.load(addr)? {
            Some(r) => r.original,
            None => outcome.previous.clone(),
        };
        let rec = BindRecord {
            addr,
            original,
            target: target.to_string(),
        };
        self.save(&rec)?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bind::{bind_with, restore_with, FakeKernel};
    use crate::testtree::*;

    #[test]
    fn record_and_restore_roundtrip() {
        let (t, net) = setup("restore");
        let store = BindStore::under(&t.root);
        assert_eq!(store.dir(), t.root.join("run/pmd-rs/bind"));
        let addr = a("0000:00:03.0");
        assert_eq!(store.load(addr).unwrap(), None);
        let mut k = FakeKernel::new(&t.root);
        let out = bind_with(&t.root, &net, addr, "vfio-pci", false, &mut k).unwrap();
        let rec = store.note_bind(addr, &out, "vfio-pci").unwrap();
        assert_eq!(rec.original.as_deref(), Some("e1000"));
        // A second bind keeps the first original driver.
        let out = bind_with(&t.root, &net, addr, "uio_pci_generic", false, &mut k).unwrap();
        assert_eq!(out.previous.as_deref(), Some("vfio-pci"));
        store.note_bind(addr, &out, "uio_pci_generic").unwrap();
        let rec = store.load(addr).unwrap().unwrap();
        assert_eq!(
            rec,
            BindRecord {
                addr,
                original: Some("e1000".into()),
                target: "uio_pci_generic".into()
            }
        );

        k.log.clear();
        restore_with(&t.root, addr, rec.original.as_deref(), &mut k).unwrap();
        assert_eq!(
            rel(&t, &k.log),
            [
                pair("sys/bus/pci/devices/0000:00:03.0/driver_override", "\n"),
                pair("sys/bus/pci/drivers/uio_pci_generic/unbind", "0000:00:03.0"),
                pair("sys/bus/pci/drivers/e1000/bind", "0000:00:03.0"),
            ]
        );
        assert_eq!(driver_of(&t, "0000:00:03.0").as_deref(), Some("e1000"));
        store.remove(addr).unwrap();
        store.remove(addr).unwrap();
        assert_eq!(store.load(addr).unwrap(), None);

        // A device that had no driver goes back to none.
        t.nic("0000:00:04.0", None, &[]);
        let out = bind_with(&t.root, &net, a("00:04.0"), "vfio-pci", false, &mut k).unwrap();
        let rec = store.note_bind(a("00:04.0"), &out, "vfio-pci").unwrap();
        assert_eq!(store.load(a("00:04.0")).unwrap(), Some(rec.clone()));
        restore_with(&t.root, a("00:04.0"), rec.original.as_deref(), &mut k).unwrap();
        assert_eq!(driver_of(&t, "0000:00:04.0"), None);
    }

    #[test]
    fn corrupt_record_is_an_error() {
        let t = Tree::new("corrupt");
        let store = BindStore::under(&t.root);
        fs::create_dir_all(store.dir()).unwrap();
        fs::write(store.dir().join("0000:00:03.0"), "garbage").unwrap();
        let e = store.load(a("0000:00:03.0")).unwrap_err().to_string();
        assert!(e.contains("corrupt bind record"), "{e}");
    }
}
