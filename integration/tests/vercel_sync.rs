//! The vercel-sync handler end to end: Secrets Manager and the state bucket in moto, the fake
//! Vercel API over HTTP, the production adapters in between. Each test owns an org prefix, so
//! tests share one moto server without seeing each other's secrets.

use keyward_integration::support::unique;
use std::time::Duration;

use aws_sdk_secretsmanager::Client as Sm;
use keyward_integration::declared::LiveManifest;
use keyward_integration::fakes::vercel::{EnvSeed, FakeVercel, RunningVercel, StoredEnv};
use keyward_integration::logs::LogBuffer;
use keyward_integration::moto::{BucketKind, MotoServer};
use keyward_integration::samples::governance_tags;
use keyward_shared::adapters::aws::{S3MarkerStore, tags_to_sdk};
use keyward_shared::adapters::http::{HttpClient, RetryPolicy};
use keyward_shared::events::{DomainEvent, EventData, VercelTargetStatus};
use keyward_shared::lambda::{FailureKind, Handler};
use keyward_shared::ports::InMemoryEventPublisher;
use keyward_shared::redact::Redactor;
use keyward_shared::tags::Tag;
use secrecy::SecretString;
use serde_json::json;
use vercel_sync::redeploy::{InMemoryRedeployQueue, RedeployQueue, SqsRedeployQueue};
use vercel_sync::source::SecretsManagerSource;
use vercel_sync::vercel::HttpVercel;
use vercel_sync::{Report, SyncError, Syncer};

const TOKEN: &str = "vcp_test_token_9f8e7d6c5b4a";

type TestSyncer<Q> = Syncer<
    SecretsManagerSource,
    HttpVercel,
    S3MarkerStore,
    InMemoryEventPublisher,
    Q,
    LiveManifest,
>;

struct World<Q> {
    /// The declared manifest: what each test's secrets are declared with.
    declared: LiveManifest,
    vercel: RunningVercel,
    project: String,
    sm: Sm,
    prefix: String,
    syncer: TestSyncer<Q>,
}

async fn world() -> World<InMemoryRedeployQueue> {
    world_with(Some(InMemoryRedeployQueue::default())).await
}

async fn world_with<Q: RedeployQueue>(queue: Option<Q>) -> World<Q> {
    let moto = MotoServer::shared().await;
    let sdk = moto.sdk_config();
    let bucket = format!("state-{}", unique());
    moto.create_bucket(&bucket, BucketKind::Versioned)
        .await
        .unwrap();
    let vercel = FakeVercel::start(TOKEN).await.unwrap();
    let project = vercel
        .fake
        .add_project("acme-web", Some(("team_acme", "acme")));
    let redactor = Redactor::new();
    let http = HttpClient::new(
        "keyward-vercel-sync-test",
        Duration::from_secs(5),
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(10),
            ..RetryPolicy::default()
        },
        redactor.clone(),
    )
    .unwrap();
    let hook = vercel.fake.add_deploy_hook(&project);
    let sm = Sm::new(&sdk);
    let prefix = format!("/o{}/prod/", unique());
    let declared = LiveManifest::default();
    let syncer = Syncer {
        manifests: declared.clone(),
        source: SecretsManagerSource::new(sm.clone(), redactor.clone()),
        vercel: HttpVercel::new(http, vercel.api_url(), SecretString::from(TOKEN)),
        state: S3MarkerStore::new(moto.s3(), &bucket),
        publisher: InMemoryEventPublisher::default(),
        redeploy: queue,
        deploy_hooks: [("acme-web".to_owned(), SecretString::from(hook))].into(),
        secret_prefix: prefix.clone(),
        debounce_secs: 0,
        redactor,
    };
    World {
        declared,
        vercel,
        project,
        sm,
        prefix,
        syncer,
    }
}

/// The vercel tags of a mapping to the `acme-web` project of team `team_acme`, on an internal
/// secret (restricted and confidential secrets may not go to every target). A JSON map needs a
/// JSON secret, which the tag contract refuses for `random` rotation of the whole string: those
/// secrets are `manual`.
fn vercel_tags(targets: &str, extra: &[(&str, &str)]) -> Vec<Tag> {
    let json = extra
        .iter()
        .any(|(k, _)| k.starts_with("keyward:vercel:map:"));
    let mut tags = governance_tags(
        if json { "manual" } else { "random" },
        &[
            ("keyward:vercel:project", "acme-web"),
            ("keyward:vercel:team", "team_acme"),
            ("keyward:vercel:targets", targets),
        ],
    );
    tags.extend(extra.iter().map(|(k, v)| Tag::new(*k, *v)));
    for tag in tags
        .iter_mut()
        .filter(|t| t.key == "keyward:classification")
    {
        tag.value = "internal".into();
    }
    tags
}

fn key_tag(key: &str) -> (&'static str, &str) {
    ("keyward:vercel:key", key)
}

fn scheduled() -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(), "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-23T05:00:00Z",
        "region": "eu-west-1", "resources": ["arn:aws:events:eu-west-1:123456789012:rule/keyward-vercel-sweep"],
        "detail": {}
    })
    .to_string()
}

fn api_call(event_name: &str, secret_id: &str) -> String {
    json!({
        "version": "0", "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.secretsmanager",
        "account": "123456789012", "time": "2026-11-23T05:00:00Z", "region": "eu-west-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09", "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name, "awsRegion": "eu-west-1",
            "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::123456789012:assumed-role/deployer/ci"},
            "requestParameters": {"secretId": secret_id},
            "responseElements": {"arn": secret_id}
        }
    })
    .to_string()
}

impl<Q: RedeployQueue> World<Q> {
    fn name(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Creates the secret with `tags` and declares it with the same governance (as CI applies
    /// a reviewed declaration).
    async fn create(&self, rest: &str, value: &str, tags: Vec<Tag>) -> String {
        self.declared.declare_tags(&self.name(rest), &tags);
        self.create_undeclared(rest, value, tags).await
    }

    /// Creates the secret with `tags` and leaves the manifest as it is.
    async fn create_undeclared(&self, rest: &str, value: &str, tags: Vec<Tag>) -> String {
        self.sm
            .create_secret()
            .name(self.name(rest))
            .secret_string(value)
            .set_tags(Some(tags_to_sdk(&tags)))
            .send()
            .await
            .unwrap()
            .arn
            .unwrap()
    }

    async fn put_value(&self, arn: &str, value: &str) {
        self.sm
            .put_secret_value()
            .secret_id(arn)
            .secret_string(value)
            .send()
            .await
            .unwrap();
    }

    /// Changes the secret's tags and re-declares it with the governance they now carry (a
    /// reviewed change to the declaration, applied).
    async fn retag(&self, arn: &str, remove: &[&str], add: &[(&str, &str)]) {
        self.retag_undeclared(arn, remove, add).await;
        let described = self
            .sm
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .unwrap();
        let name = described.name().unwrap_or_default().to_owned();
        let tags: Vec<Tag> = described
            .tags()
            .iter()
            .map(|t| Tag::new(t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        match keyward_shared::tags::decode(&tags) {
            Ok(Some(_)) => self.declared.declare_tags(&name, &tags),
            Ok(None) => self.declared.undeclare(&name),
            // A broken tag set declares nothing new: the declaration stays as it was.
            Err(_) => {}
        }
    }

    /// Changes the secret's tags only: someone with `TagResource` on one secret.
    async fn retag_undeclared(&self, arn: &str, remove: &[&str], add: &[(&str, &str)]) {
        if !remove.is_empty() {
            self.sm
                .untag_resource()
                .secret_id(arn)
                .set_tag_keys(Some(remove.iter().map(|k| (*k).to_owned()).collect()))
                .send()
                .await
                .unwrap();
        }
        if !add.is_empty() {
            let tags: Vec<Tag> = add.iter().map(|(k, v)| Tag::new(*k, *v)).collect();
            self.sm
                .tag_resource()
                .secret_id(arn)
                .set_tags(Some(tags_to_sdk(&tags)))
                .send()
                .await
                .unwrap();
        }
    }

    async fn sync(&self, payload: &str) -> Result<Report, SyncError> {
        self.syncer.handle(payload).await
    }

    fn envs(&self) -> Vec<StoredEnv> {
        self.vercel.fake.envs(&self.project)
    }

    fn env(&self, key: &str, target: &str) -> StoredEnv {
        self.envs()
            .into_iter()
            .find(|e| {
                e.key == key && (e.target == [target] || e.custom_environment_ids == [target])
            })
            .unwrap_or_else(|| panic!("no {key} on {target}: {:?}", self.envs()))
    }

    /// Events published so far, drained.
    fn events(&self) -> Vec<DomainEvent> {
        std::mem::take(&mut *self.syncer.publisher.published.lock().unwrap())
    }

    fn writes(&self) -> Vec<(String, usize)> {
        self.vercel
            .fake
            .seen_writes()
            .into_iter()
            .map(|s| (format!("{} {}", s.method, s.status), s.items))
            .collect()
    }
}

fn statuses(event: &DomainEvent) -> Vec<(String, VercelTargetStatus)> {
    let results = match &event.data {
        EventData::VercelSyncCompleted { results, .. }
        | EventData::VercelSyncFailed { results, .. } => results,
        other => panic!("not a sync event: {other:?}"),
    };
    results
        .iter()
        .map(|r| (format!("{}@{}", r.key, r.target), r.status))
        .collect()
}

#[tokio::test]
async fn first_sync_rotation_and_unchanged_resync() {
    let w = world().await;
    let arn = w
        .create(
            "web/session-key",
            "first-value-8d1f",
            vercel_tags(
                "production preview development",
                &[key_tag("SESSION_SECRET")],
            ),
        )
        .await;

    // First sync: one batch of three records, one per target, typed per target.
    let report = w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert_eq!(report.writes, 1);
    assert_eq!(w.writes(), [("POST 201".to_owned(), 3)]);
    let prod = w.env("SESSION_SECRET", "production");
    assert_eq!(
        (prod.value.as_str(), prod.r#type.as_str()),
        ("first-value-8d1f", "sensitive")
    );
    assert_eq!(w.env("SESSION_SECRET", "preview").r#type, "sensitive");
    assert_eq!(w.env("SESSION_SECRET", "development").r#type, "encrypted");
    let comment = prod.comment.clone().unwrap();
    assert!(
        comment.starts_with(&format!(
            "managed-by=keyward;secret={}web/session-key;version=",
            w.prefix
        )),
        "{comment}"
    );
    let events = w.events();
    assert_eq!(events.len(), 1);
    assert!(matches!(
        events[0].data,
        EventData::VercelSyncCompleted { .. }
    ));
    assert!(
        statuses(&events[0])
            .iter()
            .all(|(_, s)| *s == VercelTargetStatus::Created)
    );
    assert_eq!(report.redeploys_scheduled, ["acme-web"]);

    // Unchanged: the sweep reads (one list) and writes nothing, and reports nothing.
    w.vercel.fake.clear_seen();
    let report = w.sync(&scheduled()).await.unwrap();
    assert_eq!((report.writes, report.events), (0, 0));
    assert!(w.writes().is_empty(), "{:?}", w.writes());
    let reads: Vec<_> = w
        .vercel
        .fake
        .seen()
        .iter()
        .map(|s| s.method.clone())
        .collect();
    assert_eq!(reads, ["GET"], "one project listing");

    // Rotation: the same records take the new value in one batch.
    let ids: Vec<String> = w.envs().iter().map(|e| e.id.clone()).collect();
    w.put_value(&arn, "second-value-77aa").await;
    let report = w
        .sync(&api_call("UpdateSecretVersionStage", &arn))
        .await
        .unwrap();
    assert_eq!(report.changed.len(), 1);
    assert_eq!(w.writes(), [("POST 201".to_owned(), 3)]);
    assert!(w.envs().iter().all(|e| e.value == "second-value-77aa"));
    assert_eq!(
        w.envs().iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        ids,
        "updated in place"
    );
    let events = w.events();
    assert!(
        statuses(&events[0])
            .iter()
            .all(|(_, s)| *s == VercelTargetStatus::Updated)
    );
    // The same trigger again (EventBridge redelivers): zero writes.
    w.vercel.fake.clear_seen();
    w.sync(&api_call("UpdateSecretVersionStage", &arn))
        .await
        .unwrap();
    assert!(w.writes().is_empty());
    assert!(
        statuses(&w.events()[0])
            .iter()
            .all(|(_, s)| *s == VercelTargetStatus::Unchanged)
    );
}

#[tokio::test]
async fn hand_edits_are_reported_and_overwritten_only_by_policy() {
    let w = world().await;
    let arn = w
        .create(
            "web/api-key",
            "keyward-value-1",
            vercel_tags("production", &[key_tag("API_KEY")]),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    w.events();
    let id = w.env("API_KEY", "production").id;
    w.vercel
        .fake
        .edit_by_hand(&w.project, &id, "typed-in-dashboard");

    let report = w.sync(&scheduled()).await.unwrap();
    assert_eq!(report.drift.len(), 1);
    assert_eq!(w.env("API_KEY", "production").value, "typed-in-dashboard");
    let events = w.events();
    let EventData::VercelSyncFailed { results, error, .. } = &events[0].data else {
        panic!("drift is not parity: {:?}", events[0].data)
    };
    assert_eq!(results[0].status, VercelTargetStatus::DriftDetected);
    let detail = results[0].detail.as_ref().unwrap().as_str();
    assert!(detail.contains("by user_dashboard"), "{detail}");
    assert!(error.as_str().contains("1 target(s) drifted"), "{error:?}");

    w.retag(&arn, &[], &[("keyward:vercel:on-edit", "overwrite")])
        .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    assert_eq!(w.env("API_KEY", "production").value, "keyward-value-1");
    assert_eq!(
        statuses(&w.events()[0]),
        [("API_KEY@production".to_owned(), VercelTargetStatus::Updated)]
    );
}

#[tokio::test]
async fn foreign_integration_and_other_keys_are_never_touched() {
    let w = world().await;
    let seed = |key: &str, target: &str, configuration_id: Option<&str>| EnvSeed {
        key: key.into(),
        value: "someone-elses".into(),
        r#type: "encrypted".into(),
        target: vec![target.into()],
        git_branch: None,
        custom_environment_ids: vec![],
        comment: None,
        configuration_id: configuration_id.map(str::to_owned),
    };
    w.vercel
        .fake
        .seed_env(&w.project, seed("DATABASE_URL", "production", None));
    w.vercel.fake.seed_env(
        &w.project,
        seed("DATABASE_URL", "preview", Some("icfg_neon")),
    );
    w.vercel
        .fake
        .seed_env(&w.project, seed("UNRELATED", "production", None));
    let before = w.envs();
    let arn = w
        .create(
            "web/database-url",
            "postgres://keyward-owned",
            vercel_tags("production preview development", &[key_tag("DATABASE_URL")]),
        )
        .await;
    let err = w.sync(&api_call("PutSecretValue", &arn)).await;
    assert!(err.is_ok(), "a refusal is reported, not retried: {err:?}");
    for stored in &before {
        assert!(w.envs().contains(stored), "{stored:?} was modified");
    }
    assert_eq!(
        w.env("DATABASE_URL", "development").value,
        "postgres://keyward-owned"
    );
    let events = w.events();
    let EventData::VercelSyncFailed { results, .. } = &events[0].data else {
        panic!("{:?}", events[0].data)
    };
    let by_target: Vec<_> = results
        .iter()
        .map(|r| {
            (
                r.target.to_string(),
                r.status,
                r.detail.as_ref().map(|d| d.as_str().to_owned()),
            )
        })
        .collect();
    assert_eq!(by_target[0].0, "development");
    assert_eq!(by_target[0].1, VercelTargetStatus::Created);
    assert_eq!(by_target[1].1, VercelTargetStatus::Failed);
    assert!(
        by_target[1]
            .2
            .as_deref()
            .unwrap()
            .contains("managed by an integration")
    );
    assert_eq!(by_target[2].1, VercelTargetStatus::Failed);
    assert!(by_target[2].2.as_deref().unwrap().contains("does not own"));
}

#[tokio::test]
async fn rate_limits_and_partial_failures_resume_where_they_stopped() {
    let w = world().await;
    let arn = w
        .create(
            "web/oauth",
            r#"{"client_id":"cid-123","client_secret":"csecret-456","port":5432}"#,
            vercel_tags(
                "production preview",
                &[
                    ("keyward:vercel:map:client_id", "CLIENT_ID"),
                    ("keyward:vercel:map:client_secret", "CLIENT_SECRET"),
                    ("keyward:vercel:map:port", "DB_PORT"),
                ],
            ),
        )
        .await;

    // One 429 (Retry-After: 0) is ridden out inside the call.
    w.vercel.fake.throttle_next_writes(1, 0);
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert_eq!(
        w.writes(),
        [("POST 429".to_owned(), 6), ("POST 201".to_owned(), 6)]
    );
    // JSON explosion: one variable per field, numbers as text.
    assert_eq!(w.env("CLIENT_ID", "preview").value, "cid-123");
    assert_eq!(w.env("CLIENT_SECRET", "production").value, "csecret-456");
    assert_eq!(w.env("DB_PORT", "production").value, "5432");
    w.events();

    // A rotation where Vercel fails one element: exactly that target is reported and retried.
    w.put_value(
        &arn,
        r#"{"client_id":"cid-123","client_secret":"csecret-789","port":5432}"#,
    )
    .await;
    w.vercel
        .fake
        .fail_key_once("CLIENT_SECRET", "internal_server_error");
    w.vercel.fake.clear_seen();
    let err = w.sync(&api_call("PutSecretValue", &arn)).await.unwrap_err();
    assert_eq!(err.kind(), "SyncIncomplete");
    let failed: Vec<_> = statuses(&w.events()[0])
        .into_iter()
        .filter(|(_, s)| *s == VercelTargetStatus::Failed)
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    // The retry writes only what is missing.
    w.vercel.fake.clear_seen();
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert_eq!(w.writes(), [("POST 201".to_owned(), 1)]);
    assert!(
        w.envs()
            .iter()
            .filter(|e| e.key == "CLIENT_SECRET")
            .all(|e| e.value == "csecret-789")
    );

    // Throttled past the client's patience: a retryable failure, nothing half-recorded.
    w.put_value(
        &arn,
        r#"{"client_id":"cid-123","client_secret":"csecret-000","port":5432}"#,
    )
    .await;
    w.vercel.fake.throttle_next_writes(10, 0);
    let err = w.sync(&api_call("PutSecretValue", &arn)).await.unwrap_err();
    assert_eq!(err.kind(), "SyncIncomplete");
    w.vercel.fake.throttle_next_writes(0, 0);
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert!(
        w.envs()
            .iter()
            .filter(|e| e.key == "CLIENT_SECRET")
            .all(|e| e.value == "csecret-000")
    );
}

#[tokio::test]
async fn custom_environment_preview_branch_and_pagination() {
    let w = world().await;
    let staging = w.vercel.fake.add_custom_environment(&w.project, "staging");
    // Enough foreign records to page through.
    w.vercel.fake.set_page_size(2);
    for n in 0..5 {
        w.vercel.fake.seed_env(
            &w.project,
            EnvSeed {
                key: format!("OTHER_{n}"),
                value: "x".into(),
                r#type: "plain".into(),
                target: vec!["production".into()],
                git_branch: None,
                custom_environment_ids: vec![],
                comment: None,
                configuration_id: None,
            },
        );
    }
    let arn = w
        .create(
            "web/feature-flag-key",
            "ffk-1",
            vercel_tags(
                "preview staging",
                &[
                    key_tag("FLAGS_KEY"),
                    ("keyward:vercel:branch", "release/next"),
                ],
            ),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    let preview = w.env("FLAGS_KEY", "preview");
    assert_eq!(preview.git_branch.as_deref(), Some("release/next"));
    let custom = w.env("FLAGS_KEY", &staging);
    assert!(custom.target.is_empty());
    assert_eq!(custom.value, "ffk-1");
    w.events();
    // Re-sync over a paginated listing: everything found, nothing written.
    w.vercel.fake.clear_seen();
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert!(w.writes().is_empty());
    assert!(
        w.vercel
            .fake
            .seen()
            .iter()
            .filter(|s| s.path.ends_with("/env"))
            .count()
            >= 4
    );
    w.events();

    // A custom environment that does not exist: a clear failure naming it.
    w.retag(
        &arn,
        &["keyward:vercel:branch"],
        &[("keyward:vercel:targets", "production qa")],
    )
    .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    let events = w.events();
    let EventData::VercelSyncFailed { results, .. } = &events[0].data else {
        panic!("{:?}", events[0].data)
    };
    let qa = results.iter().find(|r| r.target.as_str() == "qa").unwrap();
    assert!(
        qa.detail
            .as_ref()
            .unwrap()
            .as_str()
            .contains("custom environment `qa` does not exist")
    );
}

#[tokio::test]
async fn bad_mapping_tags_name_the_tag_and_write_nothing() {
    let w = world().await;
    for (rest, extra, expect) in [
        (
            "web/typo",
            vec![key_tag("K"), ("keyward:vercel:orphan", "delete")],
            "keyward:vercel:orphan",
        ),
        (
            "web/bad-policy",
            vec![key_tag("K"), ("keyward:vercel:on-edit", "sometimes")],
            "keyward:vercel:on-edit",
        ),
        (
            "web/both",
            vec![key_tag("K"), ("keyward:vercel:map:a", "A")],
            "keyward:vercel:key",
        ),
    ] {
        let arn = w.create(rest, "v", vercel_tags("production", &extra)).await;
        w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
        let events = w.events();
        let EventData::VercelSyncFailed { error, results, .. } = &events[0].data else {
            panic!("{:?}", events[0].data)
        };
        assert!(results.is_empty());
        assert!(
            error.as_str().contains(expect),
            "{error:?} should name {expect}"
        );
    }
    let arn = w
        .create(
            "web/not-json",
            "plain text",
            vercel_tags(
                "production",
                &[("keyward:vercel:map:password", "DB_PASSWORD")],
            ),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    let events = w.events();
    let EventData::VercelSyncFailed { results, .. } = &events[0].data else {
        panic!()
    };
    assert!(
        results[0]
            .detail
            .as_ref()
            .unwrap()
            .as_str()
            .contains("not a JSON object")
    );
    assert!(w.writes().is_empty());
    assert!(w.envs().is_empty());

    // Bad input in the event itself.
    for payload in [
        "{",
        r#"{"source":"aws.s3","detail-type":"Object Created","detail":{}}"#,
    ] {
        assert_eq!(w.sync(payload).await.unwrap_err().kind(), "InvalidEvent");
    }
    let failed_call = json!({"source": "aws.secretsmanager", "detail-type": "AWS API Call via CloudTrail",
        "detail": {"eventName": "PutSecretValue", "errorCode": "AccessDenied", "requestParameters": {"secretId": "x"}}});
    assert_eq!(
        w.sync(&failed_call.to_string()).await.unwrap().input,
        "skipped"
    );
}

#[tokio::test]
async fn orphans_are_deleted_only_when_the_mapping_says_so() {
    let w = world().await;
    let arn = w
        .create(
            "web/k1",
            "v1",
            vercel_tags("production development", &[key_tag("K1")]),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    // Development dropped, orphans kept by default: left in Vercel, released from the ledger.
    w.retag(&arn, &[], &[("keyward:vercel:targets", "production")])
        .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    assert_eq!(w.envs().len(), 2);
    w.events();

    // Production dropped too, now with `orphans: delete`: the production record goes.
    let arn2 = w
        .create(
            "web/k2",
            "v2",
            vercel_tags(
                "production development",
                &[key_tag("K2"), ("keyward:vercel:orphans", "delete")],
            ),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn2)).await.unwrap();
    w.retag(&arn2, &[], &[("keyward:vercel:targets", "production")])
        .await;
    w.sync(&api_call("TagResource", &arn2)).await.unwrap();
    assert!(
        w.envs()
            .iter()
            .all(|e| !(e.key == "K2" && e.target == ["development"]))
    );
    assert!(
        w.envs()
            .iter()
            .any(|e| e.key == "K2" && e.target == ["production"])
    );

    // The secret deleted for good: the sweep finds its ledger and deletes what is left.
    w.events();
    w.sm.delete_secret()
        .secret_id(&arn2)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let report = w.sync(&scheduled()).await.unwrap();
    assert!(w.envs().iter().all(|e| e.key != "K2"), "{:?}", w.envs());
    assert_eq!(report.changed, [w.name("web/k2")]);
    // K1's released development record is still there, untouched.
    assert_eq!(w.env("K1", "development").value, "v1");
}

#[tokio::test]
async fn scope_requests_and_debounced_redeploys() {
    let w = world().await;
    let mut arns = Vec::new();
    for n in 0..3 {
        arns.push(
            w.create(
                &format!("web/s{n}"),
                &format!("value-{n}"),
                vercel_tags("production", &[key_tag(&format!("S{n}"))]),
            )
            .await,
        );
    }
    w.create(
        "api/other",
        "o",
        vercel_tags("production", &[key_tag("OTHER")]),
    )
    .await;
    let env = w.prefix.split('/').nth(2).unwrap().to_owned();
    let request = DomainEvent::new(
        keyward_shared::events::CorrelationId::generate(),
        keyward_shared::events::Actor::service("ci-gateway"),
        None,
        keyward_shared::events::Outcome::Success,
        EventData::VercelSyncRequested {
            scope: keyward_shared::events::SyncScope {
                environment: env,
                service: Some("web".into()),
                secret: None,
            },
        },
    );
    let envelope = json!({"source": "keyward.ci-gateway", "detail-type": "VercelSyncRequested",
        "detail": serde_json::from_str::<serde_json::Value>(&request.to_detail_json().unwrap()).unwrap()});
    let report = w.sync(&envelope.to_string()).await.unwrap();
    assert_eq!(report.secrets, 3, "the web service only");
    assert_eq!(report.writes, 3);
    assert!(w.envs().iter().all(|e| e.key != "OTHER"));
    assert_eq!(w.events().len(), 3);

    // Three rotations in a burst: three requests queued, one deployment.
    for (n, arn) in arns.iter().enumerate() {
        w.put_value(arn, &format!("rotated-{n}")).await;
        w.sync(&api_call("PutSecretValue", arn)).await.unwrap();
    }
    let queued = std::mem::take(&mut *w.syncer.redeploy.as_ref().unwrap().sent.lock().unwrap());
    assert_eq!(
        queued.len(),
        4,
        "one per changing sync (the scope sync included)"
    );
    let records: Vec<_> = queued
        .iter()
        .enumerate()
        .map(|(n, (request, _))| {
            json!({"messageId": format!("m{n}"), "body": serde_json::to_string(request).unwrap(), "eventSource": "aws:sqs"})
        })
        .collect();
    let batch = json!({"Records": records}).to_string();
    let report = w.sync(&batch).await.unwrap();
    assert_eq!(report.redeploys_triggered, ["acme-web"]);
    assert_eq!(w.vercel.fake.deployments(&w.project), 1);
    // Redelivered: no second deployment.
    w.sync(&batch).await.unwrap();
    assert_eq!(w.vercel.fake.deployments(&w.project), 1);
}

#[tokio::test]
async fn redeploy_requests_travel_through_sqs() {
    let moto = MotoServer::shared().await;
    let sqs = aws_sdk_sqs::Client::new(&moto.sdk_config());
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("redeploy-{}", unique()))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let w = world_with(Some(SqsRedeployQueue {
        client: sqs.clone(),
        queue_url: queue_url.clone(),
    }))
    .await;
    let arn = w
        .create(
            "web/hooked",
            "h1",
            vercel_tags("production", &[key_tag("HOOKED")]),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    let received = sqs
        .receive_message()
        .queue_url(&queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let messages = received.messages();
    assert_eq!(messages.len(), 1);
    let batch = json!({"Records": messages.iter().map(|m| json!({
        "messageId": m.message_id(), "body": m.body(), "eventSource": "aws:sqs"})).collect::<Vec<_>>()});
    let report = w.sync(&batch.to_string()).await.unwrap();
    assert_eq!(report.redeploys_triggered, ["acme-web"]);
    assert_eq!(w.vercel.fake.deployments(&w.project), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn no_value_or_token_reaches_logs_events_or_errors() {
    let (logs, _guard) = LogBuffer::install();
    let w = world().await;
    let value = "pa55-VALUE-never-logged-31415";
    let arn = w
        .create(
            "web/leak-check",
            &format!(r#"{{"password":"{value}","user":"app"}}"#),
            vercel_tags(
                "production development",
                &[("keyward:vercel:map:password", "DB_PASSWORD")],
            ),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    // Failures too: throttled past patience, and a refused element.
    w.put_value(&arn, &format!(r#"{{"password":"{value}-2","user":"app"}}"#))
        .await;
    w.vercel.fake.throttle_next_writes(10, 0);
    let err = w.sync(&api_call("PutSecretValue", &arn)).await.unwrap_err();
    w.vercel.fake.throttle_next_writes(0, 0);
    w.vercel.fake.fail_key_once("DB_PASSWORD", "INVALID_VALUE");
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    let events: Vec<String> = w
        .events()
        .iter()
        .map(|e| e.to_detail_json().unwrap())
        .collect();
    let text = format!("{}\n{}\n{err}\n{err:?}", logs.text(), events.join("\n"));
    assert!(!events.is_empty() && !logs.text().is_empty());
    for secret in [value, TOKEN] {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    assert!(
        w.env("DB_PASSWORD", "production").value.starts_with(value),
        "the value did arrive"
    );
}

#[tokio::test]
async fn a_renamed_mapping_keeps_its_record_even_under_orphans_delete() {
    let w = world().await;
    let arn = w
        .create(
            "web/renamed",
            "r1",
            vercel_tags(
                "production",
                &[key_tag("RENAMED"), ("keyward:vercel:orphans", "delete")],
            ),
        )
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    let id = w.env("RENAMED", "production").id;
    // The same project, now named by its id: the old slot is an orphan, the new one adopts the
    // record by its comment; the orphan pass must not delete what the new slot holds.
    w.retag(&arn, &[], &[("keyward:vercel:project", w.project.as_str())])
        .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    let kept = w.env("RENAMED", "production");
    assert_eq!(kept.id, id, "{:?}", w.envs());
    assert_eq!(kept.value, "r1");
    // And the next sync is in parity, with no write.
    w.vercel.fake.clear_seen();
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert!(w.writes().is_empty(), "{:?}", w.writes());
}

/// Only the declared manifest sends a secret to Vercel. Tags alone (a secret nobody declared, a
/// `TagResource` by someone with write access to one secret), tags that map it differently, or
/// a classification tag that disagrees: refused, reported, and nothing read or written.
#[tokio::test]
async fn tags_alone_never_send_a_secret_to_vercel() {
    let w = world().await;
    let refused = |w: &World<InMemoryRedeployQueue>, why: &str| {
        let events = w.events();
        assert_eq!(events.len(), 1, "{events:?}");
        let EventData::VercelSyncFailed { error, results, .. } = &events[0].data else {
            panic!("{:?}", events[0].data)
        };
        assert!(results.is_empty(), "{results:?}");
        assert!(error.as_str().contains("refused, nothing sent"), "{error}");
        assert!(error.as_str().contains(why), "{error} should say {why}");
        assert!(w.writes().is_empty(), "{:?}", w.writes());
        assert!(w.envs().is_empty(), "{:?}", w.envs());
    };

    // Never declared at all.
    let arn = w
        .create_undeclared(
            "web/undeclared",
            "tag-only-value-1",
            vercel_tags("production", &[key_tag("UNDECLARED")]),
        )
        .await;
    let report = w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    assert_eq!((report.writes, report.failed.len()), (0, 1));
    refused(&w, "the declared manifest does not");

    // Declared without a mapping; a TagResource adds one.
    let plain = vercel_tags("production", &[key_tag("PLAIN")])
        .into_iter()
        .filter(|t| !t.key.starts_with("keyward:vercel:"))
        .collect::<Vec<_>>();
    let arn = w.create("web/plain", "tag-only-value-2", plain).await;
    w.retag_undeclared(
        &arn,
        &[],
        &[
            ("keyward:vercel:project", "acme-web"),
            ("keyward:vercel:team", "team_acme"),
            ("keyward:vercel:targets", "production"),
            ("keyward:vercel:key", "STOLEN"),
        ],
    )
    .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    refused(&w, "the declared manifest does not");

    // Declared for production; the tags add the readable development target.
    let arn = w
        .create(
            "web/widened",
            "tag-only-value-3",
            vercel_tags("production", &[key_tag("WIDENED")]),
        )
        .await;
    w.retag_undeclared(
        &arn,
        &[],
        &[("keyward:vercel:targets", "production development")],
    )
    .await;
    w.sync(&api_call("TagResource", &arn)).await.unwrap();
    refused(&w, "differently from the declared manifest");

    // The manifest says confidential; the tags were relabelled internal.
    let tags = vercel_tags("production", &[key_tag("RELABELLED")]);
    let mut declared = keyward_shared::tags::decode(&tags).unwrap().unwrap();
    declared.classification = keyward_shared::governance::Classification::Confidential;
    w.declared.declare(&w.name("web/relabelled"), declared);
    let arn = w
        .create_undeclared("web/relabelled", "tag-only-value-4", tags)
        .await;
    w.sync(&api_call("PutSecretValue", &arn)).await.unwrap();
    refused(&w, "classification tag differs");

    // And the values never left in any form: not in Vercel, not in an event or the logs.
    assert!(
        !w.vercel.fake.seen().iter().any(|s| s.method != "GET"),
        "{:?}",
        w.vercel.fake.seen()
    );
}
