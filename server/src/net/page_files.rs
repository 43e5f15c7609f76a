//! The files of a built page: shared by `build.rs` (which embeds them) and `page.rs` (which
//! reads them from `--static-dir`), so both name them the same way. Uses nothing of the crate.

use std::path::{Path, PathBuf};

/// Every file under `root`, as (its path relative to `root` with `/` between the parts, its
/// path on disk), in no particular order.
pub(crate) fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    collect(root, root, &mut out);
    out
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            out.push((name, path));
        }
    }
}
