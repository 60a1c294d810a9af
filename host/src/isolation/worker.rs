//! `connector-host plugin-worker`: one plugin build in a process of its own. Started by the
//! host with exec (never a fork of the host), an empty environment and its pipes:
//!
//! 1. dies with the host (parent-death signal) and dumps no core;
//! 2. reads [`Hello`], checks the library file's SHA-256, loads it through abi_stable's
//!    per-file API and reads its metadata, as the in-process loader does;
//! 3. limits its address space to what it maps plus `--plugin-worker-memory-mib`, locks
//!    itself down ([`super::sandbox::lock_down`]) and answers [`Ready`];
//! 4. answers one [`Call`] at a time on one thread, until stdin closes.
//!
//! Connector instances are built once per config (the host's key) and kept; a fresh worker
//! builds them again from the config every call carries.

use std::collections::HashMap;
use std::path::Path;
use std::process::ExitCode;

use plugin_api::{
    ConnectorInstance, ConnectorModule, HttpResponse, InboundReport, PluginNotes, SendContext,
};
use sha2::{Digest, Sha256};

use super::protocol::{
    read_frame, write_frame, Answer, Call, Hello, Ready, WireError, WireLoadError, WireStep,
    MEMORY_LIMIT_ARGUMENT, PARENT_ARGUMENT, PROTOCOL_VERSION,
};
use super::sandbox;

/// Instances kept per worker; past it they are built again as calls need them.
const MAX_INSTANCES: usize = 64;

pub fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("plugin worker: {reason}");
            ExitCode::from(3)
        }
    }
}

fn argument(arguments: &[String], name: &str) -> Result<u64, String> {
    arguments
        .iter()
        .position(|argument| argument == name)
        .and_then(|index| arguments.get(index + 1))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("{name} <number> is required"))
}

fn run() -> Result<(), String> {
    let arguments: Vec<String> = std::env::args().skip(2).collect();
    let memory_limit = argument(&arguments, MEMORY_LIMIT_ARGUMENT)?;
    let parent =
        u32::try_from(argument(&arguments, PARENT_ARGUMENT)?).map_err(|error| error.to_string())?;
    sandbox::die_with_parent(parent)?;
    sandbox::forbid_core_dumps()?;

    // The frames get descriptors of their own, fd 0 reads /dev/null and fd 1 goes to stderr:
    // a plugin's `println!` lands in the host's log instead of in the middle of a frame, and
    // a plugin reading stdin never takes a frame (the sandbox kills it for the read).
    let frames_in = rustix::io::dup(std::io::stdin()).map_err(|error| format!("dup: {error}"))?;
    let null = std::fs::File::open("/dev/null").map_err(|error| format!("/dev/null: {error}"))?;
    rustix::stdio::dup2_stdin(&null).map_err(|error| format!("dup2: {error}"))?;
    drop(null);
    let frames = rustix::io::dup(std::io::stdout()).map_err(|error| format!("dup: {error}"))?;
    rustix::stdio::dup2_stdout(std::io::stderr()).map_err(|error| format!("dup2: {error}"))?;
    let descriptor = |fd: &std::os::fd::OwnedFd| {
        u64::try_from(std::os::fd::AsRawFd::as_raw_fd(fd)).map_err(|error| error.to_string())
    };
    let descriptors = sandbox::FrameDescriptors {
        input: descriptor(&frames_in)?,
        output: descriptor(&frames)?,
    };
    let mut input = std::io::BufReader::new(std::fs::File::from(frames_in));
    let mut output = FrameOutput(frames);
    let Some(hello) = read_frame::<Hello>(&mut input)? else {
        return Ok(());
    };
    let module = match load(&hello) {
        Ok((module, metadata_json)) => {
            sandbox::limit_address_space(memory_limit)?;
            sandbox::lock_down(descriptors)?;
            write_frame(
                &mut output,
                &Ready::Loaded {
                    metadata_json,
                    abi_version: module.abi_version().to_owned(),
                },
            )?;
            module
        }
        Err(refusal) => return write_frame(&mut output, &Ready::Refused(refusal)),
    };

    let mut instances: HashMap<u64, ConnectorInstance> = HashMap::new();
    while let Some(call) = read_frame::<Call>(&mut input)? {
        let answer = answer(&module, &mut instances, call);
        write_frame(&mut output, &answer)?;
    }
    Ok(())
}

/// The host's pipe for frames, unbuffered: std's line-buffered stdout would split a binary
/// frame at each newline byte into several writes (and wake the host for each).
struct FrameOutput(std::os::fd::OwnedFd);

impl std::io::Write for FrameOutput {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        rustix::io::write(&self.0, buffer).map_err(std::io::Error::from)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Loads the build named by the handshake, as the in-process loader would.
fn load(hello: &Hello) -> Result<(ConnectorModule, String), WireLoadError> {
    let failed = |reason: String| WireLoadError::PluginFailed { reason };
    if hello.protocol != PROTOCOL_VERSION {
        return Err(failed(format!(
            "the host speaks worker protocol {}, this worker {PROTOCOL_VERSION}",
            hello.protocol
        )));
    }
    let library = Path::new(&hello.library);
    let content = std::fs::read(library).map_err(|error| failed(error.to_string()))?;
    let sha256 = hex::encode(Sha256::digest(&content));
    if sha256 != hello.sha256 {
        return Err(failed(format!(
            "the library's SHA-256 is {sha256}, the host expected {}",
            hello.sha256
        )));
    }
    drop(content);
    let (module, metadata) =
        crate::plugins::loader::load_private_copy(library).map_err(WireLoadError::from)?;
    let metadata_json =
        serde_json::to_string(&metadata).map_err(|error| failed(error.to_string()))?;
    Ok((module, metadata_json))
}

fn parse_config(config_json: &str) -> Result<serde_json::Value, WireError> {
    serde_json::from_str(config_json).map_err(|error| WireError {
        code: "invalid_config".to_owned(),
        message: format!("the config is not JSON: {error}"),
        data_json: String::new(),
    })
}

/// The instance for `key`, built from the config when this worker has not built it yet.
fn instance<'a>(
    module: &ConnectorModule,
    instances: &'a mut HashMap<u64, ConnectorInstance>,
    key: u64,
    config_json: &str,
) -> Result<&'a ConnectorInstance, WireError> {
    if !instances.contains_key(&key) {
        let config = parse_config(config_json)?;
        let built = module
            .instantiate(&config)
            .map_err(|error| WireError::from(&error))?;
        if instances.len() >= MAX_INSTANCES {
            instances.clear();
        }
        instances.insert(key, built);
    }
    instances.get(&key).ok_or_else(|| WireError {
        code: "general".to_owned(),
        message: "the worker lost a connector instance".to_owned(),
        data_json: String::new(),
    })
}

fn answer(
    module: &ConnectorModule,
    instances: &mut HashMap<u64, ConnectorInstance>,
    call: Call,
) -> Answer {
    let error = |error: plugin_api::ConnectorError| WireError::from(&error);
    match call {
        Call::ValidateConfig { config_json } => {
            Answer::Config(parse_config(&config_json).and_then(|config| {
                module
                    .validate_config(&config)
                    .map(|normalized| normalized.to_string())
                    .map_err(error)
            }))
        }
        Call::MigrateConfig { config_json } => {
            Answer::Migrated(parse_config(&config_json).and_then(|config| {
                module
                    .migrate_config(&config)
                    .map(|migrated| migrated.map(|config| config.to_string()))
                    .map_err(error)
            }))
        }
        Call::Instantiate {
            instance: key,
            config_json,
        } => {
            instances.remove(&key);
            Answer::Instantiated(instance(module, instances, key, &config_json).map(|_| ()))
        }
        Call::Step {
            instance: key,
            config_json,
            message,
            context,
            previous,
            notes_wanted,
        } => {
            let mut notes = notes_wanted.then(PluginNotes::new);
            let step = instance(module, instances, key, &config_json).and_then(|connector| {
                let message = message.to_message().map_err(|reason| WireError {
                    code: "general".to_owned(),
                    message: reason,
                    data_json: String::new(),
                })?;
                let context = SendContext::from(&context);
                let step = match previous {
                    None => connector.start_in_context(&message, &context, notes.as_mut()),
                    Some((state_json, response)) => connector.resume_from_state_json(
                        &message,
                        &context,
                        &state_json,
                        &HttpResponse::from(response),
                        notes.as_mut(),
                    ),
                };
                step.map(|step| WireStep::from(&step)).map_err(error)
            });
            Answer::Step {
                step,
                notes: notes
                    .map(|mut notes| notes.drain().collect())
                    .unwrap_or_default(),
            }
        }
        Call::ParseReport {
            instance: key,
            config_json,
            report,
        } => Answer::Reports(match instance(module, instances, key, &config_json) {
            Ok(connector) => connector
                .parse_delivery_report(&InboundReport::from(report))
                .map_err(|error| (error.code().to_owned(), error.message().to_owned()))
                .and_then(|reports| {
                    serde_json::to_string(&reports)
                        .map_err(|error| ("general".to_owned(), error.to_string()))
                }),
            Err(error) => Err((error.code, error.message)),
        }),
    }
}
