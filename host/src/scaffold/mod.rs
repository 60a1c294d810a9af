//! `connector-host new-connector NAME`: a vendor crate that builds as it is, outside this
//! workspace (as `cargo new` or `spin new` would): `Cargo.toml` (cdylib + rlib, plugin-api),
//! a working connector in `src/lib.rs` (config, metadata, form items, `step`), its README and
//! config template, unit tests and a test that runs the conformance kit.
//!
//! The files are the templates under `template/`, embedded in the binary, with a few
//! `__PLACEHOLDER__`s filled in (`{{code}}` in SMS templates is left alone).

use std::path::{Path, PathBuf};

/// Where plugin-api's source was when this host was built: the default dependency of a new
/// connector (a host built from a checkout scaffolds against that checkout).
const BUILT_PLUGIN_API_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-api");

/// What to create.
#[derive(Debug, Clone)]
pub struct ScaffoldRequest {
    /// The crate name and factory id: lowercase letters, digits and `-`.
    pub name: String,
    /// The folder the crate's folder is created in.
    pub parent_dir: PathBuf,
    /// plugin-api's folder; `None`: the one this host was built from.
    pub plugin_api_dir: Option<PathBuf>,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct ScaffoldOutcome {
    pub crate_dir: PathBuf,
    pub files: Vec<PathBuf>,
    pub library_file_name: String,
}

const FILES: [(&str, &str); 6] = [
    ("Cargo.toml", include_str!("template/Cargo.toml.in")),
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

fn plugin_api_dependency(plugin_api_dir: &Path) -> Result<String, String> {
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
    // TOML basic strings escape `\` and `"`; paths rarely hold them, but must stay valid.
    let escaped = absolute
        .display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    Ok(format!("plugin-api = {{ path = \"{escaped}\" }}"))
}

/// Writes the crate; refuses a folder that exists (nothing is overwritten).
pub fn scaffold_connector(request: &ScaffoldRequest) -> Result<ScaffoldOutcome, String> {
    check_name(&request.name)?;
    let plugin_api_dir = request
        .plugin_api_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(BUILT_PLUGIN_API_DIR));
    let dependency = plugin_api_dependency(&plugin_api_dir)?;
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

    #[test]
    fn every_placeholder_is_filled_and_nothing_is_overwritten() {
        let scratch = tempfile::tempdir().unwrap();
        let request = ScaffoldRequest {
            name: "acme-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api_dir: None,
        };
        let outcome = scaffold_connector(&request).unwrap();
        assert_eq!(outcome.library_file_name, "libacme_sms.so");
        for file in &outcome.files {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                !text.contains("__"),
                "{} keeps a placeholder",
                file.display()
            );
        }
        let library = std::fs::read_to_string(outcome.crate_dir.join("src/lib.rs")).unwrap();
        assert!(library.contains("pub struct AcmeSms {"));
        assert!(library.contains("plugin_api::export_sms_connector!(AcmeSms);"));
        let manifest = std::fs::read_to_string(outcome.crate_dir.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("plugin-api = { path = \"/"), "{manifest}");
        let again = scaffold_connector(&request).unwrap_err();
        assert!(again.contains("exists already"), "{again}");
        let wrong_plugin_api = scaffold_connector(&ScaffoldRequest {
            name: "other-sms".to_owned(),
            parent_dir: scratch.path().to_owned(),
            plugin_api_dir: Some(scratch.path().to_owned()),
        })
        .unwrap_err();
        assert!(
            wrong_plugin_api.contains("--plugin-api"),
            "{wrong_plugin_api}"
        );
    }
}
