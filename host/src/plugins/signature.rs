//! Signed plugin files (`--trusted-plugin-key`): minisign public keys the operator trusts, and
//! the check of a plugin file's signature `<file>.minisig` against them.
//!
//! The loader reads a plugin file once and hands that buffer here before hashing, copying and
//! loading the very same bytes, so the file cannot be swapped between the check and dlopen.
//! `minisign-verify` decides whether a signature is valid; when it is not, the signature's own
//! parts tell the operator why, one reason each: no signature file, a file that is not a
//! minisign signature or was altered, a key that is not trusted, or a genuine signature by a
//! trusted key made for other bytes (another file, or an earlier build).
//!
//! Key files are minisign's public key format (an `untrusted comment:` line, then the base64
//! key) as `minisign -G` writes them; key ids are shown as minisign prints them, 16 upper-case
//! hex digits.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use serde::Serialize;

use crate::plugins::folder_file::{file_name_of, read_folder_file, FolderFileError};
use crate::plugins::load_error::LoadError;

/// What follows a plugin file's name to name its signature file: `libx.so.minisig`.
pub const SIGNATURE_FILE_SUFFIX: &str = ".minisig";

/// A signature file is a few hundred bytes (minisign caps the trusted comment at 8 KiB);
/// anything larger is not one, and is not read.
const MAX_SIGNATURE_FILE_BYTES: u64 = 16 * 1024;

/// The first two bytes of a signature: `ED` for minisign's default (the file's BLAKE2b-512 is
/// signed), `Ed` for its legacy format (`minisign -l`, the whole file is signed).
const LEGACY_SIGNATURE_ALGORITHM: [u8; 2] = *b"Ed";

/// An 8-byte minisign key id. minisign prints it as a little-endian number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0.iter().rev() {
            write!(formatter, "{byte:02X}")?;
        }
        Ok(())
    }
}

/// What is wrong with a trusted plugin key file.
#[derive(Debug, thiserror::Error)]
pub enum PublicKeyProblem {
    #[error("not a minisign public key: expected an `untrusted comment:` line, then the base64 key line, as `minisign -G` writes them")]
    NotMinisignKey,
    #[error("not a minisign public key: the key line is not a base64 minisign Ed25519 key")]
    BadKeyLine,
    #[error("cannot read it: {0}")]
    Unreadable(std::io::Error),
}

/// A `--trusted-plugin-key` file that cannot be used: one line naming the file.
#[derive(Debug, thiserror::Error)]
#[error("cannot use the trusted plugin key {}: {problem}", .path.display())]
pub struct TrustedPluginKeyError {
    path: PathBuf,
    problem: PublicKeyProblem,
}

/// One public key whose signatures are trusted.
#[derive(Clone)]
pub struct TrustedPluginKey {
    key_id: KeyId,
    public_key: minisign_verify::PublicKey,
    /// The raw Ed25519 key, to tell an altered signature file from one made for other bytes.
    ed25519_key: [u8; 32],
}

impl TrustedPluginKey {
    /// Parses a minisign public key file's text.
    pub fn parse(text: &str) -> Result<Self, PublicKeyProblem> {
        let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
        let (Some(comment), Some(encoded_key), None) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(PublicKeyProblem::NotMinisignKey);
        };
        if !comment.starts_with("untrusted comment:") {
            return Err(PublicKeyProblem::NotMinisignKey);
        }
        let bad_key_line = || PublicKeyProblem::BadKeyLine;
        let public_key =
            minisign_verify::PublicKey::from_base64(encoded_key).map_err(|_| bad_key_line())?;
        // Laid out as signature algorithm (2 bytes), key id (8), Ed25519 key (32); the length
        // was checked by `from_base64`.
        let raw = BASE64.decode(encoded_key).map_err(|_| bad_key_line())?;
        let (Ok(key_id), Ok(ed25519_key)) = (
            <[u8; 8]>::try_from(raw.get(2..10).unwrap_or_default()),
            <[u8; 32]>::try_from(raw.get(10..42).unwrap_or_default()),
        ) else {
            return Err(bad_key_line());
        };
        Ok(Self {
            key_id: KeyId(key_id),
            public_key,
            ed25519_key,
        })
    }

    /// Reads and parses a key file; the error is one line naming the file.
    pub fn read_file(path: &Path) -> Result<Self, TrustedPluginKeyError> {
        let problem = |problem: PublicKeyProblem| TrustedPluginKeyError {
            path: path.to_owned(),
            problem,
        };
        let text = std::fs::read_to_string(path)
            .map_err(|error| problem(PublicKeyProblem::Unreadable(error)))?;
        Self::parse(&text).map_err(problem)
    }

    /// As minisign prints it: 16 upper-case hex digits.
    pub fn key_id(&self) -> String {
        self.key_id.to_string()
    }

    /// Whether the signature's global signature (over its signature and trusted comment) is
    /// this key's: then the signature file is intact, whatever bytes it was made for.
    fn signed_signature_file(&self, parts: &SignatureParts, trusted_comment: &str) -> bool {
        let mut signed = Vec::with_capacity(parts.signature.len() + trusted_comment.len());
        signed.extend_from_slice(&parts.signature);
        signed.extend_from_slice(trusted_comment.as_bytes());
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, self.ed25519_key)
            .verify(&signed, &parts.global_signature)
            .is_ok()
    }
}

/// Who signed a build that loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginSignature {
    /// The signing key's id, 16 upper-case hex digits.
    pub key_id: String,
    /// The signature's trusted comment (signed along with the file).
    pub trusted_comment: String,
}

/// The keys whose signatures are trusted; with any, every plugin file must be signed.
#[derive(Clone)]
pub struct TrustedPluginKeys {
    keys: Vec<TrustedPluginKey>,
}

/// The parts of a signature file `minisign-verify` does not expose.
struct SignatureParts {
    algorithm: [u8; 2],
    key_id: KeyId,
    signature: [u8; 64],
    global_signature: [u8; 64],
}

impl SignatureParts {
    /// Lines 2 and 4 of a signature file that `minisign_verify::Signature::decode` accepted.
    fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines();
        let signature_line = BASE64.decode(lines.nth(1)?).ok()?;
        let global_signature = BASE64.decode(lines.nth(1)?).ok()?;
        Some(Self {
            algorithm: signature_line.get(0..2)?.try_into().ok()?,
            key_id: KeyId(signature_line.get(2..10)?.try_into().ok()?),
            signature: signature_line.get(10..74)?.try_into().ok()?,
            global_signature: global_signature.as_slice().try_into().ok()?,
        })
    }
}

impl TrustedPluginKeys {
    pub fn new(keys: Vec<TrustedPluginKey>) -> Self {
        Self { keys }
    }

    /// The keys in these files; `None` when there are none (signatures are then not checked).
    /// The error is one line naming the file that cannot be used.
    pub fn read_files(paths: &[PathBuf]) -> Result<Option<Self>, TrustedPluginKeyError> {
        if paths.is_empty() {
            return Ok(None);
        }
        let keys = paths
            .iter()
            .map(|path| TrustedPluginKey::read_file(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Self::new(keys)))
    }

    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(TrustedPluginKey::key_id).collect()
    }

    /// Checks `content`, the bytes read from `plugin_path` that will be loaded, against the
    /// signature file beside it.
    pub fn verify_plugin_file(
        &self,
        plugin_path: &Path,
        content: &[u8],
    ) -> Result<PluginSignature, LoadError> {
        let file_name = file_name_of(plugin_path);
        let bad_signature = |problem: String| LoadError::BadSignature {
            file_name: file_name.clone(),
            problem,
        };
        let signature_path = signature_path_for(plugin_path);
        // Never blocks: a FIFO or device named `.minisig` is refused without being opened.
        let signature_file = match read_folder_file(&signature_path, MAX_SIGNATURE_FILE_BYTES) {
            Ok(file) => file,
            Err(FolderFileError::Missing) => return Err(LoadError::Unsigned { file_name }),
            Err(FolderFileError::NotRegularFile { kind }) => {
                return Err(LoadError::NotRegularFile {
                    file_name: file_name_of(&signature_path),
                    kind,
                })
            }
            Err(FolderFileError::TooLarge { .. }) => {
                return Err(bad_signature(format!(
                    "is over {MAX_SIGNATURE_FILE_BYTES} bytes, too large for a signature"
                )))
            }
            Err(FolderFileError::Unreadable(error)) => {
                return Err(bad_signature(format!("cannot be read: {error}")))
            }
        };
        let text = String::from_utf8(signature_file.content)
            .map_err(|_| bad_signature("is not text, so not a minisign signature".to_owned()))?;
        self.verify(&file_name, content, &text)
    }

    /// Checks `content` against the text of its signature file; `file_name` is the plugin
    /// file's, for the messages.
    pub fn verify(
        &self,
        file_name: &str,
        content: &[u8],
        signature_text: &str,
    ) -> Result<PluginSignature, LoadError> {
        let bad_signature = |problem: &str| LoadError::BadSignature {
            file_name: file_name.to_owned(),
            problem: problem.to_owned(),
        };
        let malformed = "is not a minisign signature (four lines: untrusted comment, signature, \
                         trusted comment, global signature)";
        let signature = match minisign_verify::Signature::decode(signature_text) {
            Ok(signature) => signature,
            Err(minisign_verify::Error::UnsupportedAlgorithm) => {
                return Err(bad_signature(
                    "uses a signature algorithm minisign does not make",
                ))
            }
            Err(_) => return Err(bad_signature(malformed)),
        };
        let parts =
            SignatureParts::parse(signature_text).ok_or_else(|| bad_signature(malformed))?;
        if parts.algorithm == LEGACY_SIGNATURE_ALGORITHM {
            return Err(bad_signature(
                "is in minisign's legacy format (`minisign -S -l`), which is not accepted",
            ));
        }
        let signers: Vec<&TrustedPluginKey> = self
            .keys
            .iter()
            .filter(|key| key.key_id == parts.key_id)
            .collect();
        if signers.is_empty() {
            return Err(LoadError::UntrustedSigningKey {
                file_name: file_name.to_owned(),
                key_id: parts.key_id.to_string(),
            });
        }
        if signers
            .iter()
            .any(|key| key.public_key.verify(content, &signature, false).is_ok())
        {
            // The trusted comment is authentic now; a name it binds must be this file's.
            if let Some(signed_name) = signed_file_name(signature.trusted_comment()) {
                if signed_name != file_name {
                    return Err(LoadError::SignedForAnotherName {
                        file_name: file_name.to_owned(),
                        signed_name: signed_name.to_owned(),
                    });
                }
            }
            return Ok(PluginSignature {
                key_id: parts.key_id.to_string(),
                trusted_comment: signature.trusted_comment().to_owned(),
            });
        }
        // Invalid either way; the global signature only tells which mistake to report.
        if signers
            .iter()
            .any(|key| key.signed_signature_file(&parts, signature.trusted_comment()))
        {
            Err(LoadError::SignatureForOtherBytes {
                file_name: file_name.to_owned(),
                key_id: parts.key_id.to_string(),
            })
        } else {
            Err(bad_signature(
                "does not verify: the signature or its trusted comment was altered",
            ))
        }
    }
}

/// The file name a trusted comment binds the signature to: `minisign -S` writes
/// `timestamp:<seconds>\tfile:<name>\thashed`, tab-separated fields, `<name>` the signed file's
/// base name. A comment chosen with `-t` binds none unless one of its tab-separated fields is
/// `file:<name>`.
fn signed_file_name(trusted_comment: &str) -> Option<&str> {
    trusted_comment
        .split('\t')
        .find_map(|field| field.strip_prefix("file:"))
}

/// `libx.so` → `libx.so.minisig`, beside it.
pub fn signature_path_for(plugin_path: &Path) -> PathBuf {
    let mut name = plugin_path.as_os_str().to_owned();
    name.push(SIGNATURE_FILE_SUFFIX);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::factory_registry::is_plugin_file_name;

    // Made by the real minisign CLI: host/tests/fixtures/plugin-signature/make-fixtures.sh.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../../tests/fixtures/plugin-signature/", $name))
        };
    }
    const TRUSTED_KEY: &str = fixture!("trusted.pub");
    const UNTRUSTED_KEY: &str = fixture!("untrusted.pub");
    const BUILD_1: &str = fixture!("build-1.bin");
    const BUILD_1_SIGNATURE: &str = fixture!("build-1.bin.minisig");
    const BUILD_1_SIGNED_BY_UNTRUSTED_KEY: &str = fixture!("build-1.bin.by-untrusted.minisig");
    const BUILD_1_LEGACY_SIGNATURE: &str = fixture!("build-1.bin.legacy.minisig");
    const BUILD_2_SIGNATURE: &str = fixture!("build-2.bin.minisig");

    fn key_id_in_comment(key_file: &str) -> &str {
        key_file
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("untrusted comment: minisign public key "))
            .expect("minisign names the key id in the comment")
    }

    fn trusted() -> TrustedPluginKeys {
        TrustedPluginKeys::new(vec![TrustedPluginKey::parse(TRUSTED_KEY).unwrap()])
    }

    fn verify_build_1(signature: &str) -> Result<PluginSignature, LoadError> {
        trusted().verify("libx.so", BUILD_1.as_bytes(), signature)
    }

    #[test]
    fn key_ids_read_as_minisign_prints_them() {
        for key_file in [TRUSTED_KEY, UNTRUSTED_KEY] {
            let key = TrustedPluginKey::parse(key_file).unwrap();
            assert_eq!(key.key_id(), key_id_in_comment(key_file));
            assert_eq!(key.key_id().len(), 16);
        }
    }

    #[test]
    fn a_key_file_with_windows_line_endings_or_a_trailing_blank_line_still_parses() {
        let crlf = TRUSTED_KEY.replace('\n', "\r\n") + "\r\n";
        assert_eq!(
            TrustedPluginKey::parse(&crlf).unwrap().key_id(),
            key_id_in_comment(TRUSTED_KEY)
        );
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let key_line = TRUSTED_KEY.lines().nth(1).unwrap();
        let signature_line = BUILD_1_SIGNATURE.lines().nth(1).unwrap();
        for text in [
            "",
            key_line,
            "untrusted comment: minisign public key\n",
            &format!("comment: x\n{key_line}\n"),
            "untrusted comment: x\nnot base64!\n",
            "untrusted comment: x\nRWQ9ZCLcdT3Rr\n",
            &format!("untrusted comment: x\n{signature_line}\n"),
            &format!("{TRUSTED_KEY}{TRUSTED_KEY}"),
        ] {
            let error = TrustedPluginKey::parse(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} parsed as a key"))
                .to_string();
            assert!(
                error.starts_with("not a minisign public key") && !error.contains('\n'),
                "{error}"
            );
        }
    }

    #[test]
    fn a_missing_key_file_is_named_in_one_line() {
        let path = Path::new("/nonexistent/key.pub");
        let error = TrustedPluginKeys::read_files(&[path.to_owned()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with(
                "cannot use the trusted plugin key /nonexistent/key.pub: cannot read it"
            ),
            "{error}"
        );
        assert!(!error.contains('\n'));
        assert!(TrustedPluginKeys::read_files(&[]).unwrap().is_none());
    }

    #[test]
    fn a_signature_by_a_trusted_key_verifies_and_gives_its_signer() {
        let signature = verify_build_1(BUILD_1_SIGNATURE).unwrap();
        assert_eq!(signature.key_id, key_id_in_comment(TRUSTED_KEY));
        assert_eq!(signature.trusted_comment, "mock-sms 0.1.0 release");
        let crlf = BUILD_1_SIGNATURE.replace('\n', "\r\n");
        assert_eq!(verify_build_1(&crlf).unwrap(), signature);
    }

    #[test]
    fn any_of_several_keys_may_sign() {
        let keys = TrustedPluginKeys::new(vec![
            TrustedPluginKey::parse(UNTRUSTED_KEY).unwrap(),
            TrustedPluginKey::parse(TRUSTED_KEY).unwrap(),
        ]);
        // The second is minisign's own trusted comment, which names the file it signed.
        for signature in [BUILD_1_SIGNATURE, BUILD_1_SIGNED_BY_UNTRUSTED_KEY] {
            assert!(keys
                .verify("build-1.bin", BUILD_1.as_bytes(), signature)
                .is_ok());
        }
    }

    #[test]
    fn a_signature_naming_another_file_is_refused_and_one_naming_none_is_not() {
        let keys = TrustedPluginKeys::new(vec![TrustedPluginKey::parse(UNTRUSTED_KEY).unwrap()]);
        match keys.verify(
            "libx.so",
            BUILD_1.as_bytes(),
            BUILD_1_SIGNED_BY_UNTRUSTED_KEY,
        ) {
            Err(error @ LoadError::SignedForAnotherName { .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with("signed for another file name: libx.so.minisig's trusted comment names file:build-1.bin; install it as build-1.bin"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // `-t "mock-sms 0.1.0 release"` names no file: any name loads.
        assert!(verify_build_1(BUILD_1_SIGNATURE).is_ok());
    }

    #[test]
    fn a_signature_by_another_key_is_untrusted() {
        match verify_build_1(BUILD_1_SIGNED_BY_UNTRUSTED_KEY) {
            Err(error @ LoadError::UntrustedSigningKey { .. }) => {
                let message = error.to_string();
                assert!(
                    message.starts_with("untrusted signing key")
                        && message.contains(key_id_in_comment(UNTRUSTED_KEY)),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_genuine_signature_of_other_bytes_is_reported_as_such() {
        match verify_build_1(BUILD_2_SIGNATURE) {
            Err(error @ LoadError::SignatureForOtherBytes { .. }) => {
                let message = error.to_string();
                assert!(
                    message.contains("minisign -S -s key.sec -m libx.so"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        // One changed byte of content is other bytes too.
        let changed = BUILD_1.replace('1', "3");
        assert!(matches!(
            trusted().verify("libx.so", changed.as_bytes(), BUILD_1_SIGNATURE),
            Err(LoadError::SignatureForOtherBytes { .. })
        ));
    }

    #[test]
    fn an_altered_trusted_comment_or_signature_does_not_verify() {
        let altered_comment =
            BUILD_1_SIGNATURE.replace("mock-sms 0.1.0 release", "mock-sms 9.9.9 release");
        let mut lines: Vec<String> = BUILD_1_SIGNATURE.lines().map(str::to_owned).collect();
        let mut signature = BASE64.decode(&lines[1]).unwrap();
        signature[40] ^= 1;
        lines[1] = BASE64.encode(&signature);
        let altered_signature = lines.join("\n");
        for text in [altered_comment, altered_signature] {
            match verify_build_1(&text) {
                Err(LoadError::BadSignature { problem, .. }) => {
                    assert!(problem.starts_with("does not verify"), "{problem}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn malformed_signature_files_are_bad_signatures() {
        let truncated: String = BUILD_1_SIGNATURE
            .lines()
            .take(2)
            .collect::<Vec<_>>()
            .join("\n");
        for text in [
            "",
            "garbage\n",
            truncated.as_str(),
            &BUILD_1_SIGNATURE.replace("trusted comment: ", "comment: "),
            &BUILD_1_SIGNATURE.replacen("RUQ", "R!Q", 1),
        ] {
            match verify_build_1(text) {
                Err(error @ LoadError::BadSignature { .. }) => {
                    let message = error.to_string();
                    assert!(
                        message.starts_with("bad signature: libx.so.minisig ")
                            && !message.contains('\n'),
                        "{message}"
                    );
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_file_name_in_minisigns_own_trusted_comment_is_read() {
        assert_eq!(
            signed_file_name("timestamp:1796555726\tfile:libacme.so\thashed"),
            Some("libacme.so")
        );
        assert_eq!(signed_file_name("file:libacme.so"), Some("libacme.so"));
        assert_eq!(signed_file_name("mock-sms 0.1.0 release"), None);
        // Free text that mentions a file is not a field.
        assert_eq!(signed_file_name("see file:README for details"), None);
    }

    #[test]
    fn a_legacy_signature_is_refused() {
        match verify_build_1(BUILD_1_LEGACY_SIGNATURE) {
            Err(LoadError::BadSignature { problem, .. }) => {
                assert!(problem.contains("legacy"), "{problem}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_signature_file_is_read_beside_the_plugin_file() {
        let folder = tempfile::tempdir().unwrap();
        let plugin = folder.path().join("libx.so");
        assert_eq!(
            signature_path_for(&plugin),
            folder.path().join("libx.so.minisig")
        );
        assert!(!is_plugin_file_name(&signature_path_for(&plugin)));
        match trusted().verify_plugin_file(&plugin, BUILD_1.as_bytes()) {
            Err(error @ LoadError::Unsigned { .. }) => assert!(
                error
                    .to_string()
                    .contains("sign it with `minisign -S -s key.sec -m libx.so`"),
                "{error}"
            ),
            other => panic!("{other:?}"),
        }
        std::fs::write(signature_path_for(&plugin), BUILD_1_SIGNATURE).unwrap();
        assert!(trusted()
            .verify_plugin_file(&plugin, BUILD_1.as_bytes())
            .is_ok());
        std::fs::write(
            signature_path_for(&plugin),
            vec![b'x'; MAX_SIGNATURE_FILE_BYTES as usize + 1],
        )
        .unwrap();
        assert!(matches!(
            trusted().verify_plugin_file(&plugin, BUILD_1.as_bytes()),
            Err(LoadError::BadSignature { .. })
        ));
    }
}
