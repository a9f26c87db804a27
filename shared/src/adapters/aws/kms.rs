//! KMS: digest signatures (RSASSA-PKCS1-v1_5) and evidence signatures (RSASSA-PSS).

use super::sdk_error_text;
use crate::audit::{DigestSigner, SignError};

/// Signs digests with an asymmetric KMS key (`RSA_2048`+, `SIGN_VERIFY`).
#[derive(Debug)]
pub struct KmsDigestSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    public_key: tokio::sync::OnceCell<Vec<u8>>,
}

impl KmsDigestSigner {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
            public_key: tokio::sync::OnceCell::new(),
        }
    }
}

impl DigestSigner for KmsDigestSigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        self.public_key
            .get_or_try_init(|| async {
                let out = self
                    .client
                    .get_public_key()
                    .key_id(&self.key_id)
                    .send()
                    .await
                    .map_err(|e| SignError(sdk_error_text(&e).to_string()))?;
                out.public_key
                    .map(|b| b.into_inner())
                    .ok_or_else(|| SignError("KMS returned no public key".into()))
            })
            .await
            .cloned()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(
            message,
            aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPkcs1V15Sha256,
        )
        .await
    }
}

impl KmsDigestSigner {
    async fn sign_with(
        &self,
        message: &[u8],
        algorithm: aws_sdk_kms::types::SigningAlgorithmSpec,
    ) -> Result<Vec<u8>, SignError> {
        let out = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(aws_smithy_types::Blob::new(message))
            .message_type(aws_sdk_kms::types::MessageType::Raw)
            .signing_algorithm(algorithm)
            .send()
            .await
            .map_err(|e| SignError(sdk_error_text(&e).to_string()))?;
        out.signature
            .map(|b| b.into_inner())
            .ok_or_else(|| SignError("KMS returned no signature".into()))
    }
}

/// Evidence bundles are signed with the digest key under PSS, which the key policy allows
/// the evidence signers alone and the digest verifier never accepts.
impl crate::evidence::EvidenceSigner for KmsDigestSigner {
    async fn public_key_der(&self) -> Result<Vec<u8>, SignError> {
        DigestSigner::public_key_der(self).await
    }

    async fn sign_pss(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        self.sign_with(
            message,
            aws_sdk_kms::types::SigningAlgorithmSpec::RsassaPssSha256,
        )
        .await
    }
}
