//! The crypto `jsonwebtoken` checks token signatures with: RS256 over `ring`, the library the
//! rest of keyward uses, and nothing else.
//!
//! `jsonwebtoken` ships backends for aws-lc and RustCrypto; either would link a second RSA
//! implementation into the gateway. GitHub signs its OIDC tokens with RS256 only, and the gateway
//! never signs a token, so this provider verifies RS256 against an issuer's JWKS key (modulus and
//! exponent) and refuses everything else with an error, never a panic.

use std::sync::Once;

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature::Verifier;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

static RS256_OVER_RING: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: rs256_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| Err(unsupported()),
        rsa_pub_components_from_public_key: |_| Err(unsupported()),
        ec_pub_components_from_private_key: |_,
                                             _|
         -> Result<
            (EllipticCurve, Vec<u8>, Vec<u8>),
            Error,
        > { Err(unsupported()) },
        ed_pub_components_from_private_key: |_, _| Err(unsupported()),
        compute_digest: |_, _: ThumbprintHash| Err(unsupported()),
    },
};

/// Makes this the process's `jsonwebtoken` provider; every call after the first does nothing.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // Fails only if another provider was installed first, and nothing in the gateway does.
        let _ = RS256_OVER_RING.install_default();
    });
}

fn unsupported() -> Error {
    ErrorKind::InvalidKeyFormat.into()
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn rs256_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    if *algorithm != Algorithm::RS256 {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    match key.kind() {
        DecodingKeyKind::RsaModulusExponent { n, e } => Ok(Box::new(Rs256 {
            modulus: without_leading_zeros(n).to_vec(),
            exponent: without_leading_zeros(e).to_vec(),
        })),
        // An HMAC secret or a DER key: the gateway only builds keys from an issuer's JWKS.
        DecodingKeyKind::SecretOrDer(_) => Err(unsupported()),
    }
}

/// ring takes the minimal big-endian encoding; a JWKS may carry a zero octet in front of a
/// modulus (RFC 7518, section 6.3.1.1 notes libraries that add one), which is the same number.
fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

struct Rs256 {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl Verifier<Vec<u8>> for Rs256 {
    fn verify(
        &self,
        message: &[u8],
        signature: &Vec<u8>,
    ) -> Result<(), jsonwebtoken::signature::Error> {
        RsaPublicKeyComponents {
            n: &self.modulus,
            e: &self.exponent,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .map_err(|_| jsonwebtoken::signature::Error::new())
    }
}

impl JwtVerifier for Rs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::RS256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    /// A token signed by another library (aws-lc, as the fake issuer signs), and the issuer's
    /// key as a JWKS carries it.
    struct Issued {
        token: String,
        modulus: Vec<u8>,
        exponent: Vec<u8>,
    }

    fn issue(header: serde_json::Value) -> Issued {
        use aws_lc_rs::signature::KeyPair as _;
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let claims =
            serde_json::json!({"sub": "repo:o/r:ref:refs/heads/main", "exp": 4_102_444_800_i64});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        let components: aws_lc_rs::rsa::PublicKeyComponents<Vec<u8>> = key.public_key().into();
        Issued {
            token: format!("{signing_input}.{}", B64.encode(signature)),
            modulus: components.n,
            exponent: components.e,
        }
    }

    fn decode(token: &str, key: &DecodingKey) -> Result<(), ErrorKind> {
        install();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)
            .map(|_| ())
            .map_err(|e| e.into_kind())
    }

    fn jwks_key(modulus: &[u8], exponent: &[u8]) -> DecodingKey {
        DecodingKey::from_rsa_components(&B64.encode(modulus), &B64.encode(exponent)).unwrap()
    }

    #[test]
    fn an_rs256_token_verifies_against_its_issuers_key_and_no_other() {
        let issued = issue(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k"}));
        assert_eq!(
            decode(&issued.token, &jwks_key(&issued.modulus, &issued.exponent)),
            Ok(())
        );
        // The same modulus with a zero octet in front is the same key.
        let padded = [&[0u8][..], &issued.modulus].concat();
        assert_eq!(
            decode(&issued.token, &jwks_key(&padded, &issued.exponent)),
            Ok(())
        );

        let other = issue(serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "k"}));
        assert_eq!(
            decode(&issued.token, &jwks_key(&other.modulus, &other.exponent)),
            Err(ErrorKind::InvalidSignature)
        );
        let (signed, _) = issued.token.rsplit_once('.').unwrap();
        let (_, other_signature) = other.token.rsplit_once('.').unwrap();
        assert_eq!(
            decode(
                &format!("{signed}.{other_signature}"),
                &jwks_key(&issued.modulus, &issued.exponent)
            ),
            Err(ErrorKind::InvalidSignature)
        );
    }

    #[test]
    fn other_algorithms_and_key_kinds_are_refused_without_a_panic() {
        install();
        let hmac = DecodingKey::from_secret(b"shared secret");
        assert!(rs256_verifier(&Algorithm::RS256, &hmac).is_err());
        let issued = issue(serde_json::json!({"alg": "RS256"}));
        let rsa = jwks_key(&issued.modulus, &issued.exponent);
        for algorithm in [
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::HS256,
            Algorithm::ES256,
        ] {
            assert!(rs256_verifier(&algorithm, &rsa).is_err(), "{algorithm:?}");
        }
        assert!(no_signer(&Algorithm::RS256, &EncodingKey::from_secret(b"k")).is_err());
        assert!((RS256_OVER_RING.key_utils.compute_digest)(b"x", ThumbprintHash::SHA256).is_err());
    }
}
