//! Checks made from where a user stands rather than from inside the workspace: the README's
//! quick start in a fresh crate, a third-party driver that knows only `breaker-core` and the
//! kit, the demo built with no `protoc`, and every publishable crate packaged.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{FACADE, cargo, run};

/// The workspace's root directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

/// Where cargo builds: the caller's `CARGO_TARGET_DIR`, else the workspace's `target`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Cargo in the crate at `dir`, which has a workspace of its own. It starts from the
/// workspace's lock file, so that it resolves the versions CI tested and reuses their build.
fn outside_cargo(dir: &Path) -> Result<Command, String> {
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|e| format!("copying Cargo.lock into {}: {e}", dir.display()))?;
    let mut cmd = cargo();
    cmd.current_dir(dir).env("CARGO_TARGET_DIR", target_dir());
    Ok(cmd)
}

/// The example third-party driver passes the conformance kit from its one test file.
pub(crate) fn third_party_driver() -> Result<(), String> {
    let dir = root().join("examples/third-party-driver");
    run(outside_cargo(&dir)?.args(["test", "--quiet"]))
}

/// The README's quick start, unchanged, in a fresh crate that adds the facade by the name and
/// version the README gives (as a path dependency, since nothing is published), builds and
/// runs.
pub(crate) fn readme_quick_start() -> Result<(), String> {
    let readme = std::fs::read_to_string(root().join("README.md"))
        .map_err(|e| format!("reading README.md: {e}"))?;
    let (dependency, program) = quick_start(&readme)?;
    let facade = root().join("crates").join(FACADE);
    let (name, spec) = dependency
        .split_once('=')
        .ok_or_else(|| format!("README quick start: `{dependency}` is not `NAME = \"VERSION\"`"))?;
    let (name, version) = (name.trim(), spec.trim().trim_matches('"'));
    if name != FACADE {
        return Err(format!(
            "README quick start adds `{name}`, but the facade is `{FACADE}`"
        ));
    }
    let dir = target_dir().join("outside").join("quick-start");
    std::fs::create_dir_all(dir.join("src")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let manifest = format!(
        "[package]\nname = \"quick-start\"\nversion = \"0.0.0\"\nedition = \"2024\"\n\n\
         [workspace]\n\n[dependencies]\n{FACADE} = {{ path = {path:?}, version = \"{version}\" }}\n",
        path = facade.display().to_string(),
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("src/main.rs"), program).map_err(|e| e.to_string())?;
    run(outside_cargo(&dir)?.args(["run", "--quiet"]))
}

/// The dependency line of the README's quick start and its first Rust block.
fn quick_start(readme: &str) -> Result<(String, String), String> {
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .ok_or("README.md has no `## Quick start` section")?;
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = |lang: &str| -> Option<String> {
        let start = section.find(&format!("```{lang}\n"))? + lang.len() + 4;
        let len = section[start..].find("```")?;
        Some(section[start..start + len].to_owned())
    };
    let toml = block("toml").ok_or("README quick start has no ```toml block")?;
    let dependency = toml
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .find(|l| !l.is_empty() && !l.starts_with('['))
        .ok_or("README quick start's toml block adds no dependency")?
        .to_owned();
    let program = block("rust").ok_or("README quick start has no ```rust block")?;
    Ok((dependency, program))
}

/// The README's demo builds with only a Rust toolchain: nothing in its dependency graph needs
/// `protoc` (etcd-client's build script does), proven by building it with a `protoc` that
/// fails.
pub(crate) fn demo_needs_only_rust() -> Result<(), String> {
    let tree = cargo()
        .args([
            "tree",
            "--package",
            "breaker-examples",
            "--edges",
            "normal,build",
            "--invert",
            "etcd-client",
        ])
        .output()
        .map_err(|e| format!("cargo tree: {e}"))?;
    if tree.status.success() {
        return Err(format!(
            "the demo's dependency graph holds etcd-client, whose build needs protoc:\n{}",
            String::from_utf8_lossy(&tree.stdout)
        ));
    }
    run(cargo()
        .args([
            "build",
            "--package",
            "breaker-examples",
            "--example",
            "quickstart",
        ])
        .env("PROTOC", "/bin/false"))
}

/// Every publishable crate packages, in dependency order (cargo resolves unpublished
/// workspace crates among themselves). Not verified by a second build: CI builds once.
pub(crate) fn package() -> Result<(), String> {
    run(cargo()
        .args([
            "package",
            "--workspace",
            "--no-verify",
            "--allow-dirty",
            "--quiet",
        ])
        .args(NOT_PUBLISHED.iter().flat_map(|p| ["--exclude", p])))
}

/// The workspace's packages with `publish = false`.
const NOT_PUBLISHED: &[&str] = &[
    "breaker-examples",
    "breaker-fleet",
    "breaker-benches",
    "xtask",
];

/// The last build whose records are all schema 1 (main before the quorum's schema 2): the
/// old side of the rolling-upgrade test, built from this repository's own history.
const SCHEMA1_COMMIT: &str = "663c60ced004784cf068f139f0fdda545d438e25";

/// Builds the schema-1 build's `breaker-agent` (from [`SCHEMA1_COMMIT`], unpacked with
/// `git archive` into the target directory, with a target directory of its own so that its
/// binaries never overwrite this build's) and returns the binary's path, which the
/// rolling-upgrade test takes from `BREAKER_SCHEMA1_AGENT`.
pub(crate) fn schema1_agent() -> Result<PathBuf, String> {
    let src = target_dir().join("outside").join("schema1");
    let stamp = src.join(".commit");
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(SCHEMA1_COMMIT) {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        let archive = Command::new("git")
            .current_dir(root())
            .args(["archive", "--format=tar", SCHEMA1_COMMIT])
            .output()
            .map_err(|e| format!("could not run git: {e}"))?;
        if !archive.status.success() {
            return Err(format!(
                "the rolling-upgrade test's old build is commit {SCHEMA1_COMMIT} of this \
                 repository, which this clone does not have (a shallow clone?): {}",
                String::from_utf8_lossy(&archive.stderr).trim()
            ));
        }
        let mut tar = Command::new("tar")
            .args(["-x", "-C"])
            .arg(&src)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not run tar: {e}"))?;
        use std::io::Write;
        tar.stdin
            .take()
            .expect("piped")
            .write_all(&archive.stdout)
            .map_err(|e| format!("unpacking the schema-1 build: {e}"))?;
        let status = tar.wait().map_err(|e| format!("tar: {e}"))?;
        if !status.success() {
            return Err(format!("unpacking the schema-1 build failed: {status}"));
        }
        std::fs::write(&stamp, SCHEMA1_COMMIT).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let target = target_dir().join("schema1");
    run(cargo()
        .current_dir(&src)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--locked",
            "-p",
            "breaker-fleet",
            "--bin",
            "breaker-agent",
        ]))?;
    Ok(target.join("debug").join("breaker-agent"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_start_is_found_in_the_readme() {
        let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
        let (dependency, program) = quick_start(&readme).unwrap();
        assert!(dependency.starts_with(FACADE), "{dependency}");
        assert!(program.contains("fn main"), "{program}");
    }
}
