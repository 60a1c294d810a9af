//! Turns one plugin file into a loaded connector module.
//!
//! Each file is first copied to a private, content-addressed path (`<sha256>.so` under the data
//! directory) and loaded from there: dlopen hands back the already-loaded library for a path or
//! inode it has seen, and overwriting a loaded `.so` in place crashes the process, so the
//! operator's file is never the one mapped. Loading goes through abi_stable's per-file API
//! (`lib_header_from_path(..)?.init_root_module()`, in [`ConnectorModule::from_library`]);
//! `RootModule::load_from_file` would cache
//! the first module it ever loaded and return it for every later file.
//!
//! With trusted keys (`--trusted-plugin-key`), a file loads only with a valid minisign signature
//! beside it ([`crate::plugins::signature`]). The file is read once: the signature is checked, the
//! digest taken and the private copy written from that one buffer, so what was verified is what
//! dlopen maps.
//!
//! Libraries are never unloaded (a Rust cdylib cannot be unloaded soundly: thread-locals,
//! leaked statics and function pointers may outlive it). Identical content is loaded once, so
//! memory grows by about one file size per distinct build.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModuleError};
use plugin_api::{ConnectorModule, MetadataError, PluginMetadata};

use crate::isolation::pool::{run_blocking, WorkerPool, WorkerSettings};
use crate::plugins::module::PluginModule;
use sha2::{Digest, Sha256};

use crate::plugins::folder_file::{file_name_of, read_folder_file, FolderFile, FolderFileError};
use crate::plugins::load_error::LoadError;
use crate::plugins::signature::{PluginSignature, TrustedPluginKeys};

/// Plugin files are read whole into memory to hash and copy them; a connector is a few MiB,
/// so anything this large is a mistake, not a plugin.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// A plugin build that loaded and reported valid metadata.
#[derive(Clone)]
pub struct LoadedPlugin {
    pub module: PluginModule,
    pub metadata: Arc<PluginMetadata>,
    /// Hex SHA-256 of the file's content.
    pub sha256: String,
    pub size: u64,
    /// Who signed the file it was loaded from, when signatures are required.
    pub signature: Option<PluginSignature>,
}

/// Loads plugin files, each distinct content once.
pub struct PluginLoader {
    private_copies_dir: PathBuf,
    /// When set, only these builds (hex SHA-256) load.
    allowed_sha256: Option<BTreeSet<String>>,
    /// When set, only files signed by one of these keys load.
    trusted_keys: Option<TrustedPluginKeys>,
    /// Outcome per content digest. Failures are kept too: a build that panicked while loading
    /// stays mapped, and loading it again would only repeat the panic.
    outcomes_by_sha256: Mutex<HashMap<String, Result<LoadedPlugin, LoadError>>>,
    /// `--plugin-isolation process`: builds load in worker processes, never in this one.
    workers: Option<Arc<WorkerSettings>>,
}

impl PluginLoader {
    /// `private_copies_dir` is created if missing; it belongs to the host alone. Copies left
    /// from an earlier run are deleted: nothing is loaded yet, so none is in use, and builds
    /// still in the folder are copied again when they load.
    pub fn new(
        private_copies_dir: PathBuf,
        allowed_sha256: Option<BTreeSet<String>>,
    ) -> std::io::Result<Self> {
        fs::create_dir_all(&private_copies_dir)?;
        for entry in fs::read_dir(&private_copies_dir)? {
            let path = entry?.path();
            if path.is_file() {
                fs::remove_file(&path)?;
            }
        }
        Ok(Self {
            private_copies_dir,
            allowed_sha256,
            trusted_keys: None,
            outcomes_by_sha256: Mutex::new(HashMap::new()),
            workers: None,
        })
    }

    /// Requires every file to be signed by one of `trusted_keys` (`None`: no signature needed).
    pub fn with_trusted_keys(mut self, trusted_keys: Option<TrustedPluginKeys>) -> Self {
        self.trusted_keys = trusted_keys;
        self
    }

    /// Loads every build in worker processes with these settings (`None`: in this process).
    pub fn with_workers(mut self, workers: Option<WorkerSettings>) -> Self {
        self.workers = workers.map(Arc::new);
        self
    }

    /// `in-process` or `process`.
    pub fn isolation(&self) -> crate::isolation::PluginIsolation {
        match self.workers {
            Some(_) => crate::isolation::PluginIsolation::Process,
            None => crate::isolation::PluginIsolation::InProcess,
        }
    }

    /// Whether files load only with a signature (whose file then matters to the folder too).
    pub fn requires_signatures(&self) -> bool {
        self.trusted_keys.is_some()
    }

    /// Loads one file. Blocking: reads and copies the file and runs dlopen.
    pub fn load(&self, path: &Path) -> Result<LoadedPlugin, LoadError> {
        self.load_trusted(path, |_| None)
    }

    /// Loads one file when `trust_problem`, given the `fstat` of the descriptor the file was
    /// read from, finds nothing wrong with it.
    pub fn load_trusted(
        &self,
        path: &Path,
        trust_problem: impl FnOnce(&fs::Metadata) -> Option<String>,
    ) -> Result<LoadedPlugin, LoadError> {
        // The one read of the file: everything below checks, hashes and copies this buffer.
        let FolderFile { content, metadata } = read_plugin_file(path)?;
        if let Some(reason) = trust_problem(&metadata) {
            return Err(LoadError::Untrusted { reason });
        }
        // Before the signature, so a file still being copied is `incomplete`, not a signature
        // for other bytes; the preflight only reads headers, it runs nothing.
        if content.is_empty() {
            return Err(LoadError::EmptyFile);
        }
        check_shared_object(&content)?;
        let signature = match &self.trusted_keys {
            Some(trusted_keys) => Some(trusted_keys.verify_plugin_file(path, &content)?),
            None => None,
        };
        let mut plugin = self.load_checked_content(content)?;
        plugin.signature = signature;
        Ok(plugin)
    }

    /// Loads content that passed the preflight (and the signature check, when required).
    fn load_checked_content(&self, content: Vec<u8>) -> Result<LoadedPlugin, LoadError> {
        let sha256 = hex::encode(Sha256::digest(&content));
        if self
            .allowed_sha256
            .as_ref()
            .is_some_and(|allowed| !allowed.contains(&sha256))
        {
            return Err(LoadError::NotInAllowlist { sha256 });
        }
        let mut outcomes = self
            .outcomes_by_sha256
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(outcome) = outcomes.get(&sha256) {
            return outcome.clone();
        }
        let private_path = self.make_private_copy(&sha256, &content)?;
        let loaded = match &self.workers {
            None => load_private_copy(&private_path)
                .map(|(module, metadata)| (PluginModule::InProcess(module), metadata)),
            Some(settings) => load_in_workers(&private_path, &sha256, settings),
        };
        let in_workers = self.workers.is_some();
        let outcome = loaded.map(|(module, metadata)| LoadedPlugin {
            module,
            metadata: Arc::new(metadata),
            sha256: sha256.clone(),
            size: content.len() as u64,
            // Per file, not per content: set by `load` for the file at hand.
            signature: None,
        });
        // A build in workers is not kept here: once no connector and no factory holds it, its
        // pool is dropped and its workers end (the content loads afresh if it comes back).
        if !(in_workers && outcome.is_ok()) {
            outcomes.insert(sha256, outcome.clone());
        }
        outcome
    }

    /// Writes `<sha256>.so` once (temp file, then rename), read-only. An existing copy is
    /// complete by construction and reused.
    fn make_private_copy(&self, sha256: &str, content: &[u8]) -> Result<PathBuf, LoadError> {
        let private_path = self.private_copies_dir.join(format!("{sha256}.so"));
        if private_path.exists() {
            return Ok(private_path);
        }
        let write_copy = || -> std::io::Result<()> {
            let mut temporary = tempfile::NamedTempFile::new_in(&self.private_copies_dir)?;
            temporary.write_all(content)?;
            temporary.as_file().sync_all()?;
            temporary
                .as_file()
                .set_permissions(fs::Permissions::from_mode(0o444))?;
            temporary
                .persist(&private_path)
                .map_err(|error| error.error)?;
            Ok(())
        };
        write_copy().map_err(|error| LoadError::PrivateCopyFailed {
            reason: format!("{}: {error}", private_path.display()),
        })?;
        Ok(private_path)
    }
}

/// Checks what dlopen would otherwise find out by crashing: a truncated ELF maps segments past
/// the end of the file and the first touch of such a page kills the process with SIGBUS.
fn check_shared_object(content: &[u8]) -> Result<(), LoadError> {
    use object::{Object, ObjectKind, ObjectSegment};

    let not_shared_object = |reason: String| LoadError::NotSharedObject { reason };
    if !content.starts_with(b"\x7fELF") {
        return Err(not_shared_object(
            "no ELF header (is this a .so built for this platform?)".to_owned(),
        ));
    }
    let file = object::File::parse(content)
        .map_err(|error| not_shared_object(format!("malformed ELF file: {error}")))?;
    if file.kind() != ObjectKind::Dynamic {
        return Err(not_shared_object(format!(
            "ELF file of kind {:?}, not a shared library",
            file.kind()
        )));
    }
    let host_architecture = if cfg!(target_arch = "x86_64") {
        Some(object::Architecture::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Some(object::Architecture::Aarch64)
    } else {
        None
    };
    if host_architecture.is_some_and(|architecture| architecture != file.architecture()) {
        return Err(not_shared_object(format!(
            "built for {:?}, this host runs on {}",
            file.architecture(),
            std::env::consts::ARCH
        )));
    }
    for segment in file.segments() {
        let (offset, size) = segment.file_range();
        if offset.saturating_add(size) > content.len() as u64 {
            return Err(not_shared_object(format!(
                "truncated ELF file: a segment ends at byte {} of a {}-byte file (still being copied?)",
                offset.saturating_add(size),
                content.len()
            )));
        }
    }
    Ok(())
}

/// Reads a plugin file whole without blocking: a regular file of at most
/// [`MAX_PLUGIN_FILE_BYTES`], refused before reading otherwise.
fn read_plugin_file(path: &Path) -> Result<FolderFile, LoadError> {
    read_folder_file(path, MAX_PLUGIN_FILE_BYTES).map_err(|error| match error {
        FolderFileError::Missing => LoadError::Unreadable {
            reason: "the file is gone".to_owned(),
        },
        FolderFileError::NotRegularFile { kind } => LoadError::NotRegularFile {
            file_name: file_name_of(path),
            kind,
        },
        FolderFileError::TooLarge { size } => LoadError::TooLarge {
            size,
            limit: MAX_PLUGIN_FILE_BYTES,
        },
        FolderFileError::Unreadable(error) => LoadError::Unreadable {
            reason: error.to_string(),
        },
    })
}

/// Starts the build's worker pool, whose first worker loads and checks the library; this
/// process never maps it.
fn load_in_workers(
    private_path: &Path,
    sha256: &str,
    settings: &Arc<WorkerSettings>,
) -> Result<(PluginModule, PluginMetadata), LoadError> {
    let started = run_blocking(WorkerPool::start(
        private_path.to_owned(),
        sha256.to_owned(),
        Arc::clone(settings),
    ))
    .map_err(|reason| LoadError::PluginFailed { reason })?
    .inspect_err(|error| {
        // The worker has no log of its own: its layout report is logged here, as in-process.
        if let LoadError::IncompatibleAbi { full_report, .. } = error {
            tracing::debug!(path = %private_path.display(), report = %full_report, "abi_stable layout report");
        }
    })?;
    Ok((
        PluginModule::Worker {
            pool: started.pool,
            abi_version: started.abi_version.into(),
        },
        started.metadata,
    ))
}

/// Loads a private copy into this process (in-process mode, and a plugin worker): through
/// this host's plugin-api layouts, or an older 1.x's for an older plugin.
pub(crate) fn load_private_copy(
    private_path: &Path,
) -> Result<(ConnectorModule, PluginMetadata), LoadError> {
    // Through this host's plugin-api layouts, or an older 1.x's for an older plugin.
    let module = lib_header_from_path(private_path)
        .and_then(ConnectorModule::from_library)
        .map_err(|error| library_error_to_load_error(error, private_path))?;
    let metadata = module.metadata().map_err(|error| match error {
        MetadataError::Unavailable(error) => LoadError::MetadataUnavailable {
            reason: error.message,
        },
        MetadataError::Invalid(problem) => LoadError::InvalidMetadata { reason: problem },
    })?;
    Ok((module, metadata))
}

fn library_error_to_load_error(error: LibraryError, private_path: &Path) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => {
            // dlerror() starts with the private path, which means nothing to the operator.
            let text = err.to_string();
            let prefix = format!("{}: ", private_path.display());
            let reason = text
                .split_once(&prefix)
                .map(|(_, rest)| rest.to_owned())
                .unwrap_or(text);
            LoadError::NotSharedObject {
                reason: one_line(&reason),
            }
        }
        LibraryError::GetSymbolError { .. } => LoadError::NotConnectorPlugin,
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatiblePluginApiVersion {
            plugin_version: actual_version.to_string(),
            host_version: expected_version.to_string(),
        },
        LibraryError::ParseVersionError(error) => LoadError::PluginFailed {
            reason: format!(
                "unparseable plugin-api version: {}",
                one_line(&error.to_string())
            ),
        },
        LibraryError::RootModule {
            err: RootModuleError::Unwound,
            ..
        } => LoadError::PanickedWhileLoading {
            reason: "the root module constructor panicked".to_owned(),
        },
        LibraryError::RootModule { err, .. } => LoadError::PluginFailed {
            reason: one_line(&err.to_string()),
        },
        LibraryError::AbiInstability(report) => {
            let full_report = report.to_string();
            tracing::debug!(path = %private_path.display(), report = %full_report, "abi_stable layout report");
            LoadError::IncompatibleAbi {
                summary: summarize_layout_report(&full_report),
                full_report,
            }
        }
        LibraryError::InvalidAbiHeader(_) | LibraryError::InvalidCAbi { .. } => {
            LoadError::IncompatibleAbi {
                summary: "the plugin was built with an incompatible abi_stable or Rust C ABI"
                    .to_owned(),
                full_report: String::new(),
            }
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => library_error_to_load_error(first, private_path),
            None => LoadError::PluginFailed {
                reason: "unknown abi_stable error".to_owned(),
            },
        },
    }
}

/// abi_stable's layout report runs to hundreds of lines; the operator needs the gist. The
/// report ends each mismatch with `Error:<kind>`, `Expected:`, `<value>`, `Found:`, `<value>`.
fn summarize_layout_report(report: &str) -> String {
    let lines: Vec<&str> = report
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let value_after = |label: &str, from: usize| {
        lines[from..]
            .iter()
            .position(|line| *line == label)
            .and_then(|offset| lines.get(from + offset + 1))
            .copied()
    };
    let mismatch = lines
        .iter()
        .position(|line| line.starts_with("Error:"))
        .map(|index| {
            let kind = lines[index].trim_start_matches("Error:").trim();
            let mut text = kind.to_owned();
            if let (Some(expected), Some(found)) = (
                value_after("Expected:", index),
                value_after("Found:", index),
            ) {
                text.push_str(&format!(": expected {expected}, found {found}"));
            }
            text
        });
    match mismatch {
        Some(mismatch) => format!(
            "the plugin's root module layout differs from this host's ({})",
            truncate(&mismatch, 200)
        ),
        None => "the plugin's root module layout differs from this host's".to_owned(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(text: &str, max_chars: usize) -> String {
    let one = one_line(text);
    match one.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &one[..cut]),
        None => one,
    }
}
