//! HTTPS and WSS (`--tls-cert`, `--tls-key`): rustls in the accept loop, with the certificate
//! read again on SIGHUP. New handshakes get the new certificate; connections already open keep
//! going (a certificate is only used during the handshake), so a renewal drops nobody.

use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};
use tokio_rustls::TlsAcceptor;

/// The TLS side of the listener.
#[derive(Clone)]
pub(crate) struct Tls {
    pub(crate) acceptor: TlsAcceptor,
    certificate: Arc<Certificate>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("cert", &self.certificate.cert).finish_non_exhaustive()
    }
}

/// The certificate in use, and where to read it again from.
#[derive(Debug)]
struct Certificate {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

impl Certificate {
    fn load(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
        use anyhow::Context;
        let chain = CertificateDer::pem_file_iter(cert)
            .with_context(|| format!("cannot read the certificate {}", cert.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
        anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
        let key_der =
            PrivateKeyDer::from_pem_file(key).with_context(|| format!("{} is not a PEM private key", key.display()))?;
        let signing = provider
            .key_provider
            .load_private_key(key_der)
            .with_context(|| format!("{} is not a usable private key", key.display()))?;
        Ok(CertifiedKey::new(chain, signing))
    }
}

impl Tls {
    /// Reads the certificate chain and key (PEM) and makes the acceptor.
    pub(crate) fn new(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
        // named, not picked by feature flags: the workspace may enable more than one provider
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = Certificate::load(cert, key, &provider)?;
        let certificate = Arc::new(Certificate {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: provider.clone(),
            current: RwLock::new(Arc::new(current)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(certificate.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls { acceptor: TlsAcceptor::from(Arc::new(config)), certificate })
    }

    /// Reads the certificate and key again (SIGHUP); on failure the old ones stay in use.
    pub(crate) fn reload(&self) -> anyhow::Result<()> {
        let c = &self.certificate;
        let fresh = Certificate::load(&c.cert, &c.key, &c.provider)?;
        *c.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        Ok(())
    }
}
