//! The command line: `serve`, `config show`, `check`, `rotate-secrets-key`,
//! `rotate-code-hash-key` and `new-connector`. `serve`'s flags may also come from a TOML file
//! (`--config`, [`config_file`]).

use std::collections::BTreeSet;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

pub mod config_file;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::api_keys::parse_key_list;
use crate::live::plugin_watcher::PluginWatchMode;
use crate::log_output::{EscapingWriter, LogFormat};
use crate::phone::PhoneValidation;
use crate::plugins::loader::PluginLoader;
use crate::send::executor::SendExecutorConfig;
use crate::send::provider_networks::ProviderNetworks;
use crate::send::SendLimits;
use crate::state::{AppState, ServeConfig, StartupError};
use crate::store::code_hash_key_rotation::{
    rotate_code_hash_key, CodeHashRotationStep, CodeHashRotationTarget,
};
use crate::store::key_rotation::{rotate_secrets_key, KeyCommandError, RotationTarget};
use crate::verification_code::CodePolicy;

#[derive(Debug, Parser)]
#[command(
    name = "connector-host",
    version,
    about = "Loads SMS connector plugins and serves Logto's connector API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as text (control characters in values escaped) or one JSON object per line.
    #[arg(long, global = true, env = "CONNECTOR_HOST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the plugins folder and serve the HTTP API.
    // Boxed: `serve`'s many flags would make every variant as large as it.
    Serve(Box<ServeArgs>),
    /// The configuration `serve` would run with.
    Config(ConfigArgs),
    /// Load one plugin file as `serve` would and print its metadata or why it is refused.
    Check(CheckArgs),
    /// Seal every saved connector config again under a new secrets key, in one transaction,
    /// and keep only the new key in the key file. With the embedded store, stop the host
    /// first; with PostgreSQL, copy the new key file to every host and restart them.
    RotateSecretsKey(RotateSecretsKeyArgs),
    /// Replace the code-hash key in three steps, one per run, without refusing a code: stage a
    /// new key (verifies only), promote it (issues), finish (drop the old key, after the code
    /// TTL). After each run, copy the key file to every host and restart them one by one.
    RotateCodeHashKey(RotateCodeHashKeyArgs),
    /// Create a connector crate (a vendor's plugin) that builds as it is once plugin-api's
    /// registry is set: `Cargo.toml` (plugin-api from the `connector-host` registry),
    /// `.cargo/config.toml` (its index), `src/lib.rs`, README, config template and a
    /// conformance test.
    NewConnector(NewConnectorArgs),
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `serve` with the same flags, environment and
    /// `--config` file, as TOML `--config` takes, each value with where it came from; secrets
    /// masked.
    Show(Box<ServeArgs>),
}

#[derive(Debug, Args)]
pub struct NewConnectorArgs {
    /// The crate name and factory id: lowercase letters, digits and dashes (e.g. `acme-sms`).
    pub name: String,
    /// The folder to create the crate's folder in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The `connector-host` registry's index URL, written to the crate's `.cargo/config.toml`
    /// (default: a placeholder to replace). plugin-api comes from that registry by version.
    #[arg(long, value_name = "URL", conflicts_with = "plugin_api")]
    pub registry_index: Option<String>,
    /// Depend on the plugin-api source in this folder instead (a checkout of an unreleased
    /// host), by path.
    #[arg(long, value_name = "DIR")]
    pub plugin_api: Option<PathBuf>,
}

/// Where a key command finds the store: the data directory's, or a shared database.
#[derive(Debug, Args)]
pub struct KeyCommandStoreArgs {
    /// Data directory (the embedded store and its key files).
    #[arg(long, env = "CONNECTOR_HOST_DATA", default_value = "data")]
    pub data: PathBuf,
    /// PostgreSQL shared by several hosts; default: SQLite in the data directory.
    #[arg(long, env = "CONNECTOR_HOST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// A file holding the database password (made 0600), as for `serve`: keeps it out of argv.
    #[arg(
        long,
        env = "CONNECTOR_HOST_DATABASE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub database_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RotateSecretsKeyArgs {
    #[command(flatten)]
    pub store: KeyCommandStoreArgs,
    /// The key file (required with `--database-url`; default: `<data>/secrets-key`).
    #[arg(long, env = "CONNECTOR_HOST_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RotateCodeHashKeyArgs {
    #[command(flatten)]
    pub store: KeyCommandStoreArgs,
    /// The key file (required with `--database-url`; default: `<data>/code-hash-key`).
    #[arg(long, env = "CONNECTOR_HOST_CODE_HASH_KEY_FILE")]
    pub code_hash_key_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file of these flags, each key named like its flag (`max-in-flight = 512`); a flag
    /// on the command line, then its environment variable, win over the file. Example:
    /// deploy/connector-host.toml.
    #[arg(long, env = "CONNECTOR_HOST_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder of connector plugin files (`*.so`). Default: `<data>/plugins`.
    #[arg(long, env = "CONNECTOR_HOST_PLUGINS")]
    pub plugins: Option<PathBuf>,
    /// Data directory: the embedded store and private copies of loaded plugins.
    #[arg(long, env = "CONNECTOR_HOST_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, env = "CONNECTOR_HOST_LISTEN", default_value = "127.0.0.1:3001")]
    pub listen: SocketAddr,
    /// Admin API keys, comma-separated: every /api route. Without one, a key is generated on
    /// first start, kept in `<data>/admin-key` (mode 0600) and printed once.
    #[arg(long, env = "CONNECTOR_HOST_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// Send API keys, comma-separated: only the sending routes.
    #[arg(long, env = "CONNECTOR_HOST_SEND_KEY", hide_env_values = true)]
    pub send_key: Option<String>,
    /// File of admin API keys (comma- or newline-separated), so no key is on the command
    /// line; with `--admin-key`, both lists are accepted. Owned by the host's user, not
    /// writable by others; tightened to 0600.
    #[arg(long, env = "CONNECTOR_HOST_ADMIN_KEY_FILE", value_name = "FILE")]
    pub admin_key_file: Option<PathBuf>,
    /// File of send API keys, as `--admin-key-file`.
    #[arg(long, env = "CONNECTOR_HOST_SEND_KEY_FILE", value_name = "FILE")]
    pub send_key_file: Option<PathBuf>,
    /// Which addresses SMS providers may be at: `any` (whatever a config names), or
    /// `public-only` (loopback, private, link-local, CGNAT, multicast, documentation and
    /// other non-public addresses refused, checked after DNS resolution).
    #[arg(long, env = "CONNECTOR_HOST_PROVIDER_NETWORKS", value_enum, default_value_t = ProviderNetworks::Any)]
    pub provider_networks: ProviderNetworks,
    /// The URL providers reach this host at (`https://sms.example.com`), as they see it: the
    /// base of every delivery-report URL the host hands to a connector
    /// (`{url}/dlr/{connectorId}?m=..&t=..`). Signatures (Twilio's) cover that URL, so behind
    /// a proxy give the proxy's address; `X-Forwarded-*` is never trusted. Without it, no
    /// delivery reports are asked for.
    #[arg(long, env = "CONNECTOR_HOST_PUBLIC_URL", value_name = "URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,
    /// `on`: every send is written to the message log (`GET /api/messages`) and, with
    /// `--public-url`, asks for delivery reports. `off`: nothing is logged (a send still gets
    /// its `messageId`), no report is asked for. `auto`: on when `--public-url` is set. The
    /// log costs a send two store writes (BENCHMARKS.md), nothing next to a provider's round
    /// trip but much on a host that sends without one.
    #[arg(long, env = "CONNECTOR_HOST_MESSAGE_LOG", value_enum, default_value_t = MessageLogArg::Auto)]
    pub message_log: MessageLogArg,
    /// How long the message log keeps each send and its delivery reports, in days.
    #[arg(long, env = "CONNECTOR_HOST_MESSAGE_RETENTION_DAYS", default_value_t = 7, value_parser = clap::value_parser!(u64).range(1..=365))]
    pub message_retention_days: u64,
    /// Consecutive failures of the live connector whose provider took nothing (unreachable,
    /// credentials refused, throttled, 503) after which sends skip it for the standby
    /// connector for `--fallback-cool-off-secs`; then one send probes it. Only with a standby
    /// marked (`POST /api/connectors/{id}/fallback`).
    #[arg(long, env = "CONNECTOR_HOST_FALLBACK_AFTER_FAILURES", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub fallback_after_failures: u32,
    /// How long sends skip a failing live connector for the standby, in seconds.
    #[arg(long, env = "CONNECTOR_HOST_FALLBACK_COOL_OFF_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub fallback_cool_off_secs: u64,
    /// Timeout of each HTTP request to an SMS provider, in seconds.
    #[arg(long, env = "CONNECTOR_HOST_REQUEST_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub request_timeout_secs: u64,
    /// How long a verification code stays valid, in seconds.
    #[arg(long, env = "CONNECTOR_HOST_CODE_TTL", default_value_t = 600, value_parser = clap::value_parser!(u64).range(5..=3600))]
    pub code_ttl_secs: u64,
    /// Wrong attempts before a code is locked.
    #[arg(long, env = "CONNECTOR_HOST_CODE_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub code_max_attempts: u32,
    /// Successful sends allowed per recipient per window.
    #[arg(long, env = "CONNECTOR_HOST_MAX_SENDS_PER_RECIPIENT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sends_per_recipient: u32,
    /// The per-recipient window, in seconds.
    #[arg(long, env = "CONNECTOR_HOST_SEND_WINDOW", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub send_window_secs: u64,
    /// Seconds between two codes of the same type to the same recipient (0 turns it off).
    #[arg(long, env = "CONNECTOR_HOST_RESEND_COOLDOWN", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub resend_cooldown_secs: u64,
    /// ISO 3166 region codes that may receive messages, comma-separated (e.g. `US,CA,DE`).
    /// Default: every country.
    #[arg(long, env = "CONNECTOR_HOST_ALLOWED_COUNTRIES", value_parser = parse_country_list)]
    pub allowed_countries: Option<BTreeSet<String>>,
    /// How phone numbers are checked: `strict` (valid for their country code per libphonenumber)
    /// or `digits` (what Logto accepts: digits only, no numbering-plan check).
    #[arg(long, env = "CONNECTOR_HOST_PHONE_VALIDATION", value_enum, default_value_t = PhoneValidation::Strict)]
    pub phone_validation: PhoneValidation,
    /// How changes to the plugins folder are noticed: `notify` (inotify) or `poll` (for
    /// network filesystems where inotify sends nothing).
    #[arg(long, env = "CONNECTOR_HOST_PLUGINS_WATCH", value_enum, default_value_t = WatchArg::Notify)]
    pub plugins_watch: WatchArg,
    /// Where plugins run: `in-process` (loaded into the host: the fastest path) or `process`
    /// (each build in sandboxed worker processes: a plugin that crashes, loops or misbehaves
    /// takes down only its worker; see README "Plugin isolation").
    #[arg(long, env = "CONNECTOR_HOST_PLUGIN_ISOLATION", value_enum, default_value_t = crate::isolation::PluginIsolation::InProcess)]
    pub plugin_isolation: crate::isolation::PluginIsolation,
    /// With `--plugin-isolation process`: worker processes per loaded plugin build.
    #[arg(long, env = "CONNECTOR_HOST_PLUGIN_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub plugin_workers: u64,
    /// With `--plugin-isolation process`: how long a plugin call (one step) may take before
    /// its worker is killed, in milliseconds.
    #[arg(long, env = "CONNECTOR_HOST_PLUGIN_CALL_TIMEOUT_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub plugin_call_timeout_ms: u64,
    /// With `--plugin-isolation process`: each worker's address-space limit (`RLIMIT_AS`), in
    /// MiB.
    #[arg(long, env = "CONNECTOR_HOST_PLUGIN_WORKER_MEMORY_MIB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(64..=65_536))]
    pub plugin_worker_memory_mib: u64,
    /// Polling interval for `--plugins-watch poll`, in milliseconds.
    #[arg(long, env = "CONNECTOR_HOST_PLUGINS_POLL_INTERVAL", default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub plugins_poll_interval_ms: u64,
    /// SHA-256 digests (hex, comma-separated) of the only plugin builds allowed to load.
    #[arg(long, env = "CONNECTOR_HOST_ALLOWED_PLUGIN_SHA256", value_parser = parse_digest_list)]
    pub allowed_plugin_sha256: Option<BTreeSet<String>>,
    /// Minisign public key files (`minisign -G`'s key.pub; repeatable, or comma-separated):
    /// a plugin file `x.so` then loads only with a valid signature `x.so.minisig` by one of them.
    #[arg(
        long = "trusted-plugin-key",
        value_name = "FILE",
        env = "CONNECTOR_HOST_TRUSTED_PLUGIN_KEYS",
        value_delimiter = ','
    )]
    pub trusted_plugin_keys: Vec<PathBuf>,
    /// PostgreSQL shared by several hosts (`postgres://user:password@host/db`; `sslmode=require`
    /// for TLS). Default: SQLite in the data directory.
    #[arg(long, env = "CONNECTOR_HOST_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// With `--database-url`: how long start-up waits for PostgreSQL, retrying with backoff
    /// (0.5 s doubling to 10 s), before giving up; 0 waits for ever. Meanwhile `/health`
    /// answers and `/ready` says 503 `starting`.
    #[arg(long, env = "CONNECTOR_HOST_DATABASE_WAIT_SECS", default_value_t = 0)]
    pub database_wait_secs: u64,
    /// On SIGTERM or SIGINT, `/ready` answers 503 at once and the listener keeps accepting
    /// for this many seconds (so a load balancer's next checks take the host out), then stops
    /// accepting and lets requests in flight finish.
    #[arg(long, env = "CONNECTOR_HOST_DRAIN_GRACE_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub drain_grace_secs: u64,
    /// After the drain grace, how long requests in flight may take to finish before the host
    /// exits anyway.
    #[arg(long, env = "CONNECTOR_HOST_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub shutdown_timeout_secs: u64,
    /// File holding the key codes are hashed with; the same file on every host of one
    /// database, readable only by the host's user (it is never stored in the database).
    /// Required with `--database-url`; default: `<data>/code-hash-key`, created on first start.
    #[arg(long, env = "CONNECTOR_HOST_CODE_HASH_KEY_FILE")]
    pub code_hash_key_file: Option<PathBuf>,
    /// File holding the keys saved connector configs are sealed with (XChaCha20-Poly1305);
    /// the same file on every host of one database, readable only by the host's user (it is
    /// never stored in the database). Required with `--database-url`; default:
    /// `<data>/secrets-key`, created on first start. Back it up apart from the database.
    #[arg(long, env = "CONNECTOR_HOST_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// File holding the database password (the whole file but a final line break), so it is
    /// neither in the URL nor on the command line; the URL then holds no password.
    #[arg(
        long,
        env = "CONNECTOR_HOST_DATABASE_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub database_password_file: Option<PathBuf>,
    /// With PostgreSQL, whether to LISTEN for other hosts' changes (`off` leaves only the
    /// one-second poll; for tests).
    #[arg(long, env = "CONNECTOR_HOST_STORE_NOTIFICATIONS", default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    pub store_notifications: bool,
    /// Timeouts and caps on connections, requests and sends per connector (host/src/http).
    /// Let the process write core dumps and be attached with ptrace by its user (debugging
    /// only: a dump holds the keys and decrypted provider secrets). By default `serve` sets
    /// RLIMIT_CORE to 0 and marks itself non-dumpable.
    #[arg(long, env = "CONNECTOR_HOST_ALLOW_CORE_DUMPS")]
    pub allow_core_dumps: bool,
    /// One log line per request (target `access_log`): method, route template, status,
    /// latency, the key's id (never the key) and the client's address; never a body.
    #[arg(long, env = "CONNECTOR_HOST_ACCESS_LOG")]
    pub access_log: bool,
    #[command(flatten)]
    pub limits: crate::http::LimitArgs,
    /// The SMS-pumping protection (host/src/protection).
    #[command(flatten)]
    pub protection: crate::protection::flags::ProtectionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchArg {
    Notify,
    Poll,
}

fn parse_digest_list(list: &str) -> Result<BTreeSet<String>, String> {
    let digests: BTreeSet<String> = list
        .split(',')
        .map(|digest| digest.trim().to_ascii_lowercase())
        .filter(|digest| !digest.is_empty())
        .collect();
    match digests
        .iter()
        .find(|digest| digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
    {
        Some(bad) => Err(format!("{bad:?} is not a hex SHA-256 digest")),
        None if digests.is_empty() => Err("the list is empty".to_owned()),
        None => Ok(digests),
    }
}

fn parse_country_list(list: &str) -> Result<BTreeSet<String>, String> {
    let countries: BTreeSet<String> = list
        .split(',')
        .map(|code| code.trim().to_ascii_uppercase())
        .filter(|code| !code.is_empty())
        .collect();
    match countries
        .iter()
        .find(|code| code.len() != 2 || !code.chars().all(|c| c.is_ascii_alphabetic()))
    {
        Some(bad) => Err(format!("{bad:?} is not an ISO 3166 alpha-2 code")),
        None if countries.is_empty() => Err("the list is empty".to_owned()),
        None => Ok(countries),
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The plugin file.
    pub file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// As for `serve`: require and report a minisign signature by one of these keys.
    #[arg(
        long = "trusted-plugin-key",
        value_name = "FILE",
        env = "CONNECTOR_HOST_TRUSTED_PLUGIN_KEYS",
        value_delimiter = ','
    )]
    pub trusted_plugin_keys: Vec<PathBuf>,
}

/// The binary's entry: the `--config` file's keys placed before the real arguments, then
/// clap; `config show` prints and returns here.
pub fn main() -> ExitCode {
    // A plugin worker (`--plugin-isolation process`) is this binary started by the host: no
    // configuration, log or runtime of the host's.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new("plugin-worker")) {
        return crate::isolation::worker::main();
    }
    let expanded =
        match config_file::expand(std::env::args_os().collect(), |name| std::env::var_os(name)) {
            Ok(expanded) => expanded,
            Err(error) => {
                eprintln!("connector-host: {error}");
                return ExitCode::from(2);
            }
        };
    let matches = Cli::command().get_matches_from(&expanded.args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    if let Command::Config(_) = cli.command {
        let show = matches
            .subcommand_matches("config")
            .and_then(|config| config.subcommand_matches("show"))
            .unwrap_or(&matches);
        print!(
            "{}",
            config_file::effective_config(show, &expanded.from_file)
        );
        return ExitCode::SUCCESS;
    }
    run(cli)
}

pub fn run(cli: Cli) -> ExitCode {
    // Log lines are formatted on the caller's thread and written in batches by one
    // background thread (`log_writer`): never dropped; the guard writes what is pending when
    // `run` returns.
    let (log_writer, _flush_logs_on_exit) =
        match crate::log_writer::BatchedLogWriter::start(std::io::stderr()) {
            Ok(started) => started,
            Err(error) => {
                eprintln!("connector-host: cannot start the log writer thread: {error}");
                return ExitCode::FAILURE;
            }
        };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: escape codes in a log file are noise for operators.
    let colours = std::io::stderr().is_terminal();
    match cli.log_format {
        // Values escaped by the field formatter, so the colour codes are the formatter's only.
        LogFormat::Text if colours => {
            crate::log_output::terminal_text_subscriber(filter, move || {
                EscapingWriter::new(log_writer.clone(), true)
            })
            .init()
        }
        // The same line, formatted without the styling machinery (see `PlainTextFormat`).
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .event_format(crate::log_output::PlainTextFormat)
            .with_writer(move || EscapingWriter::new(log_writer.clone(), false))
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(log_writer)
            .init(),
    }
    match cli.command {
        Command::Serve(args) => run_serve(*args),
        // Answered by [`main`] before logging starts.
        Command::Config(_) => ExitCode::SUCCESS,
        Command::Check(args) => run_check(args),
        Command::RotateSecretsKey(args) => run_rotate_secrets_key(args),
        Command::RotateCodeHashKey(args) => run_rotate_code_hash_key(args),
        Command::NewConnector(args) => run_new_connector(args),
    }
}

fn run_serve(args: ServeArgs) -> ExitCode {
    // First, before any key is read.
    if args.allow_core_dumps {
        tracing::warn!("core dumps allowed (--allow-core-dumps): a dump would hold the keys and provider secrets");
    } else if let Err(error) = crate::core_dumps::disable_core_dumps() {
        eprintln!("connector-host: {error}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("connector-host: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let keys = |list: Option<String>, file: Option<PathBuf>, flag: &'static str| {
        let mut keys = list.as_deref().map(parse_key_list).unwrap_or_default();
        if let Some(file) = file {
            keys.extend(crate::data_directory::read_key_list_file(&file, flag)?);
        }
        Ok::<_, crate::data_directory::DataDirectoryError>(keys)
    };
    let (admin_keys, send_keys) = match (
        keys(args.admin_key, args.admin_key_file, "--admin-key-file"),
        keys(args.send_key, args.send_key_file, "--send-key-file"),
    ) {
        (Ok(admin_keys), Ok(send_keys)) => (admin_keys, send_keys),
        (Err(error), _) | (_, Err(error)) => {
            eprintln!("connector-host: {error}");
            return ExitCode::FAILURE;
        }
    };
    let open_file_limit = crate::http::descriptors::raise_open_file_limit();
    let provider_timeout = Duration::from_secs(args.request_timeout_secs);
    let http_limits = match args.limits.resolve(provider_timeout, open_file_limit) {
        Ok(limits) => limits,
        Err(error) => {
            eprintln!("connector-host: {error}");
            return ExitCode::FAILURE;
        }
    };
    let message_log = match args.message_log {
        MessageLogArg::On => true,
        MessageLogArg::Off => false,
        MessageLogArg::Auto => args.public_url.is_some(),
    };
    if args.public_url.is_some() && !message_log {
        tracing::warn!("--public-url is set with --message-log off: no delivery reports are asked for (they need the message log)");
    }
    let config = ServeConfig {
        fallback_breaker: crate::send::fallback::BreakerSettings {
            failures_to_open: args.fallback_after_failures,
            cool_off: Duration::from_secs(args.fallback_cool_off_secs),
        },
        delivery_reports: crate::send::message_tracking::DeliveryReportSettings {
            public_url: args.public_url,
            retention: Duration::from_secs(args.message_retention_days * 24 * 60 * 60),
            message_log,
        },
        http_limits,
        access_log: args.access_log,
        plugins_dir: args.plugins.unwrap_or_else(|| args.data.join("plugins")),
        data_dir: args.data,
        admin_keys,
        send_keys,
        send_executor: SendExecutorConfig {
            request_timeout: std::time::Duration::from_secs(args.request_timeout_secs),
            provider_networks: args.provider_networks,
            ..SendExecutorConfig::default()
        },
        send_limits: SendLimits {
            max_sends_per_recipient: args.max_sends_per_recipient,
            window: Duration::from_secs(args.send_window_secs),
            resend_cooldown: Duration::from_secs(args.resend_cooldown_secs),
            allowed_countries: args.allowed_countries,
        },
        code_policy: CodePolicy {
            time_to_live: Duration::from_secs(args.code_ttl_secs),
            max_attempts: args.code_max_attempts,
        },
        protection: args.protection.settings(),
        allowed_plugin_sha256: args.allowed_plugin_sha256,
        trusted_plugin_key_files: args.trusted_plugin_keys,
        phone_validation: args.phone_validation,
        database_url: args.database_url,
        code_hash_key_file: args.code_hash_key_file,
        secrets_key_file: args.secrets_key_file,
        database_password_file: args.database_password_file,
        store_notifications: args.store_notifications,
        database_wait: (args.database_wait_secs > 0)
            .then(|| Duration::from_secs(args.database_wait_secs)),
        shutdown: crate::readiness::ShutdownSettings {
            drain_grace: Duration::from_secs(args.drain_grace_secs),
            timeout: Duration::from_secs(args.shutdown_timeout_secs),
        },
        plugin_workers: match args.plugin_isolation {
            crate::isolation::PluginIsolation::InProcess => None,
            crate::isolation::PluginIsolation::Process => match std::env::current_exe() {
                Ok(executable) => Some(crate::isolation::pool::WorkerSettings {
                    executable,
                    workers_per_build: usize::try_from(args.plugin_workers).unwrap_or(2),
                    call_timeout: Duration::from_millis(args.plugin_call_timeout_ms),
                    load_timeout: Duration::from_secs(10),
                    memory_limit_bytes: args.plugin_worker_memory_mib * 1024 * 1024,
                }),
                Err(error) => {
                    eprintln!("connector-host: --plugin-isolation process needs this binary's path: {error}");
                    return ExitCode::FAILURE;
                }
            },
        },
        plugin_watch: match args.plugins_watch {
            WatchArg::Notify => PluginWatchMode::Notify,
            WatchArg::Poll => {
                PluginWatchMode::Poll(Duration::from_millis(args.plugins_poll_interval_ms))
            }
        },
    };
    let served = runtime.block_on(serve(config, args.listen));
    // Exit within a bounded time: background work still running (a blocking plugin call)
    // is not waited for.
    runtime.shutdown_timeout(Duration::from_secs(1));
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("connector-host: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: ServeConfig, listen: SocketAddr) -> Result<(), StartupError> {
    let metrics = match crate::telemetry::install_metrics_recorder() {
        Ok(handle) => {
            tokio::spawn(crate::telemetry::run_metrics_upkeep(handle.clone()));
            Some(handle)
        }
        Err(error) => {
            tracing::warn!(%error, "metrics are off: cannot install the Prometheus recorder");
            None
        }
    };
    // Listening first: while start-up waits for the database, `/health` answers and `/ready`
    // says 503 `starting`.
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartupError::Listen {
            address: listen,
            source,
        })?;
    let address = listener.local_addr().map_err(StartupError::Serving)?;
    let limits = config.http_limits.clone();
    let signals = crate::server::ShutdownSignals::watch();
    let Some(loaded) = crate::server::start(
        &listener,
        &limits,
        &signals,
        AppState::load(config, metrics),
    )
    .await
    else {
        tracing::info!("stopped during start-up");
        return Ok(());
    };
    let state = loaded?;
    tracing::info!(%address, "listening");
    // The first stdout line is the address, for scripts and tests that pass port 0.
    let sign_in_key = if state.config.admin_keys.is_empty() {
        format!(
            "the admin key in {}",
            state.config.data_dir.join("admin-key").display()
        )
    } else {
        "an admin key given by --admin-key".to_owned()
    };
    // One write, errors ignored: a reader that stops after the first line (tests, `head -1`)
    // may close the pipe, and `print!` would panic on the broken pipe (it writes each piece
    // of a format string separately).
    let announcement = format!(
        "listening on http://{address}\nconsole: http://{address}/console (sign in with {sign_in_key})\n"
    );
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(announcement.as_bytes());
    let _ = stdout.flush();
    drop(stdout);
    crate::server::serve(listener, Arc::new(state), signals)
        .await
        .map_err(StartupError::Serving)
}

/// What the key commands share: the key file checked and made private as `serve` does, before
/// it is read; the database password from its file; a runtime for the one job.
fn run_key_command<Output, Job>(
    key_file: &std::path::Path,
    database_password_file: Option<&std::path::Path>,
    job: impl FnOnce(Option<String>) -> Job,
) -> Result<Output, StartupError>
where
    Job: std::future::Future<Output = Result<Output, KeyCommandError>>,
{
    crate::data_directory::secure_key_file(key_file)?;
    let database_password = database_password_file
        .map(crate::state::read_database_password)
        .transpose()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(StartupError::Runtime)?
        .block_on(job(database_password))
        .map_err(StartupError::from)
}

fn run_rotate_code_hash_key(args: RotateCodeHashKeyArgs) -> ExitCode {
    let key_file = args.code_hash_key_file.clone().unwrap_or_else(|| {
        args.store
            .data
            .join(crate::data_directory::CODE_HASH_KEY_FILE)
    });
    let outcome = run_key_command(
        &key_file,
        args.store.database_password_file.as_deref(),
        |database_password| {
            rotate_code_hash_key(CodeHashRotationTarget {
                data_dir: args.store.data,
                database_url: args.store.database_url,
                database_password,
                code_hash_key_file: args.code_hash_key_file,
            })
        },
    );
    match outcome {
        Ok((step, key_file)) => {
            let key_file = key_file.display();
            match step {
                CodeHashRotationStep::Staged { new_key } => println!(
                    "step 1 of 3: staged code-hash key {new_key} behind the current one in {key_file} (it verifies codes, it does not issue them yet); copy {key_file} to every host, restart them one by one, then run this command again"
                ),
                CodeHashRotationStep::Promoted { new_key } => println!(
                    "step 2 of 3: code-hash key {new_key} now issues codes, the old key still verifies them; copy {key_file} to every host, restart them one by one, and once the code TTL has passed since the last restart, run this command again"
                ),
                CodeHashRotationStep::Finished { dropped } => println!(
                    "step 3 of 3: dropped code-hash key {} from {key_file}; copy it to every host (restart them when convenient): the rotation is done",
                    dropped.join(", ")
                ),
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("connector-host: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_rotate_secrets_key(args: RotateSecretsKeyArgs) -> ExitCode {
    let key_file = args.secrets_key_file.clone().unwrap_or_else(|| {
        args.store
            .data
            .join(crate::data_directory::SECRETS_KEY_FILE)
    });
    let several_hosts = args.store.database_url.is_some();
    let outcome = run_key_command(
        &key_file,
        args.store.database_password_file.as_deref(),
        |database_password| {
            rotate_secrets_key(RotationTarget {
                data_dir: args.store.data,
                database_url: args.store.database_url,
                database_password,
                secrets_key_file: args.secrets_key_file,
            })
        },
    );
    match outcome {
        Ok(summary) => {
            let finished = if summary.finished_interrupted_rotation {
                " (finished a rotation that was interrupted)"
            } else {
                ""
            };
            println!(
                "resealed {} saved connector configs under secrets key {} (was {}){finished}; {} now holds only the new key",
                summary.resealed_configs,
                summary.new_key_id,
                summary.previous_key_ids.join(", "),
                summary.key_file.display()
            );
            if several_hosts {
                println!("copy {} to every host of this database and restart them: until then their connector changes fail closed with 503 (sends go on)", summary.key_file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("connector-host: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_new_connector(args: NewConnectorArgs) -> ExitCode {
    let plugin_api = match (args.plugin_api, args.registry_index) {
        (Some(dir), _) => crate::scaffold::PluginApiSource::Folder(dir),
        (None, Some(index)) => crate::scaffold::PluginApiSource::Registry { index },
        (None, None) => crate::scaffold::PluginApiSource::default(),
    };
    let request = crate::scaffold::ScaffoldRequest {
        name: args.name,
        parent_dir: args.dir,
        plugin_api,
    };
    match crate::scaffold::scaffold_connector(&request) {
        Ok(outcome) => {
            let folder = outcome.crate_dir.display();
            let registry_step = if outcome.registry_index_is_placeholder {
                "\n  set the connector-host registry's index in .cargo/config.toml (plugin-api comes from there)"
            } else {
                ""
            };
            println!(
                "created {folder}\n\nnext:\n  cd {folder}{registry_step}\n  cargo test                # unit tests and the conformance kit\n  cargo build --release     # target/release/{library}\n  connector-host check target/release/{library}\n  then copy the file into the host's plugins folder (see docs/writing-a-connector.md, also for signing it)",
                library = outcome.library_file_name
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("connector-host: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run_check(args: CheckArgs) -> ExitCode {
    let trusted_plugin_keys =
        match crate::plugins::signature::TrustedPluginKeys::read_files(&args.trusted_plugin_keys) {
            Ok(keys) => keys,
            Err(error) => {
                eprintln!("connector-host: {error}");
                return ExitCode::FAILURE;
            }
        };
    let outcome = tempfile::tempdir()
        .map_err(|error| format!("cannot create a scratch directory: {error}"))
        .and_then(|scratch| {
            let loader = PluginLoader::new(scratch.path().to_owned(), None)
                .map_err(|error| error.to_string())?
                .with_trusted_keys(trusted_plugin_keys);
            loader.load(&args.file).map_err(|error| error.to_string())
        });
    match (outcome, args.json) {
        (Ok(plugin), true) => {
            let report = serde_json::json!({
                "loaded": true,
                "path": args.file,
                "sha256": plugin.sha256,
                "size": plugin.size,
                "signature": plugin.signature,
                "metadata": *plugin.metadata,
            });
            println!("{report:#}");
            ExitCode::SUCCESS
        }
        (Ok(plugin), false) => {
            let metadata = &plugin.metadata;
            let connector = &metadata.connector;
            println!("{}: loaded", args.file.display());
            println!("  factory id:         {}", connector.id);
            println!(
                "  name:               {}",
                connector.name.get("en").map(String::as_str).unwrap_or("")
            );
            println!("  target:             {}", connector.target);
            println!("  plugin version:     {}", metadata.plugin_version);
            println!("  plugin-api version: {}", metadata.plugin_api_version);
            println!("  sha256:             {}", plugin.sha256);
            if let Some(signature) = &plugin.signature {
                println!("  signed by key:      {}", signature.key_id);
                println!("  trusted comment:    {:?}", signature.trusted_comment);
            }
            let keys: Vec<&str> = connector
                .form_items
                .iter()
                .map(|item| item.key.as_str())
                .collect();
            println!("  config keys:        {}", keys.join(", "));
            ExitCode::SUCCESS
        }
        (Err(reason), true) => {
            println!(
                "{:#}",
                serde_json::json!({ "loaded": false, "path": args.file, "error": reason })
            );
            ExitCode::FAILURE
        }
        (Err(reason), false) => {
            println!("{}: refused: {reason}", args.file.display());
            ExitCode::FAILURE
        }
    }
}

/// `--public-url`: an `http://` or `https://` URL with a host, without a query or fragment;
/// kept without its trailing slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text.trim()).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(
            "an http:// or https:// URL with a host, such as https://sms.example.com".to_owned(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the base URL only: no query (?) or fragment (#)".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `--message-log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageLogArg {
    Auto,
    On,
    Off,
}
