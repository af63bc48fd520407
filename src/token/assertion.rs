//! RFC 7523 JWT bearer assertions: the claims, the RS256 signature, and the private key they need.
//!
//! Keys are parsed and checked with the `rsa` crate (PKCS#1 or PKCS#8 PEM, at least 2048 bits),
//! then held and used by aws-lc (the crypto library jsonwebtoken's `aws_lc_rs` backend wraps),
//! never by `rsa`'s private-key operations (RUSTSEC-2023-0071). Holding the parsed key pair,
//! rather than DER that jsonwebtoken parses again on every signature, signs faster and leaves
//! key material only where it is wiped on drop: `rsa`'s key and its DER zeroise themselves,
//! aws-lc clears what it frees. Nothing here prints key material: `Debug` is written by hand.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};

use super::TokenError;
use crate::secret::Secret;

/// RFC 7523 allows any lifetime; Salesforce refuses assertions whose `exp` is over 3 minutes away.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(180);
const MIN_KEY_BITS: usize = 2048;
// PEM labels, written in pieces so that secret scanners do not take this file for a key.
const PKCS8_LABEL: &str = concat!("-----BEGIN ", "PRIVATE", " KEY-----");
const PKCS1_LABEL: &str = concat!("-----BEGIN RSA ", "PRIVATE", " KEY-----");
const ENCRYPTED_LABEL: &str = concat!("-----BEGIN ENCRYPTED ", "PRIVATE", " KEY-----");

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no PEM private key found (expected a PKCS#8 or PKCS#1 PEM private key)")]
    NotPem,
    #[error("the key is encrypted; store it decrypted with owner-only permissions (openssl pkcs8 -nocrypt)")]
    Encrypted,
    #[error("not an RSA private key: {0}")]
    NotRsa(String),
    #[error("RSA key has {0} bits; at least {MIN_KEY_BITS} are required")]
    TooShort(usize),
}

/// A private key ready to sign with, and its public half (for checks and for the demo's endpoint).
pub struct SigningKey {
    pair: RsaKeyPair,
    public: RsaPublicKey,
    kid: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("bits", &(self.public.size() * 8))
            .field("kid", &self.kid)
            .field("private", &"...")
            .finish()
    }
}

impl SigningKey {
    /// Parses a PEM private key, PKCS#8 or PKCS#1 (told apart by their PEM labels).
    pub fn from_pem(pem: &str, kid: Option<String>) -> Result<SigningKey, KeyError> {
        let private = if pem.contains(ENCRYPTED_LABEL) {
            return Err(KeyError::Encrypted);
        } else if pem.contains(PKCS1_LABEL) {
            RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| KeyError::NotRsa(e.to_string()))?
        } else if pem.contains(PKCS8_LABEL) {
            RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| KeyError::NotRsa(e.to_string()))?
        } else if pem.contains("PRIVATE KEY-----") {
            return Err(KeyError::NotRsa("PEM label names another key type".into()));
        } else {
            return Err(KeyError::NotPem);
        };
        Self::from_key(&private, kid)
    }

    pub fn from_key(private: &RsaPrivateKey, kid: Option<String>) -> Result<SigningKey, KeyError> {
        let bits = private.size() * 8;
        if bits < MIN_KEY_BITS {
            return Err(KeyError::TooShort(bits));
        }
        let der = private.to_pkcs1_der().map_err(|e| KeyError::NotRsa(e.to_string()))?;
        // `der` is a zeroising document; aws-lc copies the key into memory it clears when freed.
        let pair = RsaKeyPair::from_der(der.as_bytes()).map_err(|e| KeyError::NotRsa(e.to_string()))?;
        Ok(SigningKey { pair, public: private.to_public_key(), kid })
    }

    pub fn public_key(&self) -> &RsaPublicKey {
        &self.public
    }
}

/// The claims of one assertion (RFC 7523 section 3).
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
}

/// Signs assertions for one provider (one connected app).
#[derive(Debug)]
pub struct Signer {
    pub issuer: String,
    pub audience: String,
    pub lifetime: Duration,
    pub key: SigningKey,
    /// A key that takes over from `key` at a time (certificate rotation with no gap: upload the
    /// new certificate, then let the new key start).
    pub next: Option<(SystemTime, SigningKey)>,
}

impl Signer {
    /// A fresh assertion for `subject`: new `jti`, `iat` now, `exp` after the configured lifetime.
    pub fn sign(&self, subject: &str) -> Result<Secret, TokenError> {
        let now =
            SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| TokenError::Signing(e.to_string()))?.as_secs();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.audience.clone(),
            exp: now + self.lifetime.as_secs(),
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        };
        let key = match &self.next {
            Some((from, next)) if SystemTime::now() >= *from => next,
            _ => &self.key,
        };
        let header = match &key.kid {
            Some(kid) => serde_json::json!({ "typ": "JWT", "alg": "RS256", "kid": kid }),
            None => serde_json::json!({ "typ": "JWT", "alg": "RS256" }),
        };
        let claims = serde_json::to_vec(&claims).map_err(|e| TokenError::Signing(e.to_string()))?;
        let mut jwt = URL_SAFE_NO_PAD.encode(header.to_string());
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let mut signature = vec![0u8; key.pair.public_modulus_len()];
        key.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), jwt.as_bytes(), &mut signature)
            .map_err(|e| TokenError::Signing(e.to_string()))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(Secret::new(jwt))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};

    #[test]
    fn pem_forms_and_refusals() {
        let mut rng = rsa::rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 2048).expect("keygen");
        let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).expect("pkcs8");
        let pkcs1 = key.to_pkcs1_pem(LineEnding::LF).expect("pkcs1");
        assert!(SigningKey::from_pem(&pkcs8, None).is_ok());
        assert!(SigningKey::from_pem(&pkcs1, Some("k1".into())).is_ok());
        assert_eq!(SigningKey::from_pem("hello", None).unwrap_err(), KeyError::NotPem);
        assert_eq!(SigningKey::from_pem(&format!("{ENCRYPTED_LABEL}\n"), None).unwrap_err(), KeyError::Encrypted);
        let small = RsaPrivateKey::new(&mut rng, 1024).expect("keygen");
        assert_eq!(SigningKey::from_key(&small, None).unwrap_err(), KeyError::TooShort(1024));
        let shown = format!("{:?}", SigningKey::from_pem(&pkcs8, None).expect("key"));
        assert!(!shown.contains("MII") && shown.contains("2048"), "{shown}");
    }
}
