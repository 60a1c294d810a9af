//! `--config FILE` (`CONNECTOR_HOST_CONFIG`): `serve`'s flags from a TOML file, each key named
//! like its flag (`listen = "0.0.0.0:3001"`, `max-in-flight = 512`, `allowed-countries =
//! ["US", "CA"]`). Precedence: a flag on the command line, then its environment variable, then
//! the file, then the default.
//!
//! The file is turned into command-line arguments placed before the real ones, and clap parses
//! the whole as usual: every flag works from the file with the same checks and messages, and
//! no flag has to be declared twice. A key whose flag is on the command line or whose
//! environment variable is set is left out. An unknown key, a table, or a value clap refuses
//! is an error naming the file, the line and the key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, CommandFactory};
use toml::de::{DeTable, DeValue};

use super::Cli;

/// The flag naming the file, and its environment variable.
pub const CONFIG_FLAG: &str = "config";
pub const CONFIG_ENV: &str = "CONNECTOR_HOST_CONFIG";

/// The subcommands whose flags a file may set.
const SUBCOMMANDS_WITH_A_FILE: [&str; 2] = ["serve", "show"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}: {error}")]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// Where each flag's value came from (`config show`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    CommandLine,
    Environment,
    File,
    Default,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::CommandLine => "command line",
            Source::Environment => "environment",
            Source::File => "config file",
            Source::Default => "default",
        }
    }
}

/// The command line with the file's keys in it, and which flags the file set.
pub struct ExpandedArgs {
    pub args: Vec<OsString>,
    pub from_file: Vec<String>,
}

/// Reads the config file the command line or the environment names, if any, and puts its
/// keys before the real arguments of the subcommand.
pub fn expand(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<ExpandedArgs, ConfigFileError> {
    let Some(subcommand_at) = args.iter().position(|arg| {
        arg.to_str()
            .is_some_and(|arg| SUBCOMMANDS_WITH_A_FILE.contains(&arg))
    }) else {
        return Ok(ExpandedArgs {
            args,
            from_file: Vec::new(),
        });
    };
    let given = &args[subcommand_at + 1..];
    let Some(path) = config_path(given).or_else(|| env(CONFIG_ENV).map(PathBuf::from)) else {
        return Ok(ExpandedArgs {
            args,
            from_file: Vec::new(),
        });
    };
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigFileError::Unreadable {
        path: path.clone(),
        error,
    })?;
    let (file_args, from_file) = file_arguments(&path, &text, given, &env)?;
    let mut expanded = args[..=subcommand_at].to_vec();
    expanded.extend(file_args);
    expanded.extend_from_slice(given);
    Ok(ExpandedArgs {
        args: expanded,
        from_file,
    })
}

/// `--config FILE` or `--config=FILE` among the subcommand's arguments.
fn config_path(given: &[OsString]) -> Option<PathBuf> {
    let flag = format!("--{CONFIG_FLAG}");
    let with_value = format!("--{CONFIG_FLAG}=");
    let mut given = given.iter();
    while let Some(arg) = given.next() {
        let text = arg.to_string_lossy();
        if text == flag {
            return given.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix(&with_value) {
            return Some(PathBuf::from(value));
        }
    }
    None
}

/// The serve flags a file may set: long name → (action, environment variable).
fn known_flags() -> BTreeMap<String, (ArgAction, Option<String>)> {
    let command = Cli::command();
    let serve = command.find_subcommand("serve");
    command
        .get_arguments()
        .chain(serve.into_iter().flat_map(|serve| serve.get_arguments()))
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if long == CONFIG_FLAG || long == "help" || long == "version" {
                return None;
            }
            Some((
                long.to_owned(),
                (
                    arg.get_action().clone(),
                    arg.get_env().map(|env| env.to_string_lossy().into_owned()),
                ),
            ))
        })
        .collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn file_arguments(
    path: &Path,
    text: &str,
    given: &[OsString],
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<(Vec<OsString>, Vec<String>), ConfigFileError> {
    let invalid = |offset: usize, message: String| ConfigFileError::Invalid {
        path: path.to_owned(),
        line: line_of(text, offset),
        message,
    };
    let table = DeTable::parse(text).map_err(|error| {
        let offset = error.span().map_or(0, |span| span.start);
        invalid(
            offset,
            format!("not valid TOML: {}", error.message().trim()),
        )
    })?;
    let flags = known_flags();
    let on_command_line = |flag: &str| {
        let exact = format!("--{flag}");
        let with_value = format!("--{flag}=");
        given.iter().any(|arg| {
            let arg = arg.to_string_lossy();
            arg == exact || arg.starts_with(&with_value)
        })
    };
    let mut args = Vec::new();
    let mut from_file = Vec::new();
    for (key, value) in table.get_ref() {
        let name = key.get_ref().as_ref();
        let key_at = key.span().start;
        if name == CONFIG_FLAG {
            return Err(invalid(
                key_at,
                "`config` cannot be set in a config file".to_owned(),
            ));
        }
        let Some((action, env_name)) = flags.get(name) else {
            let suggestion = flags
                .keys()
                .map(|flag| (strsim::levenshtein(flag, name), flag))
                .filter(|(distance, _)| *distance <= 3)
                .min()
                .map(|(_, flag)| format!("; did you mean `{flag}`?"))
                .unwrap_or_default();
            return Err(invalid(
                key_at,
                format!(
                    "unknown key `{name}`: keys are `serve`'s flags without their dashes (connector-host serve --help){suggestion}"
                ),
            ));
        };
        if on_command_line(name) || env_name.as_deref().and_then(env).is_some() {
            continue;
        }
        let value_at = value.span().start;
        let rendered = render(value.get_ref())
            .map_err(|message| invalid(value_at, format!("`{name}`: {message}")))?;
        let flag_args: Vec<String> = match action {
            ArgAction::SetTrue => match rendered.as_str() {
                "true" => vec![format!("--{name}")],
                "false" => Vec::new(),
                _ => {
                    return Err(invalid(
                        value_at,
                        format!("`{name}`: expected true or false"),
                    ))
                }
            },
            _ => vec![format!("--{name}={rendered}")],
        };
        // Checked alone, so a value clap refuses is reported with its line.
        let mut probe: Vec<OsString> = vec!["connector-host".into(), "serve".into()];
        probe.extend(flag_args.iter().map(OsString::from));
        if let Err(error) = Cli::command().try_get_matches_from(probe) {
            if !matches!(
                error.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) {
                let text = error.to_string();
                let first_line = text
                    .lines()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("invalid value")
                    .trim_start_matches("error: ");
                return Err(invalid(value_at, format!("`{name}`: {first_line}")));
            }
        }
        args.extend(flag_args.into_iter().map(OsString::from));
        from_file.push(name.to_owned());
    }
    Ok((args, from_file))
}

/// A TOML value as a flag's value: scalars as written, an array as a comma-separated list.
fn render(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Integer(integer) => {
            i64::from_str_radix(&integer.as_str().replace('_', ""), integer.radix())
                .map(|number| number.to_string())
                .map_err(|error| format!("not a number: {error}"))
        }
        DeValue::Float(float) => float
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map(|number| number.to_string())
            .map_err(|error| format!("not a number: {error}")),
        DeValue::Boolean(flag) => Ok(flag.to_string()),
        DeValue::Array(items) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::Array(_) | DeValue::Table(_) => {
                    Err("a list holds strings or numbers, not lists or tables".to_owned())
                }
                scalar => render(scalar),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|items| items.join(",")),
        DeValue::Datetime(_) => Err("a date is not a flag value".to_owned()),
        DeValue::Table(_) => Err(
            "a table is not a flag value: every key sits at the top level, named like its flag"
                .to_owned(),
        ),
    }
}

/// The effective value of every flag of `show`'s matches, as TOML a config file takes, with
/// where each came from; secrets masked.
pub fn effective_config(matches: &ArgMatches, from_file: &[String]) -> String {
    let command = Cli::command();
    let Some(show) = command
        .find_subcommand("config")
        .and_then(|config| config.find_subcommand("show"))
    else {
        return String::new();
    };
    let mut lines = vec![
        "# The effective configuration of `connector-host serve` with these flags, environment and file".to_owned(),
        "# (flag > environment > file > default); secrets masked.".to_owned(),
    ];
    for arg in command.get_arguments().chain(show.get_arguments()) {
        let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else {
            continue;
        };
        if long == CONFIG_FLAG || long == "help" || long == "version" {
            continue;
        }
        let raw: Option<Vec<String>> = matches.get_raw(id).map(|values| {
            values
                .map(|value| value.to_string_lossy().into_owned())
                .collect()
        });
        let source = if from_file.iter().any(|flag| flag == long) {
            Source::File
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => Source::CommandLine,
                Some(ValueSource::EnvVariable) => Source::Environment,
                _ => Source::Default,
            }
        };
        let Some(values) = raw.filter(|values| !values.is_empty()) else {
            lines.push(format!("# {long} = (not set)"));
            continue;
        };
        let secret = arg.is_hide_env_values_set();
        let shown: Vec<String> = values
            .iter()
            .map(|value| {
                if long == "database-url" {
                    mask_database_password(value)
                } else if secret {
                    "******".to_owned()
                } else {
                    value.clone()
                }
            })
            .collect();
        lines.push(format!(
            "{long} = {}  # {}",
            toml_value(&shown.join(",")),
            source.label()
        ));
    }
    lines.join("\n") + "\n"
}

/// A flag's value written back as TOML: numbers and booleans bare, the rest quoted.
fn toml_value(value: &str) -> String {
    let bare = value == "true"
        || value == "false"
        || value.parse::<i64>().is_ok()
        || (value.contains('.') && value.parse::<f64>().is_ok_and(f64::is_finite));
    if bare {
        value.to_owned()
    } else {
        format!("{value:?}")
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:******@host/db`; `password=secret` in
/// the key-value form likewise.
pub fn mask_database_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((credentials, host)) = authority.rsplit_once('@') {
            if let Some((user, _password)) = credentials.split_once(':') {
                return mask_password_parameter(&format!("{scheme}://{user}:******@{host}{tail}"));
            }
        }
        return mask_password_parameter(url);
    }
    mask_password_parameter(url)
}

fn mask_password_parameter(text: &str) -> String {
    text.split_inclusive(['&', ' ', '?'])
        .map(|part| {
            let trimmed = part.trim_end_matches(['&', ' ', '?']);
            let separator = &part[trimmed.len()..];
            match trimmed.split_once('=') {
                Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                    format!("{name}=******{separator}")
                }
                _ => part.to_owned(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn expand_with(
        file: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ExpandedArgs, ConfigFileError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host.toml");
        std::fs::write(&path, file).unwrap();
        let mut args = os(args);
        args.push("--config".into());
        args.push(path.clone().into());
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        expand(args, |name| env.get(name).map(OsString::from))
    }

    /// The error a file alone, given to `serve`, is refused with.
    fn refused(file: &str) -> String {
        expand_with(file, &["connector-host", "serve"], &[])
            .err()
            .expect("the file is refused")
            .to_string()
    }

    fn serve_args(expanded: &ExpandedArgs) -> super::super::ServeArgs {
        match Cli::try_parse_from(&expanded.args).unwrap().command {
            super::super::Command::Serve(args) => *args,
            _ => panic!("not serve"),
        }
    }

    use clap::Parser;

    #[test]
    fn the_file_sets_flags_below_the_command_line_and_the_environment() {
        let file = "listen = \"127.0.0.1:4000\"\nmax-sends-per-recipient = 7\nallowed-countries = [\"US\", \"CA\"]\nrequest-timeout-secs = 20\nallow-core-dumps = true\n";
        let expanded = expand_with(
            file,
            &["connector-host", "serve", "--request-timeout-secs", "30"],
            &[("CONNECTOR_HOST_MAX_SENDS_PER_RECIPIENT", "9")],
        )
        .unwrap();
        assert_eq!(
            expanded.from_file,
            ["allow-core-dumps", "allowed-countries", "listen"]
        );
        let args = serve_args(&expanded);
        assert_eq!(args.listen.to_string(), "127.0.0.1:4000");
        // The command line wins over the file; the environment too (clap reads it itself).
        assert_eq!(args.request_timeout_secs, 30);
        assert_eq!(
            args.allowed_countries
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            ["CA", "US"]
        );
        assert!(args.allow_core_dumps);
    }

    #[test]
    fn protection_flags_work_from_the_file() {
        let expanded = expand_with(
            "protection = \"monitor\"\nprefix-velocity-max = 25\nlow-conversion-min-rate = 0.35\nrecipient-backoff = true\n",
            &["connector-host", "serve"],
            &[],
        )
        .unwrap();
        let settings = serve_args(&expanded).protection.settings();
        assert_eq!(settings.mode, crate::protection::ProtectionMode::Monitor);
        assert_eq!(settings.prefix_velocity_max, 25);
        assert!((settings.low_conversion_min_rate - 0.35).abs() < 1e-9);
        assert!(settings.recipient_backoff);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line_and_a_suggestion() {
        let error = refused("listen = \"127.0.0.1:4000\"\n\n# limits\nmax-inflight = 5\n");
        assert!(error.ends_with("host.toml:4: unknown key `max-inflight`: keys are `serve`'s flags without their dashes (connector-host serve --help); did you mean `max-in-flight`?"), "{error}");
    }

    #[test]
    fn a_value_clap_refuses_a_table_and_bad_toml_are_errors_with_their_line() {
        let error = refused("data = \"d\"\nlisten = \"nowhere\"\n");
        assert!(
            error.contains("host.toml:2: `listen`: invalid value 'nowhere' for '--listen"),
            "{error}"
        );
        let error = refused("[limits]\nmax-in-flight = 5\n");
        assert!(
            error.contains("host.toml:1: unknown key `limits`"),
            "{error}"
        );
        let error = refused("listen = [\"a\", [\"b\"]]\n");
        assert!(
            error.contains("host.toml:1: `listen`: a list holds"),
            "{error}"
        );
        let error = refused("listen = \n");
        assert!(error.contains("host.toml:1: not valid TOML"), "{error}");
        let error = refused("config = \"other.toml\"\n");
        assert!(error.contains("`config` cannot be set"), "{error}");
    }

    /// A value for each flag without a default (a new one needs its line here).
    const SAMPLES: [(&str, &str); 22] = [
        ("plugins", "\"/var/lib/connector-host/plugins\""),
        ("public-url", "\"https://sms.example.com\""),
        ("admin-key", "\"admin-key-from-file\""),
        ("send-key", "[\"send-one\", \"send-two\"]"),
        ("admin-key-file", "\"/etc/connector-host/admin-keys\""),
        ("send-key-file", "\"/etc/connector-host/send-keys\""),
        ("allowed-countries", "[\"US\", \"CA\"]"),
        (
            "allowed-plugin-sha256",
            "[\"0000000000000000000000000000000000000000000000000000000000000000\"]",
        ),
        (
            "trusted-plugin-key",
            "[\"/etc/connector-host/a.pub\", \"/etc/connector-host/b.pub\"]",
        ),
        ("database-url", "\"postgres://app@db.internal/hosts\""),
        (
            "code-hash-key-file",
            "\"/etc/connector-host/code-hash-key\"",
        ),
        ("secrets-key-file", "\"/etc/connector-host/secrets-key\""),
        (
            "database-password-file",
            "\"/etc/connector-host/db-password\"",
        ),
        ("api-request-timeout-secs", "25"),
        ("max-connections", "2000"),
        ("max-vendor-concurrency", "32"),
        ("protection-safe-list", "[\"+12015550123\", \"+1201555*\"]"),
        ("log-format", "\"json\""),
        ("drain-grace-secs", "3"),
        ("shutdown-timeout-secs", "20"),
        ("database-wait-secs", "60"),
        ("access-log", "true"),
    ];

    #[test]
    fn every_serve_flag_is_a_key() {
        // Every flag, with its default or a sample value, set from the file parses: no flag is
        // left out of the file, whatever its type.
        let command = Cli::command();
        let serve = command.find_subcommand("serve").unwrap();
        let mut file = String::new();
        let mut missing = Vec::new();
        for arg in command.get_arguments().chain(serve.get_arguments()) {
            let Some(long) = arg.get_long() else { continue };
            if long == CONFIG_FLAG || long == "help" || long == "version" {
                continue;
            }
            let sample = SAMPLES
                .iter()
                .find(|(flag, _)| *flag == long)
                .map(|(_, value)| (*value).to_owned());
            let value = match (sample, arg.get_action()) {
                (Some(sample), _) => sample,
                (None, ArgAction::SetTrue) => "true".to_owned(),
                (None, _) => match arg.get_default_values().first() {
                    Some(default) => toml_value(&default.to_string_lossy()),
                    None => {
                        missing.push(long.to_owned());
                        continue;
                    }
                },
            };
            file.push_str(&format!("{long} = {value}\n"));
        }
        assert!(missing.is_empty(), "no sample value for {missing:?}");
        let expanded = expand_with(&file, &["connector-host", "serve"], &[]).unwrap();
        assert_eq!(expanded.from_file.len(), file.lines().count());
        let args = serve_args(&expanded);
        assert_eq!(args.admin_key.as_deref(), Some("admin-key-from-file"));
        assert_eq!(args.send_key.as_deref(), Some("send-one,send-two"));
        assert_eq!(args.trusted_plugin_keys.len(), 2);
        assert_eq!(args.limits.max_connections, Some(2000));
    }

    #[test]
    fn the_example_in_deploy_parses() {
        let example = include_str!("../../../deploy/connector-host.toml");
        let expanded = expand_with(example, &["connector-host", "serve"], &[]).unwrap();
        assert!(expanded.from_file.len() >= 20, "{:?}", expanded.from_file);
        let args = serve_args(&expanded);
        assert_eq!(args.limits.max_in_flight, 512);
    }

    #[test]
    fn database_passwords_are_masked() {
        assert_eq!(
            mask_database_password(
                "postgres://app:s3cret@db.internal:5432/hosts?sslmode=verify-full"
            ),
            "postgres://app:******@db.internal:5432/hosts?sslmode=verify-full"
        );
        assert_eq!(
            mask_database_password("host=db user=app password=s3cret dbname=hosts"),
            "host=db user=app password=****** dbname=hosts"
        );
        assert_eq!(
            mask_database_password("postgres://db/hosts?user=app&password=s3cret"),
            "postgres://db/hosts?user=app&password=******"
        );
    }
}
