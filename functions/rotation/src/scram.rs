//! SCRAM-SHA-256 password verifiers, computed here so that `ALTER ROLE ... PASSWORD` carries the
//! verifier, never the password: a server with `log_statement = 'all'` or `pg_stat_statements`
//! then records nothing that logs in. PostgreSQL (10+) stores a string already in this form as-is
//! (RFC 7677 and PostgreSQL's `scram_build_secret`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SecureRandom as _;
use ring::{digest, hmac, pbkdf2, rand};
use std::num::NonZeroU32;

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error(
        "the password holds characters outside printable ASCII, which PostgreSQL would SASLprep-normalise; keyward only sets printable ASCII passwords"
    )]
    NotPrintableAscii,
    #[error("the system random generator failed")]
    Random,
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` for a fresh random salt.
pub fn verifier(password: &str) -> Result<String, ScramError> {
    let mut salt = [0u8; SALT_LEN];
    rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ScramError::Random)?;
    verifier_with(password, &salt, ITERATIONS)
}

pub fn verifier_with(password: &str, salt: &[u8], iterations: u32) -> Result<String, ScramError> {
    // SASLprep leaves printable ASCII unchanged; anything else could be normalised by the server
    // differently than here, and the login would then fail.
    if !password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(ScramError::NotPrintableAscii);
    }
    let iterations = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
    let mut salted = [0u8; 32];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key.as_ref()),
        BASE64.encode(server_key.as_ref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_an_independent_computation() {
        // Computed with Python's hashlib/hmac (pbkdf2_hmac('sha256', b'pencil', salt, 4096)),
        // salt = bytes(range(16)).
        let salt: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            verifier_with("pencil", &salt, 4096).unwrap(),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
        );
    }

    #[test]
    fn fresh_salt_every_time_and_no_password_inside() {
        let a = verifier("correct horse battery staple").unwrap();
        let b = verifier("correct horse battery staple").unwrap();
        assert_ne!(a, b);
        assert!(!a.contains("horse"));
        assert_eq!(verifier("pässword"), Err(ScramError::NotPrintableAscii));
    }
}
