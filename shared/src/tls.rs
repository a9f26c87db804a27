//! Whom a keyward process trusts over TLS: one root store and one client configuration for every
//! connection it opens (the AWS APIs, the third-party APIs, PostgreSQL), built once per process.
//!
//! By default the trust anchors are the Mozilla root program's, compiled into the binary
//! (`webpki-roots`): nothing is read or parsed at start-up. Loading the system store instead
//! (what the SDK's own HTTPS client does when it is built) decodes every PEM certificate under
//! the OS's certificate paths, and measured as most of a bare SDK function's init; the
//! third-party client loaded it a second time. On Lambda the system store is the runtime image's
//! copy of the same Mozilla list, so the compiled-in anchors trust the same CAs, and move with
//! each keyward release.
//!
//! An operator who must trust another CA (a Loki, Argo CD or webhook behind a private CA) names
//! a PEM bundle in `SSL_CERT_FILE`, the variable OpenSSL and rustls' native loader read. That
//! bundle replaces the built-in anchors, as it replaces the system store for those tools: a
//! private CA's bundle must hold the public roots too when the process also calls public APIs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{EnvSource, ProcessEnv};

/// The variable that names a PEM bundle to trust instead of the built-in roots.
pub const BUNDLE_VARIABLE: &str = "SSL_CERT_FILE";

#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the CA bundle {path}: {reason}")]
    UnreadableBundle { path: PathBuf, reason: String },
    #[error("the CA bundle {path} holds no usable certificate")]
    EmptyBundle { path: PathBuf },
    #[error("TLS set-up failed: {0}")]
    Setup(String),
}

/// Where a process's trust anchors come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustRoots {
    /// The Mozilla root program's anchors compiled into the binary.
    BuiltIn,
    /// The PEM certificates of this file, and no others.
    Bundle(PathBuf),
}

impl TrustRoots {
    /// `SSL_CERT_FILE` when set, else the built-in anchors.
    pub fn from_env(env: &dyn EnvSource) -> Self {
        match env.get(BUNDLE_VARIABLE) {
            Some(path) => Self::Bundle(PathBuf::from(path)),
            None => Self::BuiltIn,
        }
    }

    pub fn root_store(&self) -> Result<RootCertStore, TlsError> {
        match self {
            Self::BuiltIn => Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            }),
            Self::Bundle(path) => bundle_root_store(path),
        }
    }

    /// A client configuration trusting these roots, on rustls' ring provider (keyward's one crypto
    /// library), with rustls' safe default protocol versions (TLS 1.2 and 1.3).
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        client_config_with(self.root_store()?)
    }
}

/// The process's one client configuration, from `SSL_CERT_FILE` or the built-in anchors, built
/// on first use. An unreadable bundle is an error every caller sees, never a silent fallback to
/// other roots.
pub fn process_client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            TrustRoots::from_env(&ProcessEnv)
                .client_config()
                .map(Arc::new)
        })
        .clone()
}

/// The certificates of a PEM bundle as trust anchors. Entries rustls cannot use as anchors are
/// skipped, as system stores routinely hold some; a bundle with none is an error.
fn bundle_root_store(path: &Path) -> Result<RootCertStore, TlsError> {
    let unreadable = |reason: String| TlsError::UnreadableBundle {
        path: path.to_owned(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(format!("not valid PEM: {e}")))?;
    let mut roots = RootCertStore::empty();
    let (added, _unusable) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(TlsError::EmptyBundle {
            path: path.to_owned(),
        });
    }
    Ok(roots)
}

/// A client configuration trusting exactly `roots`.
fn client_config_with(roots: RootCertStore) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env_of;

    #[test]
    fn the_built_in_roots_serve_unless_a_bundle_is_named() {
        assert_eq!(TrustRoots::from_env(&env_of(&[])), TrustRoots::BuiltIn);
        assert_eq!(
            TrustRoots::from_env(&env_of(&[("SSL_CERT_FILE", "/etc/keyward/ca.pem")])),
            TrustRoots::Bundle(PathBuf::from("/etc/keyward/ca.pem"))
        );
        let built_in = TrustRoots::BuiltIn.root_store().unwrap();
        assert_eq!(built_in.len(), webpki_roots::TLS_SERVER_ROOTS.len());
        assert!(
            built_in.len() > 100,
            "the Mozilla list has well over 100 roots"
        );
    }

    #[test]
    fn a_bundle_that_cannot_serve_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.pem");
        let err = TrustRoots::Bundle(missing.clone())
            .client_config()
            .unwrap_err();
        assert!(matches!(err, TlsError::UnreadableBundle { ref path, .. } if *path == missing));
        assert!(err.to_string().contains("absent.pem"), "{err}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").unwrap();
        let err = TrustRoots::Bundle(empty.clone())
            .client_config()
            .unwrap_err();
        assert!(
            matches!(err, TlsError::EmptyBundle { ref path } if *path == empty),
            "{err}"
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = TrustRoots::Bundle(broken).client_config().unwrap_err();
        assert!(err.to_string().contains("not valid PEM"), "{err}");
    }
}
