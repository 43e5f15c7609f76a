//! Certificates the tests make (rcgen), for the hub's own TLS and for nginx's.
#![allow(unreachable_pub, dead_code)]

use std::path::{Path, PathBuf};

/// A self-signed certificate the test makes, for 127.0.0.1 and localhost.
pub struct Certificate {
    /// `name.pem` (the certificate) and `name.key` (its key), written in the given folder.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// For Chromium's `--ignore-certificate-errors-spki-list`: the SHA-256 of the key, base64.
    /// Trusts exactly this certificate for one run.
    pub spki: String,
}

impl Certificate {
    pub fn make(dir: &Path, name: &str) -> Certificate {
        use base64::Engine;
        use rcgen::PublicKeyData;
        use sha2::Digest;
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        let (cert_path, key_path) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, signing_key.serialize_pem()).unwrap();
        let spki = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(signing_key.subject_public_key_info()));
        Certificate { cert: cert_path, key: key_path, spki }
    }

    /// The Chromium flag that trusts this certificate.
    pub fn chromium_flag(&self) -> String {
        format!("--ignore-certificate-errors-spki-list={}", self.spki)
    }
}
