//! `cargo xtask`: the project's own commands, with no dependencies beyond std.
//!
//! - `cargo xtask test`: every test of the workspace (nextest, then doc tests), then the
//!   crates that stand outside it as a user's would (the README's quick start, an example
//!   third-party driver), installing first what is missing: the servers and tools the tests
//!   start (with apt) and cargo-nextest;
//! - `cargo xtask lint` (or just `cargo xtask`): fmt, clippy with `-D warnings`, docs (all
//!   features, and the facade's defaults as docs.rs builds them), each facade feature alone,
//!   the demo built with a `protoc` that fails, and every publishable crate packaged;
//! - `cargo xtask ci`: lint, then test;
//! - `cargo xtask bench [local|scale|backends]`: the benchmarks (figures in BENCHMARKS.md);
//! - `cargo xtask coverage`: a line-coverage report (installs cargo-tarpaulin if missing);
//! - `cargo xtask mutants`: mutation testing of breaker-core (installs cargo-mutants).

mod outside;
mod tidy;

use std::process::{Command, ExitCode};

/// The facade crate's package name (`breaker` on crates.io is another project's).
const FACADE: &str = "shared-breaker";

/// Features of the facade crate, each of which must build on its own.
const FACADE_FEATURES: &[&str] = &[
    "memory", "sqlite", "redis", "etcd", "config", "tower", "metrics", "tracing",
];

/// Packages that hold no tests; they are left out of test runs so that CI does not build
/// the benchmark-only dependencies.
const NOT_TESTED: &[&str] = &["breaker-benches"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((task, rest)) => (task.as_str(), rest),
        None => ("lint", &[][..]),
    };
    let result = match task {
        "test" => test(rest),
        "lint" => lint(),
        "ci" => lint().and_then(|()| test(rest)),
        "bench" => bench(rest),
        "coverage" => coverage(),
        "mutants" => mutants(rest),
        "help" | "--help" | "-h" => {
            println!("{}", HELP);
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

const HELP: &str = "usage: cargo xtask <task>
  test      run every test (nextest, then doc tests, then the crates outside the
            workspace); extra args go to nextest
  lint      fmt, clippy -D warnings, docs, each facade feature alone, the demo without
            protoc, packaging (the default task)
  ci        lint, then test
  bench     run the benchmarks: `bench local [criterion args]`, `bench scale [1 1000
            10000 100000]`, `bench backends [sqlite
            redis etcd clock failure]`, or both
  coverage  line coverage of the workspace (cargo-tarpaulin)
  mutants   mutation testing of breaker-core's machine, record, policy, hot path and shared
            view against the tests of core and the memory driver (cargo-mutants, configured
            in .cargo/mutants.toml); extra args go to cargo-mutants (`-f FILE`, `--list`)";

pub(crate) fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

pub(crate) fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("could not start {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

/// Installs the cargo subcommand `subcommand` from crate `krate` unless it answers already.
fn ensure_installed(subcommand: &str, krate: &str) -> Result<(), String> {
    let installed = cargo()
        .args([subcommand, "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        Ok(())
    } else {
        run(cargo().args(["install", krate, "--locked"]))
    }
}

fn excluded() -> impl Iterator<Item = String> {
    NOT_TESTED
        .iter()
        .flat_map(|p| ["--exclude".to_owned(), (*p).to_owned()])
}

/// What the build and the tests need from the system, each with the Debian package that
/// provides it.
enum Need {
    /// A command on `PATH`.
    Command(&'static str),
    /// A file at this absolute path.
    File(&'static str),
}

/// The servers the tests start, the tools they call, and what etcd-client's build script
/// compiles with: `protoc` and the well-known `.proto` files it imports, which Debian ships
/// apart from the compiler (and which `--no-install-recommends` leaves out).
const SYSTEM_NEEDS: &[(Need, &str)] = &[
    (Need::Command("redis-server"), "redis-server"),
    (Need::Command("redis-cli"), "redis-tools"),
    (Need::Command("etcd"), "etcd-server"),
    (Need::Command("openssl"), "openssl"),
    (Need::Command("promtool"), "prometheus"),
    (Need::Command("chromium"), "chromium"),
    (Need::Command("protoc"), "protobuf-compiler"),
    (
        Need::File("/usr/include/google/protobuf/descriptor.proto"),
        "libprotobuf-dev",
    ),
];

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
}

impl Need {
    fn met(&self) -> bool {
        match self {
            Need::Command(command) => on_path(command),
            Need::File(path) => std::path::Path::new(path).is_file(),
        }
    }
}

/// Installs the servers and tools the tests start, with apt, when some are missing: on a
/// fresh Debian machine `cargo xtask test` does all the set-up itself.
fn ensure_system_tools() -> Result<(), String> {
    let missing: Vec<&str> = SYSTEM_NEEDS
        .iter()
        .filter(|(need, _)| !need.met())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        return Err(format!(
            "the tests need these packages, and there is no apt-get to install them: {}",
            missing.join(" ")
        ));
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    run(install.args(&missing))
}

fn test(extra: &[String]) -> Result<(), String> {
    ensure_system_tools()?;
    ensure_installed("nextest", "cargo-nextest")?;
    let schema1 = outside::schema1_agent()?;
    run(cargo()
        .env("BREAKER_SCHEMA1_AGENT", schema1)
        .args([
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ])
        .args(excluded())
        .args(extra))?;
    run(cargo()
        .args(["test", "--doc", "--workspace", "--all-features"])
        .args(excluded()))?;
    outside::third_party_driver()?;
    outside::readme_quick_start()
}

fn lint() -> Result<(), String> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    run(cargo()
        .args(["doc", "--workspace", "--no-deps", "--all-features"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    // What a reader of the default build's docs sees: no link may point at a feature that
    // is off.
    run(cargo()
        .args(["doc", "--package", FACADE, "--no-deps"])
        .env("RUSTDOCFLAGS", "-D warnings"))?;
    run(cargo().args(["check", "--package", FACADE, "--no-default-features"]))?;
    for feature in FACADE_FEATURES {
        run(cargo().args([
            "check",
            "--package",
            FACADE,
            "--no-default-features",
            "--features",
            feature,
        ]))?;
    }
    outside::demo_needs_only_rust()?;
    outside::package()
}

/// `bench` runs every suite; `bench local [criterion args]`, `bench scale [breaker counts]`
/// (in one process, then over Redis and across agent processes) or `bench backends
/// [sections]` one of them.
fn bench(args: &[String]) -> Result<(), String> {
    let (which, extra) = match args.split_first() {
        Some((w, rest)) if ["local", "scale", "backends"].contains(&w.as_str()) => {
            (w.as_str(), rest)
        }
        _ => ("all", args),
    };
    let run_bench = |package: &str, bench: &str, args: &[String]| {
        run(cargo()
            .args(["bench", "--package", package, "--bench", bench, "--"])
            .args(args))
    };
    if which == "local" || which == "all" {
        run_bench("breaker-benches", "local", extra)?;
    }
    if which == "scale" || which == "all" {
        // Times and heap in two processes: counting every allocation would be timed too.
        for bench in ["scale", "scale_memory"] {
            run_bench(
                "breaker-benches",
                bench,
                if which == "scale" { extra } else { &[] },
            )?;
        }
    }
    if which == "scale" {
        // Many breakers over Redis and a fleet of agent processes; `bench backends` (and so
        // `bench` alone) runs it among the other back-end sections.
        run_bench("breaker-fleet", "backends", &["scale".to_owned()])?;
    }
    if which == "backends" || which == "all" {
        run_bench(
            "breaker-fleet",
            "backends",
            if which == "backends" { extra } else { &[] },
        )?;
    }
    Ok(())
}

fn mutants(extra: &[String]) -> Result<(), String> {
    ensure_installed("mutants", "cargo-mutants")?;
    ensure_installed("nextest", "cargo-nextest")?;
    run(cargo()
        .args(["mutants", "--package", "breaker-core"])
        .args(extra))
}

fn coverage() -> Result<(), String> {
    ensure_installed("tarpaulin", "cargo-tarpaulin")?;
    run(cargo()
        .args([
            "tarpaulin",
            "--workspace",
            "--all-features",
            "--skip-clean",
            "--engine",
            "ptrace",
            "--out",
            "Stdout",
            "--exclude",
            "xtask",
        ])
        .args(excluded()))
}
