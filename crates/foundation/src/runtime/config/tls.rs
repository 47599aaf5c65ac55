//! TLS from the `tls.*` keys: the PEM files read, the rustls server and client
//! configurations built, every failure named by key, path and what is wrong.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use foundation_cluster::node::Tls;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{ConfigError, Layers, Source, key_named};

/// What is wrong with a file a `tls.*` key names ([`ConfigError::TlsFile`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFileError {
    /// There is no such file.
    #[error("no such file")]
    NotFound,
    /// The file exists but cannot be read (permissions, a directory…).
    #[error("cannot be read: {0}")]
    Unreadable(String),
    /// The file holds no PEM certificate (`-----BEGIN CERTIFICATE-----`).
    #[error("holds no PEM certificate")]
    NoCertificate,
    /// The file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[error("holds no PEM private key")]
    NoKey,
    /// A PEM section of the file is malformed.
    #[error("is not valid PEM: {0}")]
    Invalid(String),
    /// The private key is not the key of the certificate in this file (`tls.cert`).
    #[error("is not the private key of the certificate in {}", .0.display())]
    KeyMismatch(PathBuf),
    /// rustls refused what the file holds (an unsupported key type, a certificate that
    /// does not parse).
    #[error("is refused by rustls: {0}")]
    Refused(String),
}

/// A path given for `key`, trimmed, with where it was given.
type Given = (PathBuf, Source);

impl Layers {
    fn path(&self, key: &'static str) -> Result<Option<Given>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some((v, src)) if v.trim().is_empty() => Err(ConfigError::BadValue {
                key,
                value: v.clone(),
                allowed: key_named(key).map_or("", |k| k.allowed),
                origin: src.clone(),
            }),
            Some((v, src)) => Ok(Some((PathBuf::from(v.trim()), src.clone()))),
        }
    }

    /// TLS from the `tls.*` keys, `None` when none is set. The server name defaults to
    /// `cluster_name`.
    pub(super) fn tls_from_keys(&self, cluster_name: &str) -> Result<Option<Tls>, ConfigError> {
        let missing = |key: &'static str, why: String| ConfigError::Missing {
            key,
            env: key_named(key).map_or("", |k| k.env),
            why,
        };
        let cert = self.path("tls.cert")?;
        let key = self.path("tls.key")?;
        let ca = self.path("tls.ca")?;
        let (cert, key) = match (cert, key) {
            (Some(c), Some(k)) => (c, k),
            (Some((_, src)), None) => {
                return Err(missing(
                    "tls.key",
                    format!("`tls.cert` is set (in {src}): the certificate needs its private key"),
                ));
            }
            (None, Some((_, src))) => {
                return Err(missing(
                    "tls.cert",
                    format!("`tls.key` is set (in {src}): the key needs its certificate"),
                ));
            }
            (None, None) => {
                // A `tls.*` key without the certificate would leave the node in plain TCP
                // while its operator believes otherwise.
                if let Some(other) = ["tls.ca", "tls.server_name", "tls.mutual"]
                    .into_iter()
                    .find(|k| self.get(k).is_some())
                {
                    return Err(missing(
                        "tls.cert",
                        format!(
                            "`{other}` is set (in {}) but TLS needs this node's certificate and key (`tls.cert`, `tls.key`)",
                            self.source_of(other)
                        ),
                    ));
                }
                return Ok(None);
            }
        };
        let Some(ca) = ca else {
            return Err(missing(
                "tls.ca",
                "TLS is on (`tls.cert` is set): peers' certificates are checked against the CA that issued them".to_owned(),
            ));
        };
        let mutual = match self.get("tls.mutual") {
            None => true,
            Some((v, src)) => match v.trim() {
                "true" => true,
                "false" => false,
                _ => {
                    return Err(ConfigError::BadValue {
                        key: "tls.mutual",
                        value: v.clone(),
                        allowed: key_named("tls.mutual").map_or("", |k| k.allowed),
                        origin: src.clone(),
                    });
                }
            },
        };
        let (server_name, name_source) = match self.get("tls.server_name") {
            Some((v, src)) => (v.trim().to_owned(), src.clone()),
            // The default comes from `cluster_name`: name its source if it was set.
            None => (cluster_name.to_owned(), self.source_of("cluster_name")),
        };
        let bad_name = || ConfigError::BadValue {
            key: "tls.server_name",
            value: server_name.clone(),
            allowed: key_named("tls.server_name").map_or("", |k| k.allowed),
            origin: name_source.clone(),
        };
        if ServerName::try_from(server_name.as_str()).is_err() {
            return Err(bad_name());
        }

        let file_error = |key: &'static str, (path, origin): &Given, error| ConfigError::TlsFile {
            key,
            path: path.clone(),
            origin: origin.clone(),
            error,
        };
        let certs = read_certs(&cert.0).map_err(|e| file_error("tls.cert", &cert, e))?;
        let private = read_key(&key.0).map_err(|e| file_error("tls.key", &key, e))?;
        let ca_certs = read_certs(&ca.0).map_err(|e| file_error("tls.ca", &ca, e))?;

        // The provider named, not the process default: an application that compiles
        // rustls' other provider in too would make `ServerConfig::builder()` panic.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        if let Err(e) = provider.key_provider.load_private_key(private.clone_key()) {
            return Err(file_error(
                "tls.key",
                &key,
                TlsFileError::Refused(e.to_string()),
            ));
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in ca_certs {
            roots
                .add(c)
                .map_err(|e| file_error("tls.ca", &ca, TlsFileError::Refused(e.to_string())))?;
        }
        let roots = Arc::new(roots);
        let refused = |e: rustls::Error| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                file_error("tls.key", &key, TlsFileError::KeyMismatch(cert.0.clone()))
            }
            other => file_error("tls.cert", &cert, TlsFileError::Refused(other.to_string())),
        };
        let versions =
            |e: rustls::Error| file_error("tls.cert", &cert, TlsFileError::Refused(e.to_string()));
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(versions)?;
        let server = if mutual {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.clone(),
                provider.clone(),
            )
            .build()
            .map_err(|e| file_error("tls.ca", &ca, TlsFileError::Refused(e.to_string())))?;
            server.with_client_cert_verifier(verifier)
        } else {
            server.with_no_client_auth()
        }
        .with_single_cert(certs.clone(), private.clone_key())
        .map_err(refused)?;
        // The client presents its certificate whether or not this node asks for one: a
        // peer that requires mutual TLS admits it.
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(versions)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, private)
            .map_err(refused)?;
        Tls::new(Arc::new(server), Arc::new(client), &server_name)
            .map(Some)
            .map_err(|_| bad_name())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => TlsFileError::NotFound,
        _ => TlsFileError::Unreadable(e.to_string()),
    })
}

fn pem_error(e: &pem::Error) -> TlsFileError {
    TlsFileError::Invalid(e.to_string())
}

/// The certificates of a PEM file, in order; at least one.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsFileError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&e))?;
    if certs.is_empty() {
        return Err(TlsFileError::NoCertificate);
    }
    Ok(certs)
}

/// The first private key of a PEM file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsFileError::NoKey,
        other => pem_error(&other),
    })
}
