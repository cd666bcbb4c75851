//! A private temporary directory per test, removed with its contents on drop.

use crate::unique;
use std::path::{Path, PathBuf};

/// A fresh empty directory under the system's temporary directory, named
/// [`unique`]`(prefix)`, removed with everything in it on drop (also when the test panics).
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory. Panics if it cannot (a test set-up failure).
    pub fn new(prefix: &str) -> TempDir {
        let d = std::env::temp_dir().join(unique(prefix));
        std::fs::create_dir(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        TempDir(d)
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The names of the entries in the directory.
    pub fn entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
