//! Embeds the built page (trunk's `dist/`, or `HUBBUB_PAGE_DIR`) into the `hubbub` binary, so
//! that copying the binary is enough to deploy. Without a built page the list is empty and the
//! hub serves `--static-dir` (or says the page is missing); `make dist` builds the page first.

#[path = "src/net/page_files.rs"]
mod page_files;

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
    let mut files = if dir.join("index.html").is_file() { page_files::files_under(&dir) } else { Vec::new() };
    files.sort();
    let entries: String = files
        .iter()
        .map(|(name, path)| {
            let absolute = fs::canonicalize(path).unwrap_or_else(|_| path.clone());
            format!("    ({name:?}, include_bytes!({absolute:?})),\n")
        })
        .collect();
    let code = format!(
        "/// The page built into this binary: (path, bytes); empty when none was built.\npub(crate) static EMBEDDED: &[(&str, &[u8])] = &[\n{entries}];\n"
    );
    fs::write(Path::new(&env::var("OUT_DIR").unwrap()).join("embedded_page.rs"), code).unwrap();
}
