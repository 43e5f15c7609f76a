//! Embeds the built page (trunk's `dist/`, or `HUBBUB_PAGE_DIR`) into the `hubbub` binary, so
//! that copying the binary is enough to deploy. Without a built page the list is empty and the
//! hub serves `--static-dir` (or says the page is missing); `make dist` builds the page first.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

fn main() {
    println!("cargo:rerun-if-env-changed=HUBBUB_PAGE_DIR");
    let dir = env::var_os("HUBBUB_PAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("../dist"));
    // a folder: cargo looks at every file in it, so a new page build embeds again
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    if dir.join("index.html").is_file() {
        collect(&dir, &dir, &mut files);
    }
    files.sort();
    let entries: String =
        files.iter().map(|(name, path)| format!("    ({name:?}, include_bytes!({path:?})),\n")).collect();
    let code = format!(
        "/// The page built into this binary: (path, bytes); empty when none was built.\npub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n{entries}];\n"
    );
    fs::write(Path::new(&env::var("OUT_DIR").unwrap()).join("embedded_page.rs"), code).unwrap();
}

/// Every file under `dir`, as (path relative to `root` with `/`, absolute path).
fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, out);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            let absolute = fs::canonicalize(&path).unwrap_or(path);
            out.push((name, absolute.to_string_lossy().into_owned()));
        }
    }
}
