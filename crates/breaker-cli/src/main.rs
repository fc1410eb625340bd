//! `breaker`: the operator CLI. Lists, inspects, trips (force open), disables (force
//! closed), resets and watches the breakers on any back-end, chosen by URL. A forced state written
//! here is obeyed by every running agent.
//!
//! ```text
//! breaker --backend redis://127.0.0.1:6379 list
//! breaker --backend sqlite:///var/lib/app/breakers.db show payments --json
//! breaker --backend etcd://10.0.0.7:2379 trip payments
//! ```

mod dashboard;
mod view;
mod watch;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared_breaker::{Breaker, DynDriver, Name, Policy, SystemClock, Timestamp};
use view::Row;

/// Examples for `--help`.
const EXAMPLES: &str = "Examples:
  breaker --backend redis://127.0.0.1:6379 list
  breaker --backend redis://127.0.0.1:6379 --prefix checkout list
  breaker --backend 'sqlite:///var/lib/app/breakers.db?prefix=checkout' show payments --json
  breaker --backend etcds://user:PASSWORD@10.0.0.7:2379 trip payments
  breaker --backend etcd://10.0.0.7:2379 reset payments     # back to normal
  breaker --backend etcd://10.0.0.7:2379 disable payments   # protection off until a reset
  BREAKER_BACKEND=redis://10.0.0.5:6379 breaker watch --json";

/// Operate the breakers of a back-end.
#[derive(Parser, Debug)]
#[command(name = "breaker", version, after_help = EXAMPLES)]
struct Cli {
    /// The back-end: memory://, sqlite://PATH, redis://[USER:PASSWORD@]HOST:PORT, rediss://...,
    /// redis-cluster://HOST:PORT,..., etcd://[USER:PASSWORD@]HOST:PORT,..., etcds://...;
    /// options in the query (?prefix=checkout). Passwords are never printed.
    #[arg(long, env = "BREAKER_BACKEND", hide_env_values = true)]
    backend: Option<String>,
    /// The agents' key prefix (their `.prefix(..)`), the same as `?prefix=` in the URL:
    /// the breakers under another prefix are not shown.
    #[arg(long, env = "BREAKER_PREFIX", global = true)]
    prefix: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each back-end operation.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration, global = true)]
    timeout: Duration,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every breaker under the back-end's prefix.
    List,
    /// One breaker.
    Show {
        /// The breaker.
        name: String,
    },
    /// Force a breaker open for the whole fleet until `reset` (or `disable`).
    Trip {
        /// The breaker.
        name: String,
    },
    /// Force a breaker closed for the whole fleet: protection off, every call admitted,
    /// nothing trips, until `reset` (or `trip`).
    Disable {
        /// The breaker.
        name: String,
    },
    /// Not a verb: `reset` closes a breaker (back to normal), `disable` turns it off.
    #[command(hide = true)]
    Close {
        /// The breaker.
        name: String,
    },
    /// Reset a breaker to closed with fresh counters, for the whole fleet.
    Reset {
        /// The breaker.
        name: String,
    },
    /// Serve a live page of every breaker and its transitions (read-only unless given a
    /// control token).
    Dashboard {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:9400")]
        listen: std::net::SocketAddr,
        /// Allow trip, disable and reset from the page, to requests that carry this token
        /// (`Authorization: Bearer TOKEN`). Without it the page is read-only.
        #[arg(long, env = "BREAKER_DASHBOARD_TOKEN", hide_env_values = true)]
        control_token: Option<String>,
    },
    /// Print a completion script for `shell` (bash, zsh, fish, elvish, powershell): for
    /// bash, `breaker completions bash > /etc/bash_completion.d/breaker`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print every transition of every breaker as it happens (wall-clock time, breaker,
    /// from -> to, generation, the agent whose write it was), following the back-end's own
    /// push, until interrupted (or `--for` passes).
    Watch {
        /// Stop after this long (default: never).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        duration: Option<Duration>,
        /// How often the clock's transitions are judged (an open period that ends).
        #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
        every: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("breaker: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), String> {
    if let Command::Completions { shell } = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(
            *shell,
            &mut <Cli as clap::CommandFactory>::command(),
            "breaker",
            &mut script,
        );
        emit(&String::from_utf8_lossy(&script));
        return Ok(());
    }
    check_backend(cli)?;
    let url = with_prefix(backend(cli)?, cli.prefix.as_deref())?;
    let driver = shared_breaker::config::open_backend(&url).map_err(|e| e.to_string())?;
    match &cli.command {
        Command::List => {
            let rows = rows(&driver, cli.timeout)?;
            print_rows(cli, &rows);
            Ok(())
        }
        Command::Show { name } => {
            let row = row(&driver, name, cli.timeout)?;
            print_rows(cli, std::slice::from_ref(&row));
            Ok(())
        }
        Command::Trip { name } => operate(cli, &driver, name, Action::Trip),
        Command::Disable { name } => operate(cli, &driver, name, Action::Disable),
        Command::Close { name } => Err(format!(
            "`close` is ambiguous: `breaker reset {name}` closes the breaker (back to normal, \
             fresh counters); `breaker disable {name}` forces it closed (protection off until \
             a reset)"
        )),
        Command::Reset { name } => operate(cli, &driver, name, Action::Reset),
        Command::Completions { .. } => unreachable!("answered above"),
        Command::Dashboard {
            listen,
            control_token,
        } => dashboard::serve(driver, cli.timeout, *listen, control_token.clone()),
        Command::Watch { duration, every } => watch::watch(
            &driver,
            cli.timeout,
            *duration,
            *every,
            &mut watch::print(cli.json),
        ),
    }
}

/// The back-end URL, which every command but `completions` needs.
fn backend(cli: &Cli) -> Result<&str, String> {
    cli.backend
        .as_deref()
        .ok_or_else(|| "give the back-end with --backend URL (or BREAKER_BACKEND)".to_owned())
}

/// The back-end URL with `--prefix` put in its query, where the back-end's own options are
/// read. A prefix given both ways is refused rather than one silently winning.
fn with_prefix(url: &str, prefix: Option<&str>) -> Result<String, String> {
    let Some(prefix) = prefix else {
        return Ok(url.to_owned());
    };
    Name::check(prefix).map_err(|e| format!("--prefix {prefix:?}: {e}"))?;
    let query = url.split_once('?').map(|(_, q)| q);
    if query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("prefix="))) {
        return Err("the prefix is given twice: by --prefix and in the URL's ?prefix=".into());
    }
    let joint = if query.is_some() { '&' } else { '?' };
    Ok(format!("{url}{joint}prefix={prefix}"))
}

/// Refuses what the CLI cannot mean: the memory back-end (another process's memory is out of
/// reach, so it would always look empty), and a SQLite file that does not exist (opening
/// would create it, and a mistyped path would show an empty, healthy fleet).
fn check_backend(cli: &Cli) -> Result<(), String> {
    let url = backend(cli)?;
    if url.starts_with("memory://") {
        return Err(
            "memory:// holds the breakers of one process; the CLI runs in another, so use the \
             back-end the agents share (sqlite://, redis://, etcd://)"
                .into(),
        );
    }
    if let Some(rest) = url.strip_prefix("sqlite://") {
        let path = rest.split_once('?').map_or(rest, |(path, _)| path);
        if !std::path::Path::new(path).exists() {
            return Err(format!(
                "no database at {path}: the agents' SQLite file must exist (nothing was created)"
            ));
        }
    }
    Ok(())
}

/// Writes `text` to standard output. A reader that went away (`breaker list | head -1`) ends
/// the command quietly: there is no one left to tell.
fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("breaker: cannot write the output: {e}");
        std::process::exit(1);
    }
}

fn now(driver: &Arc<dyn DynDriver>, timeout: Duration) -> Timestamp {
    // The back-end's clock where it has one, as the breakers themselves use it.
    futures_executor::block_on(driver.now(timeout))
        .ok()
        .flatten()
        .unwrap_or_else(|| shared_breaker::Clock::now(&SystemClock))
}

fn rows(driver: &Arc<dyn DynDriver>, timeout: Duration) -> Result<Vec<Row>, String> {
    let mut records =
        futures_executor::block_on(driver.list(timeout)).map_err(|e| e.to_string())?;
    records.sort_by_key(|(name, _)| *name);
    let now = now(driver, timeout);
    Ok(records
        .iter()
        .map(|(name, stored)| Row::new(name.as_str(), stored, now, driver.keeps_timers()))
        .collect())
}

fn row(driver: &Arc<dyn DynDriver>, name: &str, timeout: Duration) -> Result<Row, String> {
    let name = Name::new(name).map_err(|e| e.to_string())?;
    let stored = futures_executor::block_on(driver.load(&name, timeout))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no breaker named `{name}` on this back-end"))?;
    Ok(Row::new(
        name.as_str(),
        &stored,
        now(driver, timeout),
        driver.keeps_timers(),
    ))
}

fn print_rows(cli: &Cli, rows: &[Row]) {
    if cli.json {
        emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(rows).expect("rows serialise")
        ));
    } else {
        emit(&view::table(rows));
    }
}

#[derive(Clone, Copy)]
enum Action {
    Trip,
    Disable,
    Reset,
}

fn operate(
    cli: &Cli,
    driver: &Arc<dyn DynDriver>,
    name: &str,
    action: Action,
) -> Result<(), String> {
    let row = operate_on(driver, name, action, cli.timeout)?;
    print_rows(cli, std::slice::from_ref(&row));
    Ok(())
}

/// Makes an operator's `action` on the breaker `name` (which must exist: a typo must not
/// create a new, forced breaker) and returns its row after it.
fn operate_on(
    driver: &Arc<dyn DynDriver>,
    name: &str,
    action: Action,
    timeout: Duration,
) -> Result<Row, String> {
    row(driver, name, timeout)?;
    let policy = Policy::builder()
        .backend_timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let breaker = Breaker::builder_dyn(name, driver.clone())
        .policy(policy)
        .build()
        .map_err(|e| e.to_string())?;
    let done = futures_executor::block_on(async {
        match action {
            Action::Trip => breaker.force_open().await,
            Action::Disable => breaker.force_closed().await,
            Action::Reset => breaker.reset().await,
        }
    });
    done.map_err(|e| e.to_string())?;
    row(driver, name, timeout)
}
