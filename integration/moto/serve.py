"""moto's server, as the integration harness starts it.

One divergence from AWS is corrected here, because keyward's own verifier sees it: AWS KMS signs
RSASSA_PSS_SHA_256 (and _384, _512) with a salt as long as the digest ("a 256-bit salt" for
SHA-256, per the KMS key spec reference), while moto 5.2 uses the longest salt the key allows.
Verifiers that follow AWS (aws-lc's RSA_PSS_*) reject moto's signatures. moto names the salt
length as `padding.PSS.MAX_LENGTH` at signing time, so pointing that name at the digest length
makes moto sign as KMS does. Nothing else in moto uses it.
"""

import sys

from cryptography.hazmat.primitives.asymmetric import padding

padding.PSS.MAX_LENGTH = padding.PSS.DIGEST_LENGTH

from moto.server import main  # noqa: E402  (after the correction it depends on)

if __name__ == "__main__":
    sys.exit(main())
