//! The file:// check: the path exists (a dangling symlink counts, as
//! `test -L` would). It must not open or read the file.

use std::path::Path;

use super::Failure;

pub(super) fn run(path: &Path) -> Result<String, Failure> {
    std::fs::symlink_metadata(path)
        .map(|_| format!("{} exists", path.display()))
        .map_err(|e| Failure::Error(format!("{}: {e}", path.display())))
}
