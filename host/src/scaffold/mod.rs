//! `connector-host new-connector NAME`: a vendor crate that builds as it is, outside this
//! workspace (as `cargo new` or `spin new` would): `Cargo.toml` (cdylib + rlib, plugin-api),
//! a working connector in `src/lib.rs` (config, metadata, form items, `step`), its README and
//! config template, unit tests and a test that runs the conformance kit.
//!
//! plugin-api comes from the `connector-host` registry by version (`.cargo/config.toml` names
//! the registry's index), never from crates.io, whose `plugin_api` is an unrelated crate; or,
//! to build against an unreleased host, from a source folder (`--plugin-api DIR`).
//!
//! The files are the templates under `template/`, embedded in the binary, with a few
//! `__PLACEHOLDER__`s filled in (`{{code}}` in SMS templates is left alone).

use std::path::{Path, PathBuf};

/// The registry index a new connector's `.cargo/config.toml` names unless told otherwise. A
/// placeholder that never resolves (`.invalid`): cargo fails with the name, never reaches a
/// stranger's server, and the vendor replaces it with the real index.
pub const PLACEHOLDER_REGISTRY_INDEX: &str = "sparse+https://connector-host.invalid/index/";

/// Where a new connector gets plugin-api from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginApiSource {
    /// The `connector-host` registry at this index URL, by version: what a vendor ships with.
    Registry { index: String },
    /// A plugin-api source folder (a checkout of an unreleased host), by path.
    Folder(PathBuf),
}

impl Default for PluginApiSource {
    fn default() -> Self {
        Self::Registry {
            index: PLACEHOLDER_REGISTRY_INDEX.to_owned(),
        }
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct ScaffoldRequest {
    /// The crate name and factory id: lowercase letters, digits and `-`.
    pub name: String,
    /// The folder the crate's folder is created in.
    pub parent_dir: PathBuf,
    pub plugin_api: PluginApiSource,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ScaffoldOutcome {
    pub crate_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub library_file_name: String,
    /// plugin-api comes from the registry and `.cargo/config.toml` holds the placeholder
    /// index: the crate builds once the vendor writes the real one.
    pub registry_index_is_placeholder: bool,
}

const FILES: [(&str, &str); 7] = [
    ("Cargo.toml", include_str!("template/Cargo.toml.in")),
    (
        ".cargo/config.toml",
        include_str!("template/cargo-config.toml.in"),
    ),
    ("src/lib.rs", include_str!("template/lib.rs.in")),
    ("README.md", include_str!("template/README.md.in")),
    (
        "config-template.json",
        include_str!("template/config-template.json.in"),
    ),
    (
        "tests/conformance.rs",
        include_str!("template/conformance.rs.in"),
    ),
    (".gitignore", include_str!("template/gitignore.in")),
];

/// Checks a connector name; the error says what a good one looks like.
pub fn check_name(name: &str) -> Result<(), String> {
    let well_formed = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a connector name: use lowercase letters, digits and single dashes, starting with a letter (e.g. acme-sms)"
        ))
    }
}

/// `acme-sms` → `AcmeSms`.
fn type_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut characters = word.chars();
            match characters.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + characters.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `acme-sms` → `Acme SMS`, a name for the console until the vendor writes their own.
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|word| match word {
            "sms" => "SMS".to_owned(),
            "api" => "API".to_owned(),
            _ => type_name(word),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The registry dependency: the major.minor of the plugin-api this host speaks, the oldest 1.x
/// with everything the template's code uses (`1.0` and `^1.0` mean the same to cargo).
fn registry_dependency() -> String {
    let major_minor = plugin_api::PLUGIN_API_VERSION
        .splitn(3, '.')
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    format!("plugin-api = {{ version = \"{major_minor}\", registry = \"connector-host\" }}")
}

/// A TOML basic string's content: `\` and `"` escaped (paths and URLs rarely hold them, but
/// the file must stay valid).
fn toml_escaped(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

fn check_registry_index(index: &str) -> Result<(), String> {
    let well_formed = [
        "sparse+https://",
        "sparse+http://",
        "https://",
        "ssh://",
        "file://",
    ]
    .iter()
    .any(|scheme| index.starts_with(scheme))
        && !index.chars().any(char::is_control);
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "{index:?} is not a registry index URL: use the registry's sparse index (sparse+https://...) or git index (https://...)"
        ))
    }
}

fn folder_dependency(plugin_api_dir: &Path) -> Result<String, String> {
    let manifest = plugin_api_dir.join("Cargo.toml");
    let manifest_text = std::fs::read_to_string(&manifest).map_err(|error| {
        format!(
            "cannot read {} ({error}): pass --plugin-api with the folder of plugin-api's source",
            manifest.display()
        )
    })?;
    if !manifest_text.contains("name = \"plugin-api\"") {
        return Err(format!(
            "{} is not plugin-api's manifest",
            manifest.display()
        ));
    }
    let absolute = std::fs::canonicalize(plugin_api_dir)
        .map_err(|error| format!("cannot resolve {}: {error}", plugin_api_dir.display()))?;
    let escaped = toml_escaped(&absolute.display().to_string());
    Ok(format!(
        "# A plugin-api source folder (new-connector --plugin-api); to ship, depend on a release:\n# {}\nplugin-api = {{ path = \"{escaped}\" }}",
        registry_dependency()
    ))
}

/// Writes the crate; refuses a folder that exists (nothing is overwritten).
pub fn scaffold_connector(request: &ScaffoldRequest) -> Result<ScaffoldOutcome, String> {
    check_name(&request.name)?;
    let (dependency, registry_index) = match &request.plugin_api {
        PluginApiSource::Registry { index } => {
            check_registry_index(index)?;
            (registry_dependency(), index.as_str())
        }
        PluginApiSource::Folder(dir) => (folder_dependency(dir)?, PLACEHOLDER_REGISTRY_INDEX),
    };
    let registry_index_note = if registry_index == PLACEHOLDER_REGISTRY_INDEX {
        "A placeholder: replace it with the registry's index URL (or create the crate with\n# `connector-host new-connector --registry-index URL`)."
    } else {
        "Written by `connector-host new-connector --registry-index`."
    };
    let crate_dir = request.parent_dir.join(&request.name);
    if crate_dir.exists() {
        return Err(format!(
            "{} exists already; choose another name or folder (nothing was written)",
            crate_dir.display()
        ));
    }
    let crate_ident = request.name.replace('-', "_");
    let config_template = FILES
        .iter()
        .find(|(path, _)| *path == "config-template.json")
        .map(|(_, text)| text.trim_end())
        .unwrap_or_default();
    let fill = |text: &str| {
        text.replace("__PLUGIN_API_DEPENDENCY__", &dependency)
            .replace("__REGISTRY_INDEX_NOTE__", registry_index_note)
            .replace("__REGISTRY_INDEX__", &toml_escaped(registry_index))
            .replace("__CONFIG_TEMPLATE__", config_template)
            .replace("__CRATE_NAME__", &request.name)
            .replace("__CRATE_IDENT__", &crate_ident)
            .replace("__FACTORY_ID__", &request.name)
            .replace("__TYPE_NAME__", &type_name(&request.name))
            .replace("__DISPLAY_NAME__", &display_name(&request.name))
    };
    let mut files = Vec::new();
    for (relative_path, template) in FILES {
        let path = crate_dir.join(relative_path);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        }
        std::fs::write(&path, fill(template))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        files.push(path);
    }
    Ok(ScaffoldOutcome {
        library_file_name: format!("lib{crate_ident}.so"),
        registry_index_is_placeholder: matches!(
            request.plugin_api,
            PluginApiSource::Registry { .. }
        ) && registry_index == PLACEHOLDER_REGISTRY_INDEX,
        crate_dir,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_turned_into_rust_names() {
        assert!(check_name("acme-sms").is_ok());
        assert!(check_name("sms2").is_ok());
        for bad in [
            "", "Acme", "acme_sms", "-acme", "acme-", "a--b", "2sms", "acme sms",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(type_name("acme-sms"), "AcmeSms");
        assert_eq!(display_name("acme-sms-api"), "Acme SMS API");
    }

    /// plugin-api's source folder in this checkout.
    fn this_plugin_api() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-api")
    }

    fn read(crate_dir: &Path, file: &str) -> String {
        std::fs::read_to_string(crate_dir.join(file)).unwrap()
    }

    /// The string at `keys` in a TOML file of the crate (which must parse).
    fn toml_string(crate_dir: &Path, file: &str, keys: &[&str]) -> Option<String> {
        use toml::de::{DeTable, DeValue};
        let text = read(crate_dir, file);
        let table = DeTable::parse(&text).unwrap();
        let mut value = None;
        let mut current = table.get_ref();
        for (position, key) in keys.iter().enumerate() {
            let found = current
                .iter()
                .find(|(name, _)| name.get_ref().as_ref() == *key)?
                .1
                .get_ref();
            match found {
                DeValue::Table(inner) => current = inner,
                DeValue::String(text) if position + 1 == keys.len() => {
                    value = Some(text.to_string())
                }
                _ => return None,
            }
        }
        value
    }

    #[test]
    fn every_placeholder_is_filled_and_nothing_is_overwritten() {
        let scratch = tempfile::tempdir().unwrap();
        let request = ScaffoldRequest {
            name: "acme-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::default(),
        };
        let outcome = scaffold_connector(&request).unwrap();
        assert_eq!(outcome.library_file_name, "libacme_sms.so");
        assert_eq!(outcome.files.len(), FILES.len());
        for file in &outcome.files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                !text.contains("__"),
                "{} keeps a placeholder",
                file.display()
            );
        }
        let library = read(&outcome.crate_dir, "src/lib.rs");
        assert!(library.contains("pub struct AcmeSms {"));
        assert!(library.contains("plugin_api::export_sms_connector!(AcmeSms);"));
        let again = scaffold_connector(&request).unwrap_err();
        assert!(again.contains("exists already"), "{again}");
    }

    #[test]
    fn by_default_plugin_api_comes_from_the_connector_host_registry_by_version() {
        let scratch = tempfile::tempdir().unwrap();
        let outcome = scaffold_connector(&ScaffoldRequest {
            name: "acme-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::default(),
        })
        .unwrap();
        assert!(outcome.registry_index_is_placeholder);
        let manifest = read(&outcome.crate_dir, "Cargo.toml");
        let (major, rest) = plugin_api::PLUGIN_API_VERSION.split_once('.').unwrap();
        let minor = rest.split('.').next().unwrap();
        // Never a bare `plugin-api = "1"`: that is crates.io's unrelated `plugin_api`.
        let dependency = format!(
            "\nplugin-api = {{ version = \"{major}.{minor}\", registry = \"connector-host\" }}\n"
        );
        assert!(manifest.contains(&dependency), "{manifest}");
        assert_eq!(
            toml_string(
                &outcome.crate_dir,
                "Cargo.toml",
                &["dependencies", "plugin-api", "registry"]
            )
            .as_deref(),
            Some("connector-host")
        );
        let index = ["registries", "connector-host", "index"];
        assert_eq!(
            toml_string(&outcome.crate_dir, ".cargo/config.toml", &index).as_deref(),
            Some(PLACEHOLDER_REGISTRY_INDEX)
        );

        let given = scaffold_connector(&ScaffoldRequest {
            name: "other-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::Registry {
                index: "sparse+https://registry.example.com/index/".to_owned(),
            },
        })
        .unwrap();
        assert!(!given.registry_index_is_placeholder);
        assert_eq!(
            toml_string(&given.crate_dir, ".cargo/config.toml", &index).as_deref(),
            Some("sparse+https://registry.example.com/index/")
        );

        let refused = scaffold_connector(&ScaffoldRequest {
            name: "third-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::Registry {
                index: "registry.example.com".to_owned(),
            },
        })
        .unwrap_err();
        assert!(refused.contains("not a registry index URL"), "{refused}");
        assert!(!scratch.path().join("third-sms").exists());
    }

    #[test]
    fn a_plugin_api_folder_is_a_path_dependency_and_must_be_plugin_api() {
        let scratch = tempfile::tempdir().unwrap();
        let outcome = scaffold_connector(&ScaffoldRequest {
            name: "acme-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::Folder(this_plugin_api()),
        })
        .unwrap();
        assert!(!outcome.registry_index_is_placeholder);
        let path = toml_string(
            &outcome.crate_dir,
            "Cargo.toml",
            &["dependencies", "plugin-api", "path"],
        )
        .unwrap();
        assert_eq!(
            Path::new(&path),
            std::fs::canonicalize(this_plugin_api()).unwrap()
        );
        let wrong_plugin_api = scaffold_connector(&ScaffoldRequest {
            name: "other-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api: PluginApiSource::Folder(scratch.path().to_owned()),
        })
        .unwrap_err();
        assert!(
            wrong_plugin_api.contains("--plugin-api"),
            "{wrong_plugin_api}"
        );
    }
}
