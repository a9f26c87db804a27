//! Manifests the domain crate's tests share.

use crate::manifest::Manifest;

pub const ENUMS: &str = "version: 1
secret_types:
  api-key: {rotation: [random, manual]}
domains: [web]
owners: [team-web]
rotation: [random, manual]
";

/// Two `web` secrets in staging and prod: one rotated by keyward, mapped to Vercel, with a
/// declared reader; one rotated by hand.
pub const WEB: &str = "version: 1
org: acme
environments: [staging, prod]
secrets:
  - service: web
    name: session-key
    type: api-key
    domain: web
    owner: team-web
    classification: confidential
    rotation: {strategy: random, days: 30}
    readers: [arn:aws:iam::123456789012:role/web-app]
    vercel: {project: acme-web, targets: [production], key: SESSION_KEY}
    environments: [staging, prod]
  - service: web
    name: stripe-key
    type: api-key
    domain: web
    owner: team-web
    classification: restricted
    rotation: {strategy: manual, days: 90}
    environments: [staging, prod]
";

pub fn web_manifest() -> Manifest {
    Manifest::from_sources(&[("web.yaml", WEB)], ("enums.yaml", ENUMS)).unwrap()
}
