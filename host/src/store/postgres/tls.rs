//! TLS to PostgreSQL as libpq does it: `sslmode` = `disable | prefer | require | verify-ca |
//! verify-full` and `sslrootcert` (a PEM file of the CA, or `system`), in the URL
//! (`?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem`) or the key-value form.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, and leaves the certificate
//! check to the TLS connector; this module takes both parameters out of the connection
//! string, gives tokio-postgres the mode it knows, and builds the rustls verifier libpq's mode
//! means:
//! - `disable`: no TLS; `prefer` (libpq's default): TLS when the server offers it;
//!   `require`: TLS or nothing. Neither checks the server's certificate, as in libpq (which
//!   only encrypts then) — unless `sslrootcert` is given, when `require` is `verify-ca`.
//! - `verify-ca`: the certificate chains to `sslrootcert`; the name is not checked.
//! - `verify-full`: it chains to `sslrootcert` and names the host connected to.
//! - `sslrootcert=system`: the Mozilla roots bundled with the host (webpki-roots), and, as
//!   in libpq 16, `verify-full` unless a weaker mode is asked for (which is refused).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error as TlsError, SignatureScheme};
use tokio_postgres::config::SslMode as WireSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        match value {
            "disable" => Ok(SslMode::Disable),
            // libpq's `allow` tries without TLS first; TLS when the server offers it is closer
            // to what an operator who wrote it wants than a refusal.
            "allow" | "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// Where the CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCertificates {
    File(std::path::PathBuf),
    System,
}

/// A connection string with the TLS parameters taken out and the connector they mean.
pub struct ConnectOptions {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub ssl_mode: SslMode,
}

/// Reads `url` (URL or key-value form) and its `sslmode` and `sslrootcert`. Errors are one
/// line for an operator, never holding the password.
pub fn connect_options(url: &str) -> Result<ConnectOptions, String> {
    let (rest, parameters) = take_tls_parameters(url)?;
    let mut ssl_mode = None;
    let mut root = None;
    for (name, value) in parameters {
        match name.as_str() {
            "sslmode" => ssl_mode = Some(SslMode::parse(&value)?),
            "sslrootcert" if value == "system" => root = Some(RootCertificates::System),
            "sslrootcert" => root = Some(RootCertificates::File(value.into())),
            other => {
                return Err(format!(
                    "{other} is not supported: the host does not present a client certificate (use a password, or --database-password-file)"
                ))
            }
        }
    }
    let ssl_mode = match (ssl_mode, &root) {
        (None, Some(RootCertificates::System)) => SslMode::VerifyFull,
        (Some(mode), Some(RootCertificates::System)) if mode != SslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (as in libpq), not sslmode={}",
                mode.label()
            ))
        }
        (Some(SslMode::Require), Some(RootCertificates::File(_))) => SslMode::VerifyCa,
        (Some(mode), _) => mode,
        (None, _) => SslMode::Prefer,
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|error| format!("the database URL is invalid: {error}"))?;
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => WireSslMode::Disable,
        SslMode::Prefer => WireSslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
    });
    let verifier: Arc<dyn ServerCertVerifier> = match ssl_mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(EncryptOnly(provider())),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = match root {
                Some(root) => root_store(&root)?,
                None => {
                    return Err(format!(
                        "sslmode={} needs sslrootcert=FILE (the CA's certificate, PEM) or sslrootcert=system",
                        ssl_mode.label()
                    ))
                }
            };
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|error| format!("cannot use sslrootcert: {error}"))?;
            if ssl_mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let tls_config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(ConnectOptions {
        config,
        tls: MakeRustlsConnect::new(tls_config),
        ssl_mode,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(root: &RootCertificates) -> Result<rustls::RootCertStore, String> {
    match root {
        RootCertificates::System => Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        RootCertificates::File(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certificates| certificates.collect::<Result<Vec<_>, _>>())
                .map_err(|error| format!("cannot read sslrootcert {}: {error}", path.display()))?;
            let mut store = rustls::RootCertStore::empty();
            let (added, _ignored) = store.add_parsable_certificates(certificates);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {} holds no CA certificate (PEM, -----BEGIN CERTIFICATE-----)",
                    path.display()
                ));
            }
            Ok(store)
        }
    }
}

/// Takes `sslmode`, `sslrootcert` and the client-certificate parameters out of a connection
/// string: the rest, and what was taken (values decoded).
fn take_tls_parameters(url: &str) -> Result<(String, Vec<(String, String)>), String> {
    const TAKEN: [&str; 5] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslpassword"];
    let mut taken = Vec::new();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), taken));
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if TAKEN.contains(&name) {
                let value = percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| format!("{name} is not valid UTF-8 once decoded"))?;
                taken.push((name.to_owned(), value.into_owned()));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, taken));
    }
    // The key-value form: `host=db sslmode=verify-full sslrootcert='/etc/my ca.pem'`.
    let mut kept = Vec::new();
    for (name, raw, value) in key_value_pairs(url)? {
        if TAKEN.contains(&name.as_str()) {
            taken.push((name, value));
        } else {
            kept.push(raw);
        }
    }
    Ok((kept.join(" "), taken))
}

/// The pairs of a key-value connection string: (key, the pair as written, the value unquoted).
fn key_value_pairs(text: &str) -> Result<Vec<(String, String, String)>, String> {
    let mut pairs = Vec::new();
    let mut chars = text.char_indices().peekable();
    loop {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        let mut name = String::new();
        while let Some((_, c)) = chars.next_if(|(_, c)| *c != '=' && !c.is_whitespace()) {
            name.push(c);
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        if chars.next_if(|(_, c)| *c == '=').is_none() {
            return Err(format!(
                "the database URL is invalid: {name:?} has no value"
            ));
        }
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\\')) => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    Some((_, '\'')) => break,
                    Some((_, c)) => value.push(c),
                    None => {
                        return Err(format!(
                            "the database URL is invalid: the value of {name} has no closing quote"
                        ))
                    }
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                value.push(c);
            }
        }
        let end = chars.peek().map_or(text.len(), |(index, _)| *index);
        pairs.push((name, text[start..end].trim_end().to_owned(), value));
    }
    Ok(pairs)
}

/// `prefer` and `require` without a CA: the connection is encrypted, the certificate not
/// checked (libpq's meaning). The handshake's signatures are still checked, so the server
/// holds the key of the certificate it sent.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked against the CA, the name is not.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(TlsError::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let (rest, taken) = take_tls_parameters(
            "postgres://app:pw@db:5432/hosts?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fdb%20ca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://app:pw@db:5432/hosts?application_name=x");
        assert_eq!(
            taken,
            [
                ("sslmode".to_owned(), "verify-full".to_owned()),
                ("sslrootcert".to_owned(), "/etc/db ca.pem".to_owned())
            ]
        );
        let (rest, taken) = take_tls_parameters(
            "host=db user=app sslmode = require sslrootcert='/etc/my ca.pem' dbname=hosts",
        )
        .unwrap();
        assert_eq!(rest, "host=db user=app dbname=hosts");
        assert_eq!(
            taken,
            [
                ("sslmode".to_owned(), "require".to_owned()),
                ("sslrootcert".to_owned(), "/etc/my ca.pem".to_owned())
            ]
        );
        assert_eq!(
            take_tls_parameters("postgres://db/hosts").unwrap(),
            ("postgres://db/hosts".to_owned(), Vec::new())
        );
    }

    #[test]
    fn modes_follow_libpq() {
        let mode = |url: &str| connect_options(url).map(|options| options.ssl_mode);
        assert_eq!(mode("postgres://db/hosts"), Ok(SslMode::Prefer));
        assert_eq!(
            mode("postgres://db/hosts?sslmode=disable"),
            Ok(SslMode::Disable)
        );
        assert_eq!(
            mode("postgres://db/hosts?sslmode=require"),
            Ok(SslMode::Require)
        );
        assert_eq!(
            mode("postgres://db/hosts?sslrootcert=system"),
            Ok(SslMode::VerifyFull)
        );
        let error = mode("postgres://db/hosts?sslmode=verify-full")
            .err()
            .unwrap();
        assert!(error.contains("needs sslrootcert=FILE"), "{error}");
        let error = mode("postgres://db/hosts?sslmode=strict").err().unwrap();
        assert!(error.contains("sslmode=strict is not one of"), "{error}");
        let error = mode("postgres://db/hosts?sslmode=require&sslrootcert=system")
            .err()
            .unwrap();
        assert!(error.contains("needs sslmode=verify-full"), "{error}");
        let error = mode("postgres://db/hosts?sslcert=/etc/client.pem")
            .err()
            .unwrap();
        assert!(error.contains("sslcert is not supported"), "{error}");
        let error = mode("postgres://db/hosts?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap();
        assert!(
            error.contains("cannot read sslrootcert /nonexistent/ca.pem"),
            "{error}"
        );
    }

    #[test]
    fn require_with_a_ca_checks_the_chain_and_a_file_without_a_certificate_is_refused() {
        let folder = tempfile::tempdir().unwrap();
        let empty = folder.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = connect_options(&format!(
            "postgres://db/hosts?sslmode=require&sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap();
        assert!(error.contains("holds no CA certificate"), "{error}");
    }
}
