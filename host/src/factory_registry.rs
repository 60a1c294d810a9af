//! The connector factories provided by loaded plugin files, and what became of every file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::load_error::LoadError;
use crate::plugin_loader::{LoadedPlugin, PluginLoader};

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
}

/// The outcome for one file of the plugins folder.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginFileReport {
    #[schema(value_type = String)]
    pub path: PathBuf,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub status: PluginFileStatus,
    pub factory_id: Option<String>,
    pub plugin_version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PluginFileStatus {
    Loaded,
    Rejected,
}

/// Factories by id. Immutable once built: a change builds a new registry and swaps it in.
#[derive(Clone, Default)]
pub struct FactoryRegistry {
    factories: BTreeMap<String, Arc<Factory>>,
    files: Vec<PluginFileReport>,
}

impl FactoryRegistry {
    pub fn get(&self, factory_id: &str) -> Option<&Arc<Factory>> {
        self.factories.get(factory_id)
    }

    pub fn factories(&self) -> impl Iterator<Item = &Arc<Factory>> {
        self.factories.values()
    }

    pub fn files(&self) -> &[PluginFileReport] {
        &self.files
    }

    /// Loads every plugin file of `folder` (in name order, so the outcome of a factory id
    /// provided twice does not depend on directory order) and logs each outcome once.
    pub fn scan_folder(loader: &PluginLoader, folder: &Path) -> std::io::Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| is_plugin_file_name(path) && path.is_file())
            .collect();
        paths.sort();
        let mut registry = FactoryRegistry::default();
        for path in paths {
            let outcome = loader.load(&path);
            registry.add_outcome(path, outcome);
        }
        Ok(registry)
    }

    fn add_outcome(&mut self, path: PathBuf, outcome: Result<LoadedPlugin, LoadError>) {
        let outcome =
            outcome.and_then(
                |plugin| match self.factories.get(&plugin.metadata.connector.id) {
                    Some(existing) => Err(LoadError::DuplicateFactoryId {
                        factory_id: plugin.metadata.connector.id.clone(),
                        provided_by: existing.source_path.clone(),
                    }),
                    None => Ok(plugin),
                },
            );
        let report = match outcome {
            Ok(plugin) => {
                let metadata = &plugin.metadata;
                tracing::info!(
                    path = %path.display(),
                    factory_id = %metadata.connector.id,
                    plugin_version = %metadata.plugin_version,
                    sha256 = %plugin.sha256,
                    "plugin loaded"
                );
                let report = PluginFileReport {
                    path: path.clone(),
                    size: Some(plugin.size),
                    sha256: Some(plugin.sha256.clone()),
                    status: PluginFileStatus::Loaded,
                    factory_id: Some(metadata.connector.id.clone()),
                    plugin_version: Some(metadata.plugin_version.clone()),
                    error: None,
                };
                let factory = Factory {
                    plugin,
                    source_path: path,
                    loaded_at: SystemTime::now(),
                };
                self.factories
                    .insert(factory.id().to_owned(), Arc::new(factory));
                report
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), reason = %error, "plugin rejected");
                PluginFileReport {
                    size: std::fs::metadata(&path).ok().map(|metadata| metadata.len()),
                    path,
                    sha256: None,
                    status: PluginFileStatus::Rejected,
                    factory_id: None,
                    plugin_version: None,
                    error: Some(error.to_string()),
                }
            }
        };
        self.files.push(report);
    }
}

/// `*.so`, not hidden and not a temporary name: a file being copied in is named otherwise
/// until it is complete.
pub fn is_plugin_file_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
        return false;
    };
    !name.starts_with('.') && name.ends_with(".so")
}
