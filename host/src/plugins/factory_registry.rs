//! The connector factories the loaded plugins provide, and a report on every plugin file seen.
//! Immutable: the plugins folder builds a new registry on every change and swaps it in.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::plugins::loader::LoadedPlugin;
use crate::secret_redaction::SecretRedactor;
use crate::secrets::SecretKeys;

/// A factory: a loaded plugin build and the file it came from.
#[derive(Clone)]
pub struct Factory {
    pub plugin: LoadedPlugin,
    pub source_path: PathBuf,
    pub loaded_at: SystemTime,
}

impl Factory {
    pub fn id(&self) -> &str {
        &self.plugin.metadata.connector.id
    }

    /// What keeps a config of this factory's secrets (the fields its metadata marks
    /// confidential) out of errors, receipts and log lines.
    pub fn secret_redactor(&self, config: &serde_json::Value) -> SecretRedactor {
        let keys = SecretKeys::new(self.plugin.metadata.connector.confidential_keys());
        SecretRedactor::for_config(&keys, config)
    }
}

/// What became of one plugin file (or one earlier build of it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"path": "/srv/connector-host/plugins/libmock_sms.so", "size": 4194304, "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "status": "loaded", "factoryId": "mock-short-message-service", "pluginVersion": "0.1.0", "loadedAt": 1795767771508_i64}))]
pub struct PluginFileReport {
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub status: PluginFileStatus,
    pub factory_id: Option<String>,
    pub plugin_version: Option<String>,
    /// The one-line reason, for `rejected` and `incomplete`.
    pub error: Option<String>,
    /// When this build was loaded, in milliseconds since the Unix epoch.
    pub loaded_at: Option<i64>,
    /// With `--trusted-plugin-key`: the id of the key whose minisign signature this build
    /// loaded with, 16 upper-case hex digits as minisign prints it.
    pub signer_key_id: Option<String>,
    /// With `--trusted-plugin-key`: that signature's trusted comment (signed with the file).
    pub trusted_comment: Option<String>,
    /// Where a serving build runs: `in-process`, or `process` (`--plugin-isolation
    /// process`); null for other rows.
    #[schema(value_type = Option<String>, example = "process")]
    pub isolation: Option<&'static str>,
    /// A serving build's worker processes (`process` only): how many, how many run, how often
    /// one was replaced, and the last crash.
    pub workers: Option<crate::isolation::pool::PoolHealth>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginFileStatus {
    /// Its build provides a factory.
    Loaded,
    /// Refused; the error says why. Retried when the file changes.
    Rejected,
    /// Looks half-written (empty, truncated ELF): retried on its next change, not an error yet.
    Incomplete,
    /// With `--trusted-plugin-key`: the file and its `.minisig` do not match yet, and one of
    /// them arrived less than 2 s ago; the other is awaited (the error says what is missing)
    /// while the build before keeps serving. Reported as `rejected` if nothing comes.
    Pending,
    /// An earlier build of a file, replaced by a newer one. Only the 3 most recent superseded
    /// builds of each factory are listed.
    Superseded,
    /// The file was deleted; its factory is gone (a live connector built from it keeps running).
    Removed,
}

pub fn millis_since_epoch(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Factories by id, and the file reports.
#[derive(Clone, Default)]
pub struct FactoryRegistry {
    factories: BTreeMap<String, Arc<Factory>>,
    files: Vec<PluginFileReport>,
}

impl FactoryRegistry {
    pub fn new(factories: BTreeMap<String, Arc<Factory>>, files: Vec<PluginFileReport>) -> Self {
        Self { factories, files }
    }

    pub fn get(&self, factory_id: &str) -> Option<&Arc<Factory>> {
        self.factories.get(factory_id)
    }

    pub fn factories(&self) -> impl Iterator<Item = &Arc<Factory>> {
        self.factories.values()
    }

    pub fn files(&self) -> &[PluginFileReport] {
        &self.files
    }

    /// The reports, each serving build's with where it runs and its workers' health now.
    pub fn files_with_workers(&self) -> Vec<PluginFileReport> {
        let mut files = self.files.clone();
        for report in &mut files {
            if report.status != PluginFileStatus::Loaded {
                continue;
            }
            let serving = report
                .factory_id
                .as_deref()
                .and_then(|factory_id| self.factories.get(factory_id))
                .filter(|factory| Some(&factory.plugin.sha256) == report.sha256.as_ref());
            if let Some(factory) = serving {
                report.isolation = Some(factory.plugin.module.isolation());
                report.workers = factory.plugin.module.worker_health();
            }
        }
        files
    }
}

/// `*.so`, not hidden: a file being copied in under a temporary name (`.x.so.tmp`, `x.part`)
/// is ignored until it is renamed into place.
pub fn is_plugin_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".so")
}
