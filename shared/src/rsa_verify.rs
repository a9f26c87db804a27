//! RSA signature checks: audit digests (PKCS#1 v1.5) and evidence bundles (PSS), both SHA-256,
//! over `ring`, the library keyward's TLS uses.
//!
//! The public key arrives as KMS `GetPublicKey` returns it, a DER SubjectPublicKeyInfo, or as a
//! bare PKCS#1 RSAPublicKey; ring verifies with the latter, so the former is unwrapped first. A
//! key that is neither, or whose algorithm is not RSA, verifies nothing.

use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256, UnparsedPublicKey};
use spki::ObjectIdentifier;

/// `rsaEncryption` (RFC 8017, appendix A.1), the algorithm KMS names for every RSA key.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// How a signature was padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaPadding {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (KMS `RSASSA_PKCS1_V1_5_SHA_256`).
    Pkcs1Sha256,
    /// RSASSA-PSS with SHA-256 (KMS `RSASSA_PSS_SHA_256`).
    PssSha256,
}

/// Whether `signature` over `message` verifies with `public_key_der` (SubjectPublicKeyInfo or
/// PKCS#1), for a modulus of 2048 to 8192 bits.
pub fn verify(
    padding: RsaPadding,
    public_key_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> bool {
    let Some(rsa_public_key) = pkcs1_public_key(public_key_der) else {
        return false;
    };
    let algorithm = match padding {
        RsaPadding::Pkcs1Sha256 => &RSA_PKCS1_2048_8192_SHA256,
        RsaPadding::PssSha256 => &RSA_PSS_2048_8192_SHA256,
    };
    UnparsedPublicKey::new(algorithm, rsa_public_key)
        .verify(message, signature)
        .is_ok()
}

/// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo, or the input itself when it is not
/// one (ring then checks it as PKCS#1). `None` for a SubjectPublicKeyInfo of another algorithm.
fn pkcs1_public_key(der: &[u8]) -> Option<&[u8]> {
    match spki::SubjectPublicKeyInfoRef::try_from(der) {
        Ok(info) if info.algorithm.oid == RSA_ENCRYPTION => info.subject_public_key.as_bytes(),
        Ok(_) => None,
        Err(_) => Some(der),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair as _;

    /// A key and signatures made by another library (aws-lc), so the check is against RSA as
    /// KMS and OpenSSL produce it, not against ring's own signer.
    struct Signed {
        spki: Vec<u8>,
        pkcs1: Vec<u8>,
        pkcs1_signature: Vec<u8>,
        pss_signature: Vec<u8>,
    }

    fn signed(message: &[u8]) -> Signed {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sign = |padding: &'static dyn aws_lc_rs::signature::RsaEncoding| {
            let mut signature = vec![0; key.public_modulus_len()];
            key.sign(padding, &rng, message, &mut signature).unwrap();
            signature
        };
        Signed {
            spki: key.public_key().as_der().unwrap().as_ref().to_vec(),
            pkcs1: key.public_key().as_ref().to_vec(),
            pkcs1_signature: sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256),
            pss_signature: sign(&aws_lc_rs::signature::RSA_PSS_SHA256),
        }
    }

    #[test]
    fn signatures_verify_with_either_key_encoding_and_only_their_padding() {
        let message = b"keyward-audit-digest/v1\n2026-12-05T00:00:00Z";
        let s = signed(message);
        assert_ne!(s.spki, s.pkcs1, "two encodings of the key");
        for key in [&s.spki, &s.pkcs1] {
            assert!(verify(
                RsaPadding::Pkcs1Sha256,
                key,
                message,
                &s.pkcs1_signature
            ));
            assert!(verify(
                RsaPadding::PssSha256,
                key,
                message,
                &s.pss_signature
            ));
            assert!(!verify(
                RsaPadding::PssSha256,
                key,
                message,
                &s.pkcs1_signature
            ));
            assert!(!verify(
                RsaPadding::Pkcs1Sha256,
                key,
                message,
                &s.pss_signature
            ));
            assert!(!verify(
                RsaPadding::Pkcs1Sha256,
                key,
                b"another message",
                &s.pkcs1_signature
            ));
        }
    }

    #[test]
    fn a_key_that_is_not_rsa_or_not_a_key_verifies_nothing() {
        let message = b"m";
        let s = signed(message);
        // The same SubjectPublicKeyInfo, its algorithm changed from rsaEncryption (…1.1.1) to
        // another OID (…1.1.2): the key bits are RSA's, the label is not.
        let rsa_oid = [
            0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
        ];
        let at = s
            .spki
            .windows(rsa_oid.len())
            .position(|w| w == rsa_oid)
            .unwrap();
        let mut relabelled = s.spki.clone();
        relabelled[at + rsa_oid.len() - 1] = 0x02;
        assert!(!verify(
            RsaPadding::Pkcs1Sha256,
            &relabelled,
            message,
            &s.pkcs1_signature
        ));
        for garbage in [
            &b""[..],
            b"\x30\x03\x02\x01\x01",
            &s.spki[..s.spki.len() - 1],
        ] {
            assert!(!verify(
                RsaPadding::Pkcs1Sha256,
                garbage,
                message,
                &s.pkcs1_signature
            ));
        }
    }
}
