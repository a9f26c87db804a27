use super::*;

const ENUMS: &str = include_str!("../../../infra/config/manifest/enums.yaml");
const ORG: &str = include_str!("../../../infra/config/manifest/org.yaml");
const PAYMENTS: &str = include_str!("../../../infra/config/manifest/payments.yaml");
const WEB: &str = include_str!("../../../infra/config/manifest/web.yaml");

fn sample() -> Result<Manifest, ManifestError> {
    Manifest::from_sources(
        &[
            ("org.yaml", ORG),
            ("payments.yaml", PAYMENTS),
            ("web.yaml", WEB),
        ],
        ("enums.yaml", ENUMS),
    )
}

/// A one-file manifest around a single secret declaration (YAML, indented as a list item body).
fn one(secret: &str) -> Result<Manifest, ManifestError> {
    let text = format!("version: 1\norg: acme\nenvironments: [dev, prod]\nsecrets:\n{secret}");
    Manifest::from_sources(&[("m.yaml", &text)], ("enums.yaml", ENUMS))
}

const GOOD: &str = "  - service: api
    name: key
    type: api-key
    domain: web
    owner: team-web
    classification: internal
    rotation: {strategy: random, days: 30}
    environments: [dev]
";

fn messages(result: Result<Manifest, ManifestError>) -> Vec<String> {
    result
        .unwrap_err()
        .issues
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn assert_single_issue(secret: &str, expected: &str) {
    let msgs = messages(one(secret));
    // Shape errors from the YAML parser end with the line and column.
    assert!(
        msgs.iter()
            .any(|m| m == expected || m.starts_with(&format!("{expected} at line "))),
        "expected issue {expected:?}, got {msgs:#?}"
    );
}

#[test]
fn sample_manifest_loads() {
    let manifest = sample().unwrap();
    assert_eq!(manifest.org.as_str(), "acme");
    let names: Vec<String> = manifest
        .secrets
        .iter()
        .map(|s| s.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "/acme/dev/web/session-key",
            "/acme/prod/payments/db-admin",
            "/acme/prod/payments/db-credentials",
            "/acme/prod/payments/stripe-api-key",
            "/acme/prod/web/auth0-m2m",
            "/acme/prod/web/auth0-rotator",
            "/acme/prod/web/session-key",
            "/acme/staging/payments/db-admin",
            "/acme/staging/payments/db-credentials",
            "/acme/staging/payments/stripe-api-key",
            "/acme/staging/web/session-key",
        ]
    );
    let prod_db = manifest
        .secret(&"/acme/prod/payments/db-credentials".parse().unwrap())
        .unwrap();
    assert_eq!(prod_db.governance.readers.len(), 2);
    assert_eq!(prod_db.governance.replicas[0].as_str(), "eu-central-1");
    assert_eq!(prod_db.governance.rotation.password.length, Some(40));
    assert_eq!(prod_db.origin.path, "secrets[0].environments.prod");
    let staging_web = manifest
        .secret(&"/acme/staging/web/session-key".parse().unwrap())
        .unwrap();
    assert_eq!(
        staging_web.governance.vercel.as_ref().unwrap().targets,
        vec![VercelTarget::Custom("staging".into())]
    );
    assert_eq!(manifest.scope("prod", Some("web")).count(), 3);
    assert_eq!(manifest.scope("staging", None).count(), 4);
}

#[test]
fn sample_manifest_loads_from_the_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/config/manifest");
    let strip = |m: Manifest| {
        m.secrets
            .into_iter()
            .map(|s| (s.name, s.governance, s.origin.path))
            .collect::<Vec<_>>()
    };
    let loaded = Manifest::load(&dir).unwrap();
    assert!(loaded.secrets[0].origin.file.ends_with("web.yaml"));
    assert_eq!(strip(loaded), strip(sample().unwrap()));
}

#[test]
fn every_declared_secret_fits_the_tag_contract() {
    for secret in sample().unwrap().secrets {
        let tags = crate::tags::encode(&secret.governance).unwrap();
        assert_eq!(
            crate::tags::decode(&tags).unwrap().as_ref(),
            Some(&secret.governance)
        );
    }
}

#[test]
fn rotation_over_the_maximum_points_at_the_field() {
    let secret = GOOD.replace("days: 30", "days: 120");
    assert_single_issue(
        &secret,
        "m.yaml: secrets[0].rotation.days: 120 exceeds the 90-day maximum",
    );
    let text = format!(
        "version: 1\norg: acme\nenvironments: [dev]\nsecrets:\n{GOOD}{GOOD}{GOOD}{}",
        GOOD.replace("days: 30", "days: 120")
            .replace("name: key", "name: key4")
    );
    let err = Manifest::from_sources(&[("m.yaml", &text)], ("enums.yaml", ENUMS)).unwrap_err();
    assert!(
        err.issues
            .iter()
            .any(|i| i.to_string()
                == "m.yaml: secrets[3].rotation.days: 120 exceeds the 90-day maximum"),
        "{err}"
    );
}

#[test]
fn bad_inputs_each_give_a_clear_located_error() {
    let cases: Vec<(String, &str)> = vec![
        (
            GOOD.replace("days: 30", "days: 0"),
            "m.yaml: secrets[0].rotation.days: must be at least 1 day",
        ),
        (
            GOOD.replace("type: api-key", "type: password"),
            "m.yaml: secrets[0].type: `password` is not a type declared in enums.yaml (api-key, oauth-client, postgres-credentials, postgres-master, signing-key)",
        ),
        (
            GOOD.replace("domain: web", "domain: sales"),
            "m.yaml: secrets[0].domain: `sales` is not a domain declared in enums.yaml (identity, payments, platform, web)",
        ),
        (
            GOOD.replace("owner: team-web", "owner: bob"),
            "m.yaml: secrets[0].owner: `bob` is not a owner declared in enums.yaml (team-identity, team-payments, team-platform, team-web)",
        ),
        (
            GOOD.replace("strategy: random", "strategy: postgres-single-user"),
            "m.yaml: secrets[0].rotation.strategy: `postgres-single-user` is not allowed for secret type `api-key` (allowed: random, manual)",
        ),
        (
            GOOD.replace("strategy: random", "strategy: weekly"),
            "m.yaml: secrets[0].rotation.strategy: rotation strategy `weekly` is not one of random, postgres-single-user, postgres-alternating-users, auth0-client-secret, manual",
        ),
        (
            GOOD.replace(
                "rotation: {strategy: random, days: 30}",
                "rotation: {days: 30}",
            ),
            "m.yaml: secrets[0].rotation.strategy: is required",
        ),
        (
            GOOD.replace("environments: [dev]", "environments: [qa]"),
            "m.yaml: secrets[0].environments[0]: `qa` is not a declared environment (dev, prod)",
        ),
        (
            GOOD.replace("environments: [dev]", "environments: []"),
            "m.yaml: secrets[0].environments: must name at least one environment",
        ),
        (
            GOOD.replace("name: key", "name: Key"),
            "m.yaml: secrets[0].name: `Key` must start with a lowercase letter or a digit",
        ),
        (
            GOOD.replace("service: api", "service: a/b"),
            "m.yaml: secrets[0].service: `a/b` may only contain lowercase letters, digits, `-`, `_` and `.`",
        ),
        (
            GOOD.replace("days: 30}", "days: 30, length: 8}"),
            "m.yaml: secrets[0].rotation.length: password length `8` must be between 16 and 4096",
        ),
        (
            format!("{GOOD}    readers: [arn:aws:iam::1:role/x]\n"),
            "m.yaml: secrets[0].readers[0]: reader `arn:aws:iam::1:role/x` does not name a 12-digit account",
        ),
        (
            format!("{GOOD}    replicas: [moon-1]\n"),
            "m.yaml: secrets[0].replicas[0]: region `moon-1` is not an AWS region code such as eu-west-1",
        ),
        (
            format!("{GOOD}    vercel: {{project: web, targets: [production]}}\n"),
            "m.yaml: secrets[0].vercel: needs `key` (one variable) or `env_map` (one variable per JSON field)",
        ),
        (
            format!(
                "{GOOD}    vercel: {{project: web, targets: [production], key: A, env_map: {{a: B}}}}\n"
            ),
            "m.yaml: secrets[0].vercel: set either `key` or `env_map`, not both",
        ),
        (
            format!("{GOOD}    vercel: {{project: web, targets: [production], key: TZ}}\n"),
            "m.yaml: secrets[0].vercel.key: environment variable key `TZ` is reserved by Vercel",
        ),
        (
            format!(
                "{GOOD}    vercel: {{project: web, targets: [production], branch: main, key: A}}\n"
            ),
            "m.yaml: secrets[0].vercel.branch: Vercel git branch `main` needs the preview target (Vercel scopes branch variables to preview)",
        ),
        (
            format!("{GOOD}    vercel: {{project: web, targets: [production, 'a b'], key: A}}\n"),
            "m.yaml: secrets[0].vercel.targets[1]: Vercel target `a b` is not production, preview, development or a custom environment slug/id",
        ),
        (
            GOOD.replace(
                "rotation: {strategy: random, days: 30}",
                "rotaton: {strategy: random, days: 30}",
            ),
            "m.yaml: secrets[0]: unknown field `rotaton`, expected one of `service`, `name`, `description`, `type`, `domain`, `owner`, `classification`, `rotation`, `replicas`, `readers`, `ci_read`, `vercel`, `kubernetes`, `environments`",
        ),
        (
            GOOD.replace("classification: internal", "classification: secret"),
            "m.yaml: secrets[0].classification: unknown variant `secret`, expected one of `public`, `internal`, `confidential`, `restricted`",
        ),
        (
            GOOD.replace("days: 30", "days: lots"),
            "m.yaml: secrets[0].rotation.days: invalid type: string \"lots\", expected u32",
        ),
    ];
    for (secret, expected) in cases {
        assert_single_issue(&secret, expected);
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let secret = GOOD
        .replace("days: 30", "days: 200")
        .replace("owner: team-web", "owner: nobody")
        .replace("environments: [dev]", "environments: [dev, qa]");
    let msgs = messages(one(&secret));
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
}

#[test]
fn environment_overrides_report_their_own_path() {
    let secret = GOOD.replace(
        "environments: [dev]",
        "environments:\n      dev: {}\n      prod:\n        rotation: {days: 91}\n        readers: [nope]",
    );
    let msgs = messages(one(&secret));
    assert!(
        msgs.contains(
            &"m.yaml: secrets[0].environments.prod.rotation.days: 91 exceeds the 90-day maximum"
                .to_owned()
        ),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter().any(
            |m| m.starts_with("m.yaml: secrets[0].environments.prod.readers[0]: reader `nope`")
        ),
        "{msgs:#?}"
    );
}

#[test]
fn duplicates_across_files_are_rejected() {
    let text = format!("version: 1\nsecrets:\n{GOOD}");
    let org = "version: 1\norg: acme\nenvironments: [dev]\n";
    let err = Manifest::from_sources(
        &[("a.yaml", org), ("b.yaml", &text), ("c.yaml", &text)],
        ("enums.yaml", ENUMS),
    )
    .unwrap_err();
    assert_eq!(
        err.issues
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "c.yaml: secrets[0].environments[0]: /acme/dev/api/key is declared twice (also at b.yaml: secrets[0].environments[0])"
        ]
    );
}

#[test]
fn header_problems() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("a.yaml", "version: 1\nsecrets: []\n")],
            "a.yaml: org: no manifest file declares the org",
        ),
        (
            &[("a.yaml", "version: 1\norg: Acme\nenvironments: [dev]\n")],
            "a.yaml: org: `Acme` must start with a lowercase letter or a digit",
        ),
        (
            &[
                ("a.yaml", "version: 1\norg: acme\nenvironments: [dev]\n"),
                ("b.yaml", "version: 1\norg: other\n"),
            ],
            "b.yaml: org: `other` conflicts with org `acme` declared in a.yaml",
        ),
        (
            &[("a.yaml", "version: 2\norg: acme\nenvironments: [dev]\n")],
            "a.yaml: version: 2 is not a supported manifest version (expected 1)",
        ),
        (
            &[(
                "a.yaml",
                "version: 1\norg: acme\nenvironments: [dev, dev]\n",
            )],
            "a.yaml: environments[1]: `dev` is listed twice",
        ),
        (
            &[("a.yaml", "version: 1\norg: acme\norg: acme\n")],
            "a.yaml: duplicate field `org`",
        ),
        (
            &[("a.yaml", "version: 1\norg: \"acme\n")],
            "a.yaml: found unexpected end of stream at line 3 column 1, while scanning a quoted scalar at line 2 column 6",
        ),
        (&[("a.yaml", "")], "a.yaml: missing field `version`"),
    ];
    for (docs, expected) in cases {
        let msgs = messages(Manifest::from_sources(docs, ("enums.yaml", ENUMS)));
        assert!(
            msgs.iter()
                .any(|m| m == expected || m.starts_with(&format!("{expected} at line "))),
            "expected {expected:?}, got {msgs:#?}"
        );
    }
}

#[test]
fn enums_problems() {
    let bad = "version: 1\nsecret_types:\n  api-key: {rotation: [manual]}\ndomains: [web, web]\nowners: ['a b']\nrotation: [random]\n";
    let msgs = messages(Manifest::from_sources(
        &[("m.yaml", "version: 1\norg: acme\nenvironments: [dev]\n")],
        ("enums.yaml", bad),
    ));
    assert!(
        msgs.contains(&"enums.yaml: domains[1]: `web` is listed twice".to_owned()),
        "{msgs:#?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.starts_with("enums.yaml: owners[0]: label `a b`")),
        "{msgs:#?}"
    );
    assert!(msgs.contains(&"enums.yaml: secret_types.api-key.rotation[0]: `manual` is not in the top-level rotation list".to_owned()), "{msgs:#?}");
    let unknown = messages(Manifest::from_sources(
        &[("m.yaml", "version: 1\norg: acme\nenvironments: [dev]\n")],
        (
            "enums.yaml",
            "version: 1\nsecret_types: {}\ndomains: []\nowners: []\nrotation: [yearly]\n",
        ),
    ));
    assert!(
        unknown[0].starts_with(
            "enums.yaml: rotation[0]: unknown variant `yearly`, expected one of `random`"
        ),
        "{unknown:#?}"
    );
}

#[test]
fn garbage_never_panics() {
    let mut rng = fastrand::Rng::with_seed(11);
    let pieces = [
        "version: 1\n",
        "org: acme\n",
        "secrets:\n",
        "  - ",
        "service: x\n",
        "{",
        "}",
        "[",
        "]",
        ":",
        "- ",
        "\t",
        "'",
        "\"",
        "&a ",
        "*a ",
        "!!binary ",
        "environments: {dev: ",
        "999999999999999999999",
        "\n",
    ];
    for _ in 0..2000 {
        let text: String = (0..rng.usize(0..30))
            .map(|_| pieces[rng.usize(0..pieces.len())])
            .collect();
        let _ = Manifest::from_sources(&[("f.yaml", &text)], ("enums.yaml", ENUMS));
        let _ = Manifest::from_sources(&[("f.yaml", ORG)], ("enums.yaml", &text));
    }
}

/// The schemas exist only with the `schema` feature (no function links schemars); the workspace
/// test run turns it on through the harness crate.
#[cfg(feature = "schema")]
#[test]
fn published_schemas_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
    for (file, schema) in [
        ("manifest.schema.json", manifest_schema()),
        ("enums.schema.json", enums_schema()),
        ("posture.schema.json", crate::posture::posture_schema()),
    ] {
        let path = root.join(file);
        let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("KEYWARD_BLESS").is_some() {
            std::fs::create_dir_all(&root).unwrap();
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is out of date: run `KEYWARD_BLESS=1 cargo test -p keyward-shared --features schema published_schemas`",
            path.display()
        );
    }
}

#[test]
fn kubernetes_projections_are_checked_field_by_field() {
    let good = KubernetesDecl {
        namespace: "payments".into(),
        secret_name: Some("db.credentials".into()),
        refresh_interval: Some("15m".into()),
        properties: vec!["username".into(), "password".into()],
    };
    assert!(good.problems().is_empty());
    for (patch, field) in [
        (
            KubernetesDecl {
                namespace: "Payments".into(),
                ..good.clone()
            },
            "namespace",
        ),
        (
            KubernetesDecl {
                namespace: "-x".into(),
                ..good.clone()
            },
            "namespace",
        ),
        (
            KubernetesDecl {
                secret_name: Some("a_b".into()),
                ..good.clone()
            },
            "secret_name",
        ),
        (
            KubernetesDecl {
                refresh_interval: Some("1d".into()),
                ..good.clone()
            },
            "refresh_interval",
        ),
        (
            KubernetesDecl {
                refresh_interval: Some("0h".into()),
                ..good.clone()
            },
            "refresh_interval",
        ),
        (
            KubernetesDecl {
                refresh_interval: Some("h".into()),
                ..good.clone()
            },
            "refresh_interval",
        ),
        (
            KubernetesDecl {
                properties: vec!["a b".into()],
                ..good.clone()
            },
            "properties",
        ),
        (
            KubernetesDecl {
                properties: vec!["a".into(), "a".into()],
                ..good.clone()
            },
            "properties",
        ),
    ] {
        let problems = patch.problems();
        assert_eq!(problems.len(), 1, "{patch:?}: {problems:?}");
        assert_eq!(problems[0].0, field);
    }
    // In a manifest: the path points at the field.
    let msgs = messages(one(&GOOD.replace(
        "    environments: [dev]\n",
        "    kubernetes: {namespace: Bad_NS}\n    environments: [dev]\n",
    )));
    assert!(
        msgs.iter()
            .any(|m| m.contains("secrets[0].kubernetes.namespace")),
        "{msgs:?}"
    );
}

#[test]
fn rotation_destinations_are_declared_per_environment() {
    let manifest = sample().unwrap();
    let target = |name: &str| {
        manifest
            .secret(&name.parse().unwrap())
            .unwrap()
            .rotation_target
            .clone()
    };
    match target("/acme/prod/payments/db-credentials") {
        Some(RotationTarget::Database(db)) => {
            assert_eq!(db.host, "payments-db.prod.acme.internal");
            assert_eq!(db.port, 5432);
            assert_eq!(db.dbname, "payments");
            assert_eq!(
                db.master_secret.unwrap().to_string(),
                "/acme/prod/payments/db-admin"
            );
        }
        other => panic!("{other:?}"),
    }
    match target("/acme/staging/payments/db-credentials") {
        Some(RotationTarget::Database(db)) => {
            assert_eq!(db.host, "payments-db.staging.acme.internal");
        }
        other => panic!("{other:?}"),
    }
    match target("/acme/prod/web/auth0-m2m") {
        Some(RotationTarget::Auth0(a)) => {
            assert_eq!(a.domain, "acme.eu.auth0.com");
            assert_eq!(
                a.management_secret.to_string(),
                "/acme/prod/web/auth0-rotator"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(target("/acme/prod/web/session-key"), None);
    // Never part of the tag contract.
    for secret in manifest.secrets {
        let tags = crate::tags::encode(&secret.governance).unwrap();
        assert!(
            !tags
                .iter()
                .any(|t| t.value.contains("acme.internal") || t.value.contains("auth0.com")),
            "{tags:?}"
        );
    }
}

const DB_SECRETS: &str = "  - service: pay
    name: db-admin
    type: postgres-master
    domain: payments
    owner: team-payments
    classification: restricted
    rotation: {strategy: manual, days: 90}
    environments: [dev, prod]
  - service: pay
    name: db
    type: postgres-credentials
    domain: payments
    owner: team-payments
    classification: restricted
    rotation:
      strategy: postgres-alternating-users
      days: 30
      database: {host: db.internal, dbname: pay, master_secret: /acme/dev/pay/db-admin}
    environments:
      dev: {}
";

#[test]
fn rotation_destinations_are_validated_where_written() {
    let manifest = one(DB_SECRETS).unwrap();
    let db = manifest
        .secret(&"/acme/dev/pay/db".parse().unwrap())
        .unwrap();
    assert_eq!(
        db.rotation_target,
        Some(RotationTarget::Database(DatabaseTarget {
            host: "db.internal".into(),
            port: 5432,
            dbname: "pay".into(),
            master_secret: Some("/acme/dev/pay/db-admin".parse().unwrap()),
        }))
    );
    let cases: Vec<(String, &str)> = vec![
        (
            DB_SECRETS.replace("host: db.internal", "host: \"db.internal:5432\""),
            "m.yaml: secrets[1].rotation.database.host: `db.internal:5432` is not a host name or IP address (no scheme, port or path)",
        ),
        (
            DB_SECRETS.replace(", master_secret: /acme/dev/pay/db-admin", ""),
            "m.yaml: secrets[1].rotation.database.master_secret: is required for postgres-alternating-users: the secret of the user that manages the application users",
        ),
        (
            DB_SECRETS.replace("master_secret: /acme/dev/pay/db-admin", "master_secret: /acme/prod/pay/db-admin"),
            "m.yaml: secrets[1].rotation.database.master_secret: `/acme/prod/pay/db-admin` is outside /acme/dev/: a linked secret must be in the same organisation and environment",
        ),
        (
            DB_SECRETS.replace("master_secret: /acme/dev/pay/db-admin", "master_secret: /acme/dev/pay/db"),
            "m.yaml: secrets[1].rotation.database.master_secret: names the secret itself",
        ),
        (
            DB_SECRETS.replace("master_secret: /acme/dev/pay/db-admin", "master_secret: /acme/dev/pay/nope"),
            "m.yaml: secrets[1].environments.dev: rotation.database.master_secret names /acme/dev/pay/nope, which the manifest does not declare",
        ),
        (
            DB_SECRETS.replace("strategy: postgres-alternating-users", "strategy: postgres-single-user"),
            "m.yaml: secrets[1].rotation.database.master_secret: is only for postgres-alternating-users; single-user rotation logs in as the user itself",
        ),
        (
            DB_SECRETS.replace(
                "database: {host: db.internal, dbname: pay, master_secret: /acme/dev/pay/db-admin}",
                "auth0: {domain: acme.eu.auth0.com, management_secret: /acme/dev/pay/db-admin}",
            ),
            "m.yaml: secrets[1].rotation.auth0: is only for auth0-client-secret rotation, not `postgres-alternating-users`",
        ),
        (
            DB_SECRETS.replace("dev: {}", "dev:\n        rotation:\n          database: {host: 'http://x', master_secret: /acme/dev/pay/db-admin}"),
            "m.yaml: secrets[1].environments.dev.rotation.database.host: `http://x` is not a host name or IP address (no scheme, port or path)",
        ),
    ];
    for (secret, expected) in cases {
        assert_single_issue(&secret, expected);
    }
    // The override's block replaces the declaration's.
    let over = DB_SECRETS.replace(
        "dev: {}",
        "dev:\n        rotation:\n          database: {host: 10.0.0.7, port: 6432, master_secret: /acme/dev/pay/db-admin}",
    );
    let manifest = one(&over).unwrap();
    let Some(RotationTarget::Database(db)) = &manifest
        .secret(&"/acme/dev/pay/db".parse().unwrap())
        .unwrap()
        .rotation_target
    else {
        panic!()
    };
    assert_eq!(
        (db.host.as_str(), db.port, db.dbname.as_str()),
        ("10.0.0.7", 6432, "postgres")
    );
}

#[test]
fn auth0_domains_follow_the_rotation_function() {
    for ok in [
        "acme.eu.auth0.com",
        "https://login.acme.com/",
        "http://127.0.0.1:8080",
        "localhost:3000",
    ] {
        assert_eq!(valid_auth0_domain(ok), Ok(()), "{ok}");
    }
    for bad in [
        "http://acme.eu.auth0.com",
        "ftp://x",
        "acme.auth0.com/evil?x=",
        "",
        "acme.auth0.com:0",
        "user@acme.auth0.com",
    ] {
        assert!(valid_auth0_domain(bad).is_err(), "{bad}");
    }
}

#[test]
fn ci_read_is_declared_per_secret_and_overridden_per_environment() {
    let text = GOOD.replace(
        "environments: [dev]",
        "environments: {dev: {}, prod: {ci_read: false}}",
    ) + "    ci_read: true\n";
    let manifest = one(&text).unwrap();
    let by_env: Vec<(String, bool)> = manifest
        .secrets
        .iter()
        .map(|s| (s.name.to_string(), s.governance.ci_read))
        .collect();
    assert_eq!(
        by_env,
        [
            ("/acme/dev/api/key".to_owned(), true),
            ("/acme/prod/api/key".to_owned(), false)
        ]
    );
    // Restricted values never reach CI: refused where the declaration says so.
    let restricted = text.replace("classification: internal", "classification: restricted");
    let msgs = messages(one(&restricted));
    assert!(
        msgs.iter().any(
            |m| m.starts_with("m.yaml: secrets[0].environments.dev: ") && m.contains("ci_read")
        ),
        "{msgs:#?}"
    );
}
