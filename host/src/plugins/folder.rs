//! The plugins folder, reconciled with what is loaded: drop-in, upgrade and removal of plugin
//! files without a restart.
//!
//! Each reconcile lists the folder and loads every file that is new or changed (by size,
//! modification time and inode, and, when signatures are required, those of its `.minisig`:
//! a signature dropped beside a refused file loads it), then rebuilds the factory registry:
//! - a file that loads provides its factory; the first file (by name) wins a factory id;
//! - a new build at the same path replaces the old one; when the old one backs the live
//!   connector, the new build must accept the live config first, or the old build keeps
//!   serving (an upgrade never leaves the operator without a working connector);
//! - a file that looks half-written is `incomplete` and retried on its next change;
//! - a refused file is reported, and a build it replaced keeps serving;
//! - a deleted file's factory disappears (a live connector built from it keeps running on the
//!   loaded code: libraries are never unloaded).
//!
//! Trust, as sshd's StrictModes: the folder and every file must not be writable by group or
//! others, and must be owned by root or by the user the host runs as. A plugin file may be a
//! symlink; then every directory its target (or a link on the way) lives in, up to `/`, is
//! held to the same rule.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::plugins::module::PluginInstance;

use crate::plugins::config_migration::{instantiate_or_migrate, refused_fields};
use crate::plugins::factory_registry::{
    is_plugin_file_name, millis_since_epoch, Factory, FactoryRegistry, PluginFileReport,
    PluginFileStatus,
};
use crate::plugins::load_error::LoadError;
use crate::plugins::loader::{LoadedPlugin, PluginLoader};
use crate::plugins::signature::signature_path_for;

/// Superseded and removed builds kept in the report; older ones are dropped.
const HISTORY_LIMIT: usize = 200;

/// Superseded builds kept in the report per factory: enough to see the last upgrades, few
/// enough that a factory upgraded every day does not bury the rest of the report.
const SUPERSEDED_KEPT_PER_FACTORY: usize = 3;

/// How long a plugin file and its `.minisig` may arrive apart and still be one upgrade.
/// Whichever of the two lands first does not match the other yet; for this long the file is
/// `pending` (debug line, no WARN, the serving build keeps serving) instead of refused, so a
/// correct signed upgrade never raises a WARN-based alert. Two seconds cover two `mv`s or
/// two uploads of one release step; a real mismatch is reported as before once it has passed.
const SIGNATURE_GRACE: Duration = Duration::from_secs(2);

/// The build and config of the live connector, for upgrades.
pub struct LiveBuild {
    pub connector_id: String,
    pub factory_id: String,
    pub sha256: String,
    pub config: serde_json::Value,
}

pub struct ReconcileOutcome {
    pub registry: FactoryRegistry,
    /// The live connector's factory was upgraded.
    pub live_upgrade: Option<LiveUpgrade>,
    /// A file waits for its signature (or its signature for it): reconcile again after this
    /// long, even without a change, to report it if nothing came.
    pub reconcile_again_in: Option<Duration>,
}

/// A new build of the live connector's factory that accepts its config.
pub struct LiveUpgrade {
    pub factory: Arc<Factory>,
    /// Built with the live config, or with `migrated_config` when there is one.
    pub instance: PluginInstance,
    /// The config the new build's `migrate_config` made of the refused saved one: it is to be
    /// saved as the connector's config.
    pub migrated_config: Option<serde_json::Value>,
}

/// A plugin file as last seen, and its signature file when signatures are required.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    plugin_file: FileFingerprint,
    signature_file: Option<FileFingerprint>,
    /// For a symlink, why the directories on its way are untrusted: fixing them (or breaking
    /// them) re-evaluates the file.
    symlink_problem: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileFingerprint {
    size: u64,
    modified: Option<SystemTime>,
    inode: u64,
    changed_seconds: i64,
    changed_nanoseconds: i64,
}

impl FileFingerprint {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            size: metadata.len(),
            modified: metadata.modified().ok(),
            inode: metadata.ino(),
            changed_seconds: metadata.ctime(),
            changed_nanoseconds: metadata.ctime_nsec(),
        }
    }
}

#[derive(Clone)]
struct ServedBuild {
    plugin: LoadedPlugin,
    loaded_at: SystemTime,
}

enum ContentOutcome {
    /// The file's content is the build it serves.
    Serving,
    Rejected {
        error: LoadError,
        /// The refused build, when it loaded (it refused the live config): its report shows
        /// which version was refused.
        refused: Option<LoadedPlugin>,
    },
    Incomplete {
        error: LoadError,
    },
    /// The file and its signature do not match yet; one of them may still be arriving.
    AwaitingSignature {
        error: LoadError,
        /// When the file (or its signature) first stopped matching; the grace runs from here.
        since: Instant,
    },
}

impl ContentOutcome {
    /// When an `AwaitingSignature` file is to be looked at again even if nothing changes.
    fn grace_ends(&self) -> Option<Instant> {
        match self {
            ContentOutcome::AwaitingSignature { since, .. } => Some(*since + SIGNATURE_GRACE),
            _ => None,
        }
    }
}

struct TrackedFile {
    fingerprint: Fingerprint,
    content: ContentOutcome,
    /// The build this file provides its factory with: its current content's, or the one before
    /// when the current content was refused.
    serving: Option<ServedBuild>,
}

pub struct PluginFolder {
    dir: PathBuf,
    /// Why the folder itself was untrusted at the last reconcile; a change re-evaluates every file.
    folder_problem: Option<String>,
    files: BTreeMap<PathBuf, TrackedFile>,
    history: VecDeque<PluginFileReport>,
    /// Which file provided each factory id at the last reconcile: it keeps the id while it
    /// still provides it, so a renamed copy never takes a working plugin's place.
    factory_sources: BTreeMap<String, PathBuf>,
    /// False until the first reconcile: files found at start-up did not just arrive, so a
    /// signature mismatch among them is reported at once, not waited for.
    reconciled_before: bool,
}

impl PluginFolder {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            folder_problem: None,
            files: BTreeMap::new(),
            history: VecDeque::new(),
            factory_sources: BTreeMap::new(),
            reconciled_before: false,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Brings the loaded state in line with the folder. Blocking (reads files, dlopen).
    pub fn reconcile(
        &mut self,
        loader: &PluginLoader,
        live: Option<&LiveBuild>,
    ) -> Result<ReconcileOutcome, String> {
        let folder_problem = match std::fs::metadata(&self.dir) {
            Ok(metadata) => trust_problem("plugins folder", &self.dir, &metadata),
            Err(error) => {
                return Err(format!(
                    "cannot read the plugins folder {}: {error}",
                    self.dir.display()
                ))
            }
        };
        let present = self.list_plugin_files()?;
        let folder_trust_changed = folder_problem != self.folder_problem;
        if let (true, Some(problem)) = (folder_trust_changed, &folder_problem) {
            tracing::warn!(reason = %problem, "plugins folder untrusted; no new build loads from it");
        }
        self.folder_problem = folder_problem.clone();

        let removed: Vec<PathBuf> = self
            .files
            .keys()
            .filter(|path| !present.contains_key(*path))
            .cloned()
            .collect();
        for path in removed {
            if let Some(tracked) = self.files.remove(&path) {
                tracing::info!(path = %path.display(), "plugin file removed");
                if let Some(served) = tracked.serving {
                    self.remember(report_for_build(&path, &served, PluginFileStatus::Removed));
                }
            }
        }

        let mut live_upgrade = None;
        let mut changed = BTreeSet::new();
        for (path, metadata) in present {
            let fingerprint = Fingerprint {
                plugin_file: FileFingerprint::of(&metadata),
                signature_file: if loader.requires_signatures() {
                    std::fs::metadata(signature_path_for(&path))
                        .ok()
                        .map(|metadata| FileFingerprint::of(&metadata))
                } else {
                    None
                },
                symlink_problem: symlink_problem(&path),
            };
            let unchanged = self
                .files
                .get(&path)
                .is_some_and(|tracked| tracked.fingerprint == fingerprint);
            let grace_over = self
                .files
                .get(&path)
                .and_then(|tracked| tracked.content.grace_ends())
                .is_some_and(|ends| ends <= Instant::now());
            if unchanged && !folder_trust_changed && !grace_over {
                continue;
            }
            let (previous, awaiting_since) = match self.files.remove(&path) {
                Some(tracked) => (
                    tracked.serving,
                    match tracked.content {
                        ContentOutcome::AwaitingSignature { since, .. } => Some(since),
                        _ => None,
                    },
                ),
                None => (None, None),
            };
            // The file's trust is judged on the descriptor it is read from, not on `metadata`.
            let loaded = match folder_problem.clone() {
                Some(reason) => Err(LoadError::Untrusted { reason }),
                None => loader.load_trusted(&path, |opened| {
                    trust_problem("plugin file", &path, opened)
                        .or_else(|| fingerprint.symlink_problem.clone())
                }),
            };
            // A file that arrives while the host runs may be waiting for its signature, or
            // its signature for it; the grace runs from when they first stopped matching.
            let awaiting_since = self
                .reconciled_before
                .then(|| awaiting_since.unwrap_or_else(Instant::now));
            let tracked = self.accept(
                &path,
                fingerprint,
                loaded,
                Previous {
                    serving: previous,
                    awaiting_since,
                },
                live,
                &mut live_upgrade,
            );
            changed.insert(path.clone());
            self.files.insert(path, tracked);
        }
        self.reconciled_before = true;
        let now = Instant::now();
        let reconcile_again_in = self
            .files
            .values()
            .filter_map(|tracked| tracked.content.grace_ends())
            .min()
            .map(|ends| ends.saturating_duration_since(now));
        Ok(ReconcileOutcome {
            registry: self.registry(&changed),
            live_upgrade,
            reconcile_again_in,
        })
    }

    fn list_plugin_files(&self) -> Result<BTreeMap<PathBuf, std::fs::Metadata>, String> {
        let entries = std::fs::read_dir(&self.dir).map_err(|error| {
            format!(
                "cannot list the plugins folder {}: {error}",
                self.dir.display()
            )
        })?;
        Ok(entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| is_plugin_file_name(path))
            // FIFOs, devices and sockets are listed too: the loader refuses them (without
            // opening them) and the report says why.
            .filter_map(|path| {
                std::fs::metadata(&path)
                    .ok()
                    .filter(|metadata| !metadata.is_dir())
                    .map(|metadata| (path, metadata))
            })
            .collect())
    }

    /// Decides what a new or changed file's load outcome means for the factory it serves.
    fn accept(
        &mut self,
        path: &Path,
        fingerprint: Fingerprint,
        loaded: Result<LoadedPlugin, LoadError>,
        previous: Previous,
        live: Option<&LiveBuild>,
        live_upgrade: &mut Option<LiveUpgrade>,
    ) -> TrackedFile {
        let Previous {
            serving: previous,
            awaiting_since,
        } = previous;
        let keep_previous = |content: ContentOutcome, previous: Option<ServedBuild>| TrackedFile {
            fingerprint: fingerprint.clone(),
            content,
            serving: previous,
        };
        let plugin = match loaded {
            Ok(plugin) => plugin,
            Err(error) if error.may_be_incomplete() => {
                tracing::debug!(path = %path.display(), reason = %error, "plugin file not complete yet; waiting for its next change");
                return keep_previous(ContentOutcome::Incomplete { error }, previous);
            }
            Err(error) => {
                let within_grace = awaiting_since
                    .filter(|since| since.elapsed() < SIGNATURE_GRACE)
                    .filter(|_| error.may_await_signature());
                if let Some(since) = within_grace {
                    tracing::debug!(path = %path.display(), reason = %error, "plugin file and its signature do not match yet; waiting for the other one to arrive");
                    return keep_previous(
                        ContentOutcome::AwaitingSignature { error, since },
                        previous,
                    );
                }
                tracing::warn!(path = %path.display(), reason = %error, previous_build_serving = previous.is_some(), "plugin rejected");
                return keep_previous(
                    ContentOutcome::Rejected {
                        error,
                        refused: None,
                    },
                    previous,
                );
            }
        };
        if previous
            .as_ref()
            .is_some_and(|previous| previous.plugin.sha256 == plugin.sha256)
        {
            // The same build, perhaps signed anew: report the signature it loaded with now.
            let previous = previous.map(|mut previous| {
                previous.plugin.signature = plugin.signature;
                previous
            });
            return keep_previous(ContentOutcome::Serving, previous);
        }
        let served = ServedBuild {
            plugin,
            loaded_at: SystemTime::now(),
        };
        let factory_id = served.plugin.metadata.connector.id.clone();
        let backs_live = live.filter(|live| {
            live.factory_id == factory_id
                && previous
                    .as_ref()
                    .is_some_and(|previous| previous.plugin.sha256 == live.sha256)
        });
        if let Some(live) = backs_live {
            match instantiate_for_live(&served.plugin, live) {
                Ok((instance, migrated_config)) => {
                    let factory = Arc::new(Factory {
                        plugin: served.plugin.clone(),
                        source_path: path.to_owned(),
                        loaded_at: served.loaded_at,
                    });
                    *live_upgrade = Some(LiveUpgrade {
                        factory,
                        instance,
                        migrated_config,
                    });
                }
                Err(error) => {
                    // Logged once per change of the file: an unchanged file is not retried.
                    tracing::warn!(path = %path.display(), reason = %error, "plugin upgrade refused");
                    return keep_previous(
                        ContentOutcome::Rejected {
                            error,
                            refused: Some(served.plugin),
                        },
                        previous,
                    );
                }
            }
        }
        if let Some(previous) = previous {
            self.remember(report_for_build(
                path,
                &previous,
                PluginFileStatus::Superseded,
            ));
        }
        tracing::info!(
            path = %path.display(),
            factory_id = %factory_id,
            plugin_version = %served.plugin.metadata.plugin_version,
            sha256 = %served.plugin.sha256,
            signer_key_id = served
                .plugin
                .signature
                .as_ref()
                .map(|signature| tracing::field::display(&signature.key_id)),
            "plugin loaded"
        );
        TrackedFile {
            fingerprint,
            content: ContentOutcome::Serving,
            serving: Some(served),
        }
    }

    fn remember(&mut self, report: PluginFileReport) {
        if report.status == PluginFileStatus::Superseded {
            // Only the most recent superseded builds of a factory are kept.
            let same_factory = |kept: &PluginFileReport| {
                kept.status == PluginFileStatus::Superseded && kept.factory_id == report.factory_id
            };
            let kept = self
                .history
                .iter()
                .filter(|kept| same_factory(kept))
                .count();
            if kept >= SUPERSEDED_KEPT_PER_FACTORY {
                if let Some(oldest) = self.history.iter().position(same_factory) {
                    self.history.remove(oldest);
                }
            }
        }
        self.history.push_back(report);
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }

    /// The factories and a report per file, then the history. When two files provide one
    /// factory id, the one that provided it at the last reconcile keeps it (it was serving);
    /// among new files the first by name wins. The other is refused, saying which file
    /// keeps the id; the refusal is logged when the refused file has just changed.
    fn registry(&mut self, changed: &BTreeSet<PathBuf>) -> FactoryRegistry {
        let providers = self.factory_providers();
        let mut factories: BTreeMap<String, Arc<Factory>> = BTreeMap::new();
        let mut reports = Vec::new();
        for (path, tracked) in &self.files {
            let mut duplicate_of = None;
            if let Some(served) = &tracked.serving {
                let factory_id = served.plugin.metadata.connector.id.clone();
                match providers
                    .get(&factory_id)
                    .filter(|provider| *provider != path)
                {
                    Some(provider) => duplicate_of = Some(provider.clone()),
                    None => {
                        factories.insert(
                            factory_id,
                            Arc::new(Factory {
                                plugin: served.plugin.clone(),
                                source_path: path.clone(),
                                loaded_at: served.loaded_at,
                            }),
                        );
                    }
                }
            }
            let serves_factory = duplicate_of.is_none() && tracked.serving.is_some();
            let report = file_report(path, tracked, duplicate_of);
            let is_new_duplicate = report.status == PluginFileStatus::Rejected
                && matches!(tracked.content, ContentOutcome::Serving)
                && changed.contains(path);
            if let (true, Some(reason)) = (is_new_duplicate, &report.error) {
                tracing::warn!(path = %path.display(), %reason, "plugin rejected");
            }
            reports.push(report);
            // The file's current content is not what serves: the earlier build that does is
            // reported as loaded too, right after the content's own row.
            if let (false, true, Some(served)) = (
                matches!(tracked.content, ContentOutcome::Serving),
                serves_factory,
                &tracked.serving,
            ) {
                reports.push(report_for_build(path, served, PluginFileStatus::Loaded));
            }
        }
        reports.extend(self.history.iter().rev().cloned());
        self.factory_sources = providers;
        FactoryRegistry::new(factories, reports)
    }

    /// The file to provide each factory id: the one that provided it last time while it
    /// still does, else the first file by name.
    fn factory_providers(&self) -> BTreeMap<String, PathBuf> {
        let mut providers: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (path, tracked) in &self.files {
            let Some(served) = &tracked.serving else {
                continue;
            };
            let factory_id = &served.plugin.metadata.connector.id;
            let incumbent = self.factory_sources.get(factory_id) == Some(path);
            if incumbent || !providers.contains_key(factory_id) {
                providers.insert(factory_id.clone(), path.clone());
            }
        }
        providers
    }
}

/// What a file's tracking held before its change.
struct Previous {
    /// The build it served.
    serving: Option<ServedBuild>,
    /// When it started waiting for its signature; `None` at start-up, when nothing waits.
    awaiting_since: Option<Instant>,
}

/// An instance of a new build for the live connector: with its saved config, or, when the
/// build refuses that config, with the config the build's `migrate_config` makes of it
/// (returned too, to be saved). Refused when neither works.
fn instantiate_for_live(
    plugin: &LoadedPlugin,
    live: &LiveBuild,
) -> Result<(PluginInstance, Option<serde_json::Value>), LoadError> {
    match instantiate_or_migrate(&plugin.module, &live.config) {
        Ok((instance, None)) => Ok((instance, None)),
        Ok((instance, Some(migrated))) => {
            tracing::info!(connector_id = %live.connector_id, factory_id = %live.factory_id, plugin_version = %plugin.metadata.plugin_version, sha256 = %plugin.sha256, "the new build migrated the live connector's saved config");
            Ok((instance, Some(migrated)))
        }
        Err(refusal) => {
            // The refusal may quote the live config's secrets.
            let secret_keys =
                crate::secrets::SecretKeys::new(plugin.metadata.connector.confidential_keys());
            let redactor =
                crate::secret_redaction::SecretRedactor::for_config(&secret_keys, &live.config);
            Err(LoadError::RejectsLiveConfig {
                plugin_version: plugin.metadata.plugin_version.clone(),
                sha256_prefix: plugin.sha256.chars().take(12).collect(),
                connector_id: live.connector_id.clone(),
                fields: refused_fields(&refusal),
                reason: redactor.redact(&refusal.message).into_owned(),
            })
        }
    }
}

fn report_for_build(
    path: &Path,
    served: &ServedBuild,
    status: PluginFileStatus,
) -> PluginFileReport {
    PluginFileReport {
        path: path.to_owned(),
        size: Some(served.plugin.size),
        sha256: Some(served.plugin.sha256.clone()),
        status,
        factory_id: Some(served.plugin.metadata.connector.id.clone()),
        plugin_version: Some(served.plugin.metadata.plugin_version.clone()),
        error: None,
        loaded_at: Some(millis_since_epoch(served.loaded_at)),
        signer_key_id: served
            .plugin
            .signature
            .as_ref()
            .map(|signature| signature.key_id.clone()),
        trusted_comment: served
            .plugin
            .signature
            .as_ref()
            .map(|signature| signature.trusted_comment.clone()),
        isolation: None,
        workers: None,
    }
}

fn file_report(
    path: &Path,
    tracked: &TrackedFile,
    duplicate_of: Option<PathBuf>,
) -> PluginFileReport {
    let unloaded = |status: PluginFileStatus, error: String| PluginFileReport {
        path: path.to_owned(),
        size: Some(tracked.fingerprint.plugin_file.size),
        sha256: None,
        status,
        factory_id: None,
        plugin_version: None,
        error: Some(error),
        loaded_at: None,
        signer_key_id: None,
        trusted_comment: None,
        isolation: None,
        workers: None,
    };
    match (&tracked.content, &tracked.serving) {
        (ContentOutcome::Incomplete { error }, _) => unloaded(
            PluginFileStatus::Incomplete,
            format!("{error} (waiting for the file to be complete)"),
        ),
        (ContentOutcome::AwaitingSignature { error, .. }, _) => unloaded(
            PluginFileStatus::Pending,
            format!(
                "the file and its signature do not match yet; waiting up to {} s for the other \
                 one to arrive ({error})",
                SIGNATURE_GRACE.as_secs()
            ),
        ),
        (
            ContentOutcome::Rejected {
                error,
                refused: Some(refused),
            },
            _,
        ) => PluginFileReport {
            size: Some(refused.size),
            sha256: Some(refused.sha256.clone()),
            factory_id: Some(refused.metadata.connector.id.clone()),
            plugin_version: Some(refused.metadata.plugin_version.clone()),
            ..unloaded(PluginFileStatus::Rejected, error.to_string())
        },
        (
            ContentOutcome::Rejected {
                error: error @ LoadError::RejectsLiveConfig { .. },
                ..
            },
            _,
        )
        | (ContentOutcome::Rejected { error, .. }, None) => {
            unloaded(PluginFileStatus::Rejected, error.to_string())
        }
        (ContentOutcome::Rejected { error, .. }, Some(served)) => unloaded(
            PluginFileStatus::Rejected,
            format!(
                "{error}; the previous build {} keeps serving",
                &served.plugin.sha256[..12]
            ),
        ),
        (ContentOutcome::Serving, Some(served)) => match duplicate_of {
            None => report_for_build(path, served, PluginFileStatus::Loaded),
            Some(provided_by) => PluginFileReport {
                error: Some(
                    LoadError::DuplicateFactoryId {
                        factory_id: served.plugin.metadata.connector.id.clone(),
                        provided_by,
                    }
                    .to_string(),
                ),
                loaded_at: None,
                ..report_for_build(path, served, PluginFileStatus::Rejected)
            },
        },
        // `Serving` always comes with the build it serves.
        (ContentOutcome::Serving, None) => {
            unloaded(PluginFileStatus::Rejected, "no build is loaded".to_owned())
        }
    }
}

/// Symlinks followed from a plugin file before giving up, as the kernel's limit.
const MAX_SYMLINK_HOPS: usize = 40;

/// For a plugin file that is a symlink: why a directory its target, or a symlink on the way,
/// lives in may not be trusted, if one may not. Each such directory and every directory above
/// it up to `/` is held to the folder's rule (not writable by group or others, owned by root
/// or the host's user): whoever can write one of them could swap the code the link leads to.
fn symlink_problem(path: &Path) -> Option<String> {
    let mut current = path.to_owned();
    for _ in 0..MAX_SYMLINK_HOPS {
        let metadata = std::fs::symlink_metadata(&current).ok()?;
        if !metadata.file_type().is_symlink() {
            return None;
        }
        let next = match std::fs::read_link(&current) {
            Ok(target) => current
                .parent()
                .unwrap_or_else(|| Path::new("/"))
                .join(target),
            Err(error) => {
                return Some(format!(
                    "plugin file {}: cannot read the symlink {}: {error}",
                    path.display(),
                    current.display()
                ))
            }
        };
        let directory = next.parent().unwrap_or_else(|| Path::new("/"));
        let directory = match std::fs::canonicalize(directory) {
            Ok(directory) => directory,
            Err(error) => {
                return Some(format!(
                "plugin file {} is a symlink to {}, whose directory cannot be resolved: {error}",
                path.display(),
                next.display()
            ))
            }
        };
        for ancestor in directory.ancestors() {
            let problem = match std::fs::metadata(ancestor) {
                Ok(metadata) => directory_problem(&metadata),
                Err(error) => Some(format!("cannot be read: {error}")),
            };
            if let Some(problem) = problem {
                return Some(format!(
                    "plugin file {} is a symlink to {}, and the directory {} {problem}; keep \
                     symlinked plugin files in directories only root or the host's user can \
                     write, up to /",
                    path.display(),
                    next.display(),
                    ancestor.display()
                ));
            }
        }
        current = next;
    }
    Some(format!(
        "plugin file {} leads through more than {MAX_SYMLINK_HOPS} symlinks",
        path.display()
    ))
}

/// Why a directory on a symlink's way may not be trusted (the folder's rule), if it may not.
fn directory_problem(metadata: &std::fs::Metadata) -> Option<String> {
    let mode = metadata.permissions().mode();
    let owner = metadata.uid();
    let host_user = rustix::process::geteuid().as_raw();
    if mode & 0o022 != 0 {
        Some(format!(
            "is writable by group or others (mode {:o})",
            mode & 0o7777
        ))
    } else if owner != 0 && owner != host_user {
        Some(format!(
            "is owned by uid {owner}, neither root nor the host's user (uid {host_user})"
        ))
    } else {
        None
    }
}

/// Why a path may not be trusted with code the host will run, if it may not.
fn trust_problem(what: &str, path: &Path, metadata: &std::fs::Metadata) -> Option<String> {
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 {
        return Some(format!(
            "{what} {} is writable by group or others (mode {:o}); run chmod go-w on it",
            path.display(),
            mode & 0o777
        ));
    }
    let owner = metadata.uid();
    let host_user = rustix::process::geteuid().as_raw();
    if owner != 0 && owner != host_user {
        return Some(format!(
            "{what} {} is owned by uid {owner}, neither root nor the host's user (uid {host_user})",
            path.display()
        ));
    }
    None
}
