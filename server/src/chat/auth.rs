//! Sign-in from the host application (`--auth-jwt-secret` or `--auth-jwt-public-key`): an app
//! that already knows its users gives each page a short-lived JSON Web Token, and the page hands
//! it to the hub in an `auth` message, first thing on the socket. Its `sub` is the person's
//! identity (all their tabs and devices are one member) and its `name` their nickname.
//!
//! Why a message and not a query parameter: URLs end up in proxy access logs, and a token there
//! is as good as a password until it expires; a message is never logged. It costs no round trip
//! either, since the page sends `auth` and `join` back to back.

use anyhow::Context;
use hubbub_shared::{ErrorCode, Invalid};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use std::path::Path;

/// Checks connection tokens.
#[derive(Clone)]
pub(crate) struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Where pages get a token (told to them in `welcome`).
    pub(crate) token_url: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

/// What a valid token says.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Claims {
    /// The person's identity in the host application.
    pub(crate) sub: String,
    /// Their nickname.
    pub(crate) name: String,
    /// Expiry, seconds since the Unix epoch.
    pub(crate) exp: u64,
}

impl Verifier {
    /// HS256 with a shared secret, or RS256/ES256 with a public key (PEM); `None` when neither
    /// is configured (anonymous mode).
    pub(crate) fn from_config(
        secret: Option<&str>,
        public_key: Option<&Path>,
        token_url: Option<String>,
    ) -> anyhow::Result<Option<Verifier>> {
        let (key, algorithms) = match (secret, public_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => anyhow::bail!("give --auth-jwt-secret or --auth-jwt-public-key, not both"),
            (Some(secret), None) => {
                anyhow::ensure!(secret.len() >= 32, "--auth-jwt-secret must be at least 32 bytes");
                (DecodingKey::from_secret(secret.as_bytes())?, vec![Algorithm::HS256])
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
                match DecodingKey::from_rsa_pem(&pem) {
                    Ok(key) => (key, vec![Algorithm::RS256]),
                    Err(_) => (
                        DecodingKey::from_ec_pem(&pem)
                            .with_context(|| format!("{} is not an RSA or EC public key (PEM)", path.display()))?,
                        vec![Algorithm::ES256],
                    ),
                }
            }
        };
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Some(Verifier { key, validation, token_url }))
    }

    /// The claims of a valid token, or why it is refused.
    pub(crate) fn verify(&self, token: &str) -> Result<Claims, Invalid> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    Invalid { code: ErrorCode::TokenExpired, reason: "The sign-in token has expired.".into() }
                }
                _ => Invalid { code: ErrorCode::InvalidToken, reason: format!("The sign-in token was refused: {e}.") },
            })?;
        if claims.sub.is_empty() || claims.name.trim().is_empty() {
            return Err(Invalid {
                code: ErrorCode::InvalidToken,
                reason: "The token names nobody (sub, name).".into(),
            });
        }
        Ok(claims)
    }
}
