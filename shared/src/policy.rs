//! Resource policies as keyward reads them: who an `Allow` admits. Drift reports a public
//! policy; posture sets the admitted principals beside the declared and the seen readers.

use std::collections::BTreeSet;

/// What a resource policy grants (parsed from `GetResourcePolicy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyGrants {
    /// An `Allow` to `*` without any condition.
    pub public: bool,
    /// AWS principals an `Allow` statement names.
    pub principals: BTreeSet<String>,
}

impl PolicyGrants {
    /// The grants of a policy as read from an account: one that does not parse is taken as
    /// public, since it cannot be shown not to be.
    pub fn parse_or_public(document: &str) -> Self {
        Self::parse(document).unwrap_or(Self {
            public: true,
            principals: Default::default(),
        })
    }

    /// Parses a resource policy document; `Err` names what is malformed.
    pub fn parse(document: &str) -> Result<Self, String> {
        let doc: serde_json::Value =
            serde_json::from_str(document).map_err(|e| format!("not JSON ({e})"))?;
        let statements = match &doc["Statement"] {
            serde_json::Value::Array(list) => list.clone(),
            serde_json::Value::Object(_) => vec![doc["Statement"].clone()],
            _ => return Err("no Statement".into()),
        };
        let mut grants = Self::default();
        for st in statements {
            if st["Effect"].as_str() != Some("Allow") {
                continue;
            }
            let conditioned = st.get("Condition").is_some_and(|c| !c.is_null());
            // `Allow` with `NotPrincipal` grants everyone but the named principals.
            if st.get("NotPrincipal").is_some_and(|p| !p.is_null()) {
                grants.public |= !conditioned;
                continue;
            }
            let mut principals = Vec::new();
            match &st["Principal"] {
                serde_json::Value::String(p) => principals.push(p.clone()),
                serde_json::Value::Object(map) => {
                    for value in map.values() {
                        match value {
                            serde_json::Value::String(p) => principals.push(p.clone()),
                            serde_json::Value::Array(list) => principals
                                .extend(list.iter().filter_map(|p| p.as_str().map(str::to_owned))),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
            for p in principals {
                if p == "*" {
                    grants.public |= !conditioned;
                } else {
                    grants.principals.insert(p);
                }
            }
        }
        Ok(grants)
    }
}
