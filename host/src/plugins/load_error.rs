//! Why a plugin file was refused. Each variant displays as one line an operator can act on;
//! none of them stops the host from starting or serving.

use std::path::PathBuf;

#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the file: {reason}")]
    Unreadable { reason: String },
    #[error("{file_name} is not a regular file ({kind}); the host reads only regular files (or symlinks to them) from the plugins folder")]
    NotRegularFile {
        file_name: String,
        kind: &'static str,
    },
    #[error("the file is {size} bytes, over the {limit}-byte limit for a plugin")]
    TooLarge { size: u64, limit: u64 },
    #[error("not a shared object: the file is empty")]
    EmptyFile,
    #[error("not a shared object: {reason}")]
    NotSharedObject { reason: String },
    #[error("not a connector plugin: the library exports no abi_stable root module")]
    NotConnectorPlugin,
    #[error("incompatible plugin-api version: the plugin was built against {plugin_version}, this host speaks {host_version}; rebuild the plugin against plugin-api {}", compatibility_line(.host_version))]
    IncompatiblePluginApiVersion {
        plugin_version: String,
        host_version: String,
    },
    #[error("incompatible ABI: {summary}; rebuild the plugin against this host's plugin-api")]
    IncompatibleAbi {
        summary: String,
        /// abi_stable's full layout report (hundreds of lines), also logged at debug level.
        full_report: String,
    },
    #[error("the plugin panicked while loading: {reason}")]
    PanickedWhileLoading { reason: String },
    #[error("cannot read metadata: {reason}")]
    MetadataUnavailable { reason: String },
    #[error("the plugin failed to load: {reason}")]
    PluginFailed { reason: String },
    #[error("invalid metadata: {reason}")]
    InvalidMetadata { reason: String },
    #[error("factory id {factory_id:?} is already provided by {provided_by}, which keeps serving it (the file already serving a factory keeps it); remove one of the two files")]
    DuplicateFactoryId {
        factory_id: String,
        provided_by: PathBuf,
    },
    #[error("not in allowlist: build {sha256} is not among the allowed SHA-256 digests")]
    NotInAllowlist { sha256: String },
    #[error("unsigned: no {file_name}.minisig beside it, and --trusted-plugin-key requires one; sign it with `minisign -S -s key.sec -m {file_name}`")]
    Unsigned { file_name: String },
    #[error("bad signature: {file_name}.minisig {problem}; sign it again with `minisign -S -s key.sec -m {file_name}`")]
    BadSignature { file_name: String, problem: String },
    #[error("untrusted signing key: {file_name}.minisig is signed by key {key_id}, not by a --trusted-plugin-key; sign it with a trusted key, or trust key {key_id}'s public key file")]
    UntrustedSigningKey { file_name: String, key_id: String },
    #[error("signature for other bytes: {file_name}.minisig by key {key_id} was made for another file or build; sign this build with `minisign -S -s key.sec -m {file_name}`")]
    SignatureForOtherBytes { file_name: String, key_id: String },
    #[error("signed for another file name: {file_name}.minisig's trusted comment names file:{signed_name}; install it as {signed_name} (with {signed_name}.minisig beside it), or have it signed as {file_name}")]
    SignedForAnotherName {
        file_name: String,
        signed_name: String,
    },
    #[error("{reason}")]
    Untrusted { reason: String },
    #[error("the new build {plugin_version} ({sha256_prefix}) rejects the saved config of the live connector {connector_id:?}{}: {reason}; the previous build keeps serving. Give a new field #[serde(default)], or migrate saved configs with SmsConnector::migrate_config (docs/writing-a-connector.md, \"Evolving your config\")", fields_in_words(.fields))]
    RejectsLiveConfig {
        plugin_version: String,
        /// The first 12 hex digits of the refused build's SHA-256.
        sha256_prefix: String,
        connector_id: String,
        /// The config fields the build refused (`region`), when its error names them.
        fields: Vec<String>,
        reason: String,
    },
    #[error("cannot make the private copy: {reason}")]
    PrivateCopyFailed { reason: String },
}

impl LoadError {
    /// Whether the file may simply not be completely written yet: such a file is retried on
    /// its next change instead of being reported as refused.
    pub fn may_be_incomplete(&self) -> bool {
        match self {
            LoadError::EmptyFile => true,
            LoadError::NotSharedObject { reason } => {
                reason.starts_with("malformed ELF") || reason.starts_with("truncated ELF")
            }
            _ => false,
        }
    }
}

impl LoadError {
    /// Whether the file and its `.minisig` may simply not both have arrived yet: the plugin
    /// file without its signature, or with the one of the build before (or after) it, or a
    /// signature still being written.
    pub fn may_await_signature(&self) -> bool {
        matches!(
            self,
            LoadError::Unsigned { .. }
                | LoadError::SignatureForOtherBytes { .. }
                | LoadError::BadSignature { .. }
        )
    }
}

/// ` (field region)` / ` (fields a, b)`, or nothing when no field is known.
fn fields_in_words(fields: &[String]) -> String {
    match fields {
        [] => String::new(),
        [field] => format!(" (field {field})"),
        fields => format!(" (fields {})", fields.join(", ")),
    }
}

/// The plugin-api versions a host of `host_version` loads, as semver reads them: `1.x` for
/// 1.0.0 and later (same major), `0.2.x` for 0.2.z.
fn compatibility_line(host_version: &str) -> String {
    let mut parts = host_version.split('.');
    match (parts.next(), parts.next()) {
        (Some("0"), Some(minor)) => format!("0.{minor}.x"),
        (Some(major), _) => format!("{major}.x (any {major}.y loads on this host)"),
        (None, _) => host_version.to_owned(),
    }
}
