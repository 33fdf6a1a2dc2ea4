//! The repository's files the tests read, and generated `orders` text.

use std::path::{Path, PathBuf};

/// A path of the repository (this crate is one level below its root).
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Read a file of the repository's `data/` directory.
pub fn data(path: &str) -> Vec<u8> {
    std::fs::read(repo("data").join(path)).unwrap_or_else(|e| panic!("data/{path}: {e}"))
}

/// `orders` text with `n` good lines.
pub fn orders(n: u64, seed: u64) -> Vec<u8> {
    let mut buf = Vec::new();
    let spec = crate::generate::Spec {
        shape: Default::default(),
        lines: Some(n),
        bytes: None,
        bad_every: 0,
        seed,
    };
    crate::generate::orders(&mut buf, spec).expect("writing to memory");
    buf
}
