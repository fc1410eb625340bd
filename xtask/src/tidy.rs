//! `tidy`: checks of the house style that a test can make, run by `cargo xtask test`.

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    fn workspace_files() -> Vec<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for dir in ["crates", "testing", "examples", "xtask", "benches"] {
            rust_files(&root.join(dir), &mut files);
        }
        assert!(files.len() > 10, "found only {files:?}");
        files
    }

    /// Every file says what it holds in a `//!` line at its top.
    #[test]
    fn every_file_starts_with_a_module_doc() {
        let missing: Vec<_> = workspace_files()
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                !text.trim_start().starts_with("//!")
            })
            .collect();
        assert!(
            missing.is_empty(),
            "files without a `//!` header: {missing:?}"
        );
    }

    /// No stub is left behind.
    #[test]
    fn no_stubs() {
        let stubs: Vec<_> = workspace_files()
            .into_iter()
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                let (todo, unimplemented) = (concat!("todo", "!("), concat!("unimplemented", "!("));
                text.contains(todo) || text.contains(unimplemented)
            })
            .collect();
        assert!(stubs.is_empty(), "stubs left in: {stubs:?}");
    }

    /// The README shows the third-party driver's test file as it is: that file is compiled
    /// and run by `cargo xtask test`, so the README's copy cannot rot unnoticed.
    #[test]
    fn the_readme_shows_the_third_party_kit_test_as_it_is() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let file =
            std::fs::read_to_string(root.join("examples/third-party-driver/tests/conformance.rs"))
                .unwrap();
        assert!(
            readme.contains(&format!("```rust,ignore\n{file}```")),
            "README.md's copy of examples/third-party-driver/tests/conformance.rs differs"
        );
    }
}
