//! The fake Vercel API over real HTTP: the behaviour `vercel-sync` is tested against must be the
//! documented one (see the module doc of `keyward_integration::fakes::vercel`).

use std::collections::HashSet;

use keyward_integration::fakes::vercel::{EnvSeed, FakeVercel, RunningVercel, Seen};
use keyward_integration::support::Reply;
use reqwest::Method;
use serde_json::{Value, json};

const TOKEN: &str = "vercel-test-token";
const TEAM: (&str, &str) = ("team_acme", "acme");

struct Api {
    vercel: RunningVercel,
    http: reqwest::Client,
    project: String,
}

/// Vercel's error code in a reply.
trait VercelReply {
    fn code(&self) -> &str;
}

impl VercelReply for Reply {
    fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    /// A fake with one team project, `web`.
    async fn start() -> Api {
        let vercel = FakeVercel::start(TOKEN).await.expect("fake vercel starts");
        let project = vercel.fake.add_project("web", Some(TEAM));
        Api {
            vercel,
            http: reqwest::Client::new(),
            project,
        }
    }

    fn fake(&self) -> &FakeVercel {
        &self.vercel.fake
    }

    /// `/v10/projects/{project}/env?teamId=team_acme` plus `extra` query.
    fn env_path(&self, extra: &str) -> String {
        format!(
            "/v10/projects/{}/env?teamId={}{extra}",
            self.project, TEAM.0
        )
    }

    fn one_path(&self, id: &str) -> String {
        format!("/v9/projects/{}/env/{id}?teamId={}", self.project, TEAM.0)
    }

    async fn raw(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::send(request).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let url = format!("{}{path}", self.vercel.api_url());
        let mut request = self.http.request(method, url).bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.raw(request).await
    }

    async fn create(&self, upsert: bool, body: Value) -> Reply {
        let extra = if upsert { "&upsert=true" } else { "" };
        self.call(Method::POST, &self.env_path(extra), Some(body))
            .await
    }

    async fn list(&self, extra: &str) -> Reply {
        self.call(Method::GET, &self.env_path(extra), None).await
    }
}

fn var(key: &str, value: &str, r#type: &str, target: &[&str]) -> Value {
    json!({"key": key, "value": value, "type": r#type, "target": target})
}

fn seed(key: &str, value: &str, r#type: &str, target: &[&str]) -> EnvSeed {
    EnvSeed {
        key: key.into(),
        value: value.into(),
        r#type: r#type.into(),
        target: target.iter().map(|t| (*t).into()).collect(),
        git_branch: None,
        custom_environment_ids: Vec::new(),
        comment: None,
        configuration_id: None,
    }
}

fn failed_codes(body: &Value) -> Vec<String> {
    body["failed"]
        .as_array()
        .expect("failed[]")
        .iter()
        .map(|f| f["error"]["code"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn auth_routing_and_headers() {
    let api = Api::start().await;
    let url = format!("{}{}", api.vercel.api_url(), api.env_path(""));
    for request in [
        api.http.get(&url),
        api.http.get(&url).bearer_auth("wrong"),
        api.http
            .get(&url)
            .header("authorization", format!("Token {TOKEN}")),
    ] {
        let reply = api.raw(request).await;
        assert_eq!(reply.status, 403);
        assert_eq!(
            reply.body,
            json!({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": true}})
        );
        for header in [
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
        ] {
            assert!(reply.header_value(header).is_some(), "{header} on a 403");
        }
    }
    let ok = api.list("").await;
    assert_eq!((ok.status, ok.body["envs"].clone()), (200, json!([])));
    assert!(
        ok.header_value("x-ratelimit-reset")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 1_700_000_000
    );

    let unknown = api
        .call(
            Method::GET,
            &format!("/v10/projects/{}/secrets", api.project),
            None,
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(
        unknown.body["error"]["message"],
        "The requested path was not found"
    );
    // Only the versions the reference recommends are served.
    let old = api
        .call(
            Method::GET,
            &format!("/v8/projects/{}/env?teamId=team_acme", api.project),
            None,
        )
        .await;
    assert_eq!(old.status, 404);
    let wrong_method = api.call(Method::PUT, &api.env_path(""), None).await;
    assert_eq!(
        (wrong_method.status, wrong_method.code()),
        (405, "method_unknown")
    );
    let not_json = api
        .raw(
            api.http
                .post(format!("{}{}", api.vercel.api_url(), api.env_path("")))
                .bearer_auth(TOKEN)
                .body("key=A"),
        )
        .await;
    assert_eq!((not_json.status, not_json.code()), (400, "bad_request"));

    let seen = api.fake().seen();
    assert_eq!(seen.len(), 8);
    assert_eq!(
        seen[3],
        Seen {
            method: "GET".into(),
            path: format!("/v10/projects/{}/env", api.project),
            query: "teamId=team_acme".into(),
            status: 200,
            items: 0,
        }
    );
    api.fake().clear_seen();
    assert!(api.fake().seen().is_empty());
}

#[tokio::test]
async fn projects_are_found_only_in_their_scope() {
    let api = Api::start().await;
    let personal = api.fake().add_project("blog", None);
    let id = &api.project;
    let cases = [
        (format!("/v10/projects/{id}/env"), 404),
        (format!("/v10/projects/{id}/env?teamId=team_other"), 404),
        (format!("/v10/projects/{id}/env?slug=other"), 404),
        (format!("/v10/projects/{id}/env?teamId=team_acme"), 200),
        (format!("/v10/projects/{id}/env?slug=acme"), 200),
        ("/v10/projects/web/env?teamId=team_acme".into(), 200),
        ("/v10/projects/nope/env?teamId=team_acme".into(), 404),
        (format!("/v10/projects/{personal}/env"), 200),
        ("/v10/projects/blog/env".into(), 200),
        (
            format!("/v10/projects/{personal}/env?teamId=team_acme"),
            404,
        ),
        (format!("/v9/projects/{id}/custom-environments"), 404),
    ];
    for (path, status) in cases {
        let reply = api.call(Method::GET, &path, None).await;
        assert_eq!(reply.status, status, "{path}");
        if status == 404 {
            assert_eq!(
                reply.body,
                json!({"error": {"code": "not_found", "message": "Project not found"}}),
                "{path}"
            );
        }
    }
}

#[tokio::test]
async fn list_pages_follow_until_newest_first() {
    let api = Api::start().await;
    api.fake().set_page_size(2);
    let ids: Vec<String> = (0..5)
        .map(|i| {
            api.fake()
                .seed_env("web", seed(&format!("K{i}"), "v", "plain", &["production"]))
        })
        .collect();
    let mut listed = Vec::new();
    let mut pages = Vec::new();
    let mut until = String::new();
    loop {
        let reply = api.list(&until).await;
        assert_eq!(reply.status, 200);
        let envs = reply.body["envs"].as_array().unwrap().clone();
        let pagination = &reply.body["pagination"];
        assert_eq!(pagination["count"], envs.len());
        pages.push(envs.len());
        listed.extend(envs.iter().map(|e| e["id"].as_str().unwrap().to_owned()));
        match pagination["next"].as_i64() {
            Some(next) => {
                assert_eq!(envs.last().unwrap()["createdAt"], next);
                until = format!("&until={next}");
            }
            None => break,
        }
    }
    assert_eq!(pages, [2, 2, 1]);
    let newest_first: Vec<String> = ids.into_iter().rev().collect();
    assert_eq!(listed, newest_first, "every record once, newest first");
    assert_eq!(api.list("").await.body["pagination"]["prev"], Value::Null);
}

#[tokio::test]
async fn batch_create_returns_created_without_sensitive_values() {
    let api = Api::start().await;
    let reply = api
        .create(
            false,
            json!([
                var("PLAIN", "hello", "plain", &["development"]),
                var("ENC", "p4ss-enc", "encrypted", &["production", "preview"]),
                {"key": "SENS", "value": "p4ss-sens", "type": "sensitive", "target": ["preview"],
                 "gitBranch": "feat/x", "comment": "managed-by=keyward"},
            ]),
        )
        .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["failed"], json!([]));
    let created = reply.body["created"].as_array().unwrap();
    assert_eq!(created.len(), 3);
    let ids: HashSet<&str> = created.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(created[0]["value"], "hello");
    let ciphertext = created[1]["value"].as_str().unwrap();
    assert!(!ciphertext.is_empty() && !ciphertext.contains("p4ss-enc"));
    let sensitive = created[2].as_object().unwrap();
    assert!(!sensitive.contains_key("value"));
    assert_eq!(sensitive["gitBranch"], "feat/x");
    assert_eq!(sensitive["comment"], "managed-by=keyward");
    assert_eq!(sensitive["decrypted"], false);
    assert_eq!(sensitive["configurationId"], Value::Null);
    assert_eq!(sensitive["updatedBy"], "user_keyward");
    assert!(!created[0].as_object().unwrap().contains_key("gitBranch"));

    let stored = api.fake().envs("web");
    let values: Vec<&str> = stored.iter().map(|e| e.value.as_str()).collect();
    assert_eq!(values, ["hello", "p4ss-enc", "p4ss-sens"]);
    let listed = api.list("").await.body["envs"].to_string();
    assert!(!listed.contains("p4ss"), "list never reveals secret values");
    assert_eq!(api.fake().seen().last().unwrap().items, 0);
    assert_eq!(api.fake().seen()[0].items, 3);

    // `created` is `Env|Env[]`: an object body gets an object back.
    let single = api
        .create(false, var("ONE", "1", "plain", &["production"]))
        .await;
    assert_eq!(single.status, 201);
    assert_eq!(single.body["created"]["key"], "ONE");
    assert_eq!(api.fake().seen().last().unwrap().items, 1);
}

#[tokio::test]
async fn upsert_updates_exact_matches_and_conflicts_otherwise() {
    let api = Api::start().await;
    let first = api
        .create(
            false,
            json!([var("DB_URL", "one", "sensitive", &["production"])]),
        )
        .await;
    let original = first.body["created"][0].clone();

    let plain = api
        .create(
            false,
            json!([var("DB_URL", "two", "sensitive", &["production"])]),
        )
        .await;
    assert_eq!((plain.status, plain.code()), (400, "ENV_CONFLICT"));
    let failure = &plain.body["failed"][0]["error"];
    assert_eq!(failure["envVarId"], original["id"]);
    assert_eq!(failure["key"], "DB_URL");
    assert!(failure["message"].as_str().unwrap().contains("production"));

    let upserted = api
        .create(
            true,
            json!([var("DB_URL", "two", "sensitive", &["production"])]),
        )
        .await;
    assert_eq!(upserted.status, 201);
    let updated = &upserted.body["created"][0];
    assert_eq!(updated["id"], original["id"]);
    assert!(updated["updatedAt"].as_i64() > original["updatedAt"].as_i64());
    assert_eq!(updated["createdAt"], original["createdAt"]);
    let stored = api.fake().envs("web");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].value, "two");

    // Another branch is another record; a partial overlap is a conflict even with upsert.
    let wide = api.fake().seed_env(
        "web",
        seed("API", "a", "encrypted", &["production", "preview"]),
    );
    for target in [&["production"][..], &["preview", "development"]] {
        let reply = api
            .create(true, json!([var("API", "b", "encrypted", target)]))
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (400, "ENV_CONFLICT"),
            "{target:?}"
        );
        assert_eq!(reply.body["failed"][0]["error"]["envVarId"], wide);
    }
    let branch = api
        .create(
            false,
            json!([{"key": "API", "value": "c", "type": "encrypted", "target": ["preview"], "gitBranch": "dev"}]),
        )
        .await;
    assert_eq!(branch.status, 201);
    // Upsert keeps sensitivity too: encrypted → sensitive needs delete + recreate.
    let retype = api
        .create(
            true,
            json!([var("API", "d", "sensitive", &["production", "preview"])]),
        )
        .await;
    assert_eq!((retype.status, retype.code()), (400, "BAD_REQUEST"));
    let api_values: Vec<String> = api
        .fake()
        .envs("web")
        .into_iter()
        .filter(|e| e.key == "API")
        .map(|e| e.value)
        .collect();
    assert_eq!(api_values, ["a", "c"]);
}

#[tokio::test]
async fn validation_failures_carry_documented_codes() {
    let api = Api::start().await;
    let staging = api.fake().add_custom_environment("web", "staging");
    let cases = [
        (
            var("1BAD", "v", "plain", &["production"]),
            "KEY_INVALID_CHARACTERS",
        ),
        (
            var("BAD-KEY", "v", "plain", &["production"]),
            "KEY_INVALID_CHARACTERS",
        ),
        (
            var(&"K".repeat(257), "v", "plain", &["production"]),
            "KEY_INVALID_LENGTH",
        ),
        (
            var("TZ", "v", "plain", &["production"]),
            "RESERVED_ENV_VARIABLE",
        ),
        (
            var("AWS_LAMBDA_FUNCTION_NAME", "v", "plain", &["production"]),
            "RESERVED_ENV_VARIABLE",
        ),
        (
            json!({"key": "NOVALUE", "type": "plain", "target": ["production"]}),
            "MISSING_VALUE",
        ),
        (
            var("BIG", &"x".repeat(64 * 1024 + 1), "plain", &["production"]),
            "VALUE_INVALID_LENGTH",
        ),
        (var("NOTARGET", "v", "plain", &[]), "MISSING_TARGET"),
        (
            var("OLD", "v", "secret", &["production"]),
            "VALUE_INVALID_TYPE",
        ),
        (
            var("ODD", "v", "fancy", &["production"]),
            "VALUE_INVALID_TYPE",
        ),
        (
            var("SYS", "v", "system", &["production"]),
            "SYSTEM_ENV_WITH_VALUE",
        ),
        (
            var("DEV", "v", "sensitive", &["production", "development"]),
            "BAD_REQUEST",
        ),
        (
            json!({"key": "BR", "value": "v", "type": "plain", "target": ["preview", "production"], "gitBranch": "main"}),
            "BAD_REQUEST",
        ),
        (
            json!({"key": "CE", "value": "v", "type": "plain", "customEnvironmentIds": ["env_unknown"]}),
            "BAD_REQUEST",
        ),
    ];
    let (elements, codes): (Vec<Value>, Vec<&str>) = cases.into_iter().unzip();
    let all_bad = api.create(false, json!(elements)).await;
    assert_eq!(all_bad.status, 400, "every element failed");
    assert_eq!(all_bad.code(), codes[0]);
    assert_eq!(failed_codes(&all_bad.body), codes);
    let message = all_bad.body["failed"][11]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(message.contains("Sensitive") && message.contains("development"));
    assert_eq!(all_bad.body["failed"][3]["error"]["key"], "TZ");

    let mut mixed = vec![
        var("AWS_REGION", "eu-west-1", "plain", &["production"]),
        json!({"key": "BR", "value": "v", "type": "plain", "target": ["preview"], "gitBranch": "main"}),
        json!({"key": "CE", "value": "v", "type": "sensitive", "customEnvironmentIds": [staging]}),
    ];
    mixed.extend(elements.into_iter().take(2));
    let reply = api.create(false, json!(mixed)).await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.body["created"].as_array().unwrap().len(), 3);
    assert_eq!(failed_codes(&reply.body), codes[..2]);
    assert_eq!(api.fake().envs("web").len(), 3);
}

#[tokio::test]
async fn integration_and_system_records_are_never_upserted() {
    let api = Api::start().await;
    let mut owned = seed(
        "REDIS_URL",
        "redis://integration",
        "encrypted",
        &["production"],
    );
    owned.configuration_id = Some("icfg_redis".into());
    let owned_id = api.fake().seed_env("web", owned);
    api.fake()
        .seed_env("web", seed("VERCEL_URL", "", "system", &["production"]));
    for key in ["REDIS_URL", "VERCEL_URL"] {
        let reply = api
            .create(
                true,
                json!([var(key, "ours", "encrypted", &["production"])]),
            )
            .await;
        assert_eq!((reply.status, reply.code()), (400, "ENV_CONFLICT"), "{key}");
    }
    let listed = api.list("").await.body["envs"].clone();
    let system = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "VERCEL_URL")
        .unwrap();
    assert_eq!(system["system"], true);
    let stored = api.fake().envs("web");
    assert_eq!(stored[0].id, owned_id);
    assert_eq!(stored[0].value, "redis://integration");
    assert_eq!(stored[0].updated_by, "user_dashboard");
    assert_eq!(stored[1].value, "");
}

#[tokio::test]
async fn throttled_writes_get_429_and_change_nothing() {
    let api = Api::start().await;
    let id = api
        .fake()
        .seed_env("web", seed("KEEP", "v", "plain", &["production"]));
    api.fake().throttle_next_writes(3, 7);
    let writes = [
        (
            Method::POST,
            api.env_path(""),
            Some(json!([var("NEW", "v", "plain", &["production"])])),
        ),
        (
            Method::PATCH,
            api.one_path(&id),
            Some(json!({"value": "changed"})),
        ),
        (Method::DELETE, api.one_path(&id), None),
    ];
    for (method, path, body) in writes {
        // Reads are not writes: they pass and do not use up the throttle.
        assert_eq!(api.list("").await.status, 200);
        let reply = api.call(method.clone(), &path, body).await;
        assert_eq!(reply.status, 429, "{method}");
        assert_eq!(reply.header_value("retry-after"), Some("7"));
        assert_eq!(reply.header_value("x-ratelimit-remaining"), Some("0"));
        assert_eq!(reply.code(), "rate_limited");
        assert_eq!(reply.body["error"]["message"], "Rate limit exceeded");
        let limit = &reply.body["error"]["limit"];
        assert_eq!(limit["remaining"], 0);
        assert_eq!(limit["total"], 120);
        assert!(limit["resetMs"].as_i64().unwrap() / 1000 <= limit["reset"].as_i64().unwrap());
    }
    assert_eq!(api.fake().seen_writes()[0].items, 1);
    let stored = api.fake().envs("web");
    assert_eq!((stored.len(), stored[0].value.as_str()), (1, "v"));

    api.fake().throttle_next_writes(1, 0);
    let zero = api.call(Method::DELETE, &api.one_path(&id), None).await;
    assert_eq!(
        (zero.status, zero.header_value("retry-after")),
        (429, Some("0"))
    );
    let after = api.call(Method::DELETE, &api.one_path(&id), None).await;
    assert_eq!(after.status, 200);
    assert!(api.fake().envs("web").is_empty());
}

#[tokio::test]
async fn fail_key_once_gives_partial_success() {
    let api = Api::start().await;
    api.fake().fail_key_once("B", "ENV_CONFLICT");
    let batch = json!([
        var("A", "1", "encrypted", &["production"]),
        var("B", "2", "encrypted", &["production"]),
        var("C", "3", "encrypted", &["production"]),
    ]);
    let reply = api.create(false, batch).await;
    assert_eq!(reply.status, 201);
    let created: Vec<&str> = reply.body["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(created, ["A", "C"]);
    assert_eq!(failed_codes(&reply.body), ["ENV_CONFLICT"]);
    assert_eq!(reply.body["failed"][0]["error"]["key"], "B");
    let again = api
        .create(false, json!([var("B", "2", "encrypted", &["production"])]))
        .await;
    assert_eq!(again.status, 201, "the failure happens once");
    assert_eq!(api.fake().envs("web").len(), 3);
}

#[tokio::test]
async fn patch_and_delete() {
    let api = Api::start().await;
    let created = api
        .create(
            false,
            json!([var("TOKEN", "old", "encrypted", &["production", "preview"])]),
        )
        .await;
    let record = created.body["created"][0].clone();
    let id = record["id"].as_str().unwrap().to_owned();

    let patched = api
        .call(
            Method::PATCH,
            &api.one_path(&id),
            Some(json!({"value": "new", "target": ["production"], "comment": "keyward"})),
        )
        .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["id"], id.as_str());
    assert_eq!(patched.body["target"], json!(["production"]));
    assert_eq!(patched.body["comment"], "keyward");
    assert!(patched.body["updatedAt"].as_i64() > record["updatedAt"].as_i64());
    assert_ne!(patched.body["value"], "new");
    assert_eq!(api.fake().envs("web")[0].value, "new");

    let refusals = [
        (
            api.one_path(&id),
            json!({"type": "sensitive"}),
            400,
            "bad_request",
        ),
        (
            api.one_path(&id),
            json!({"target": ["development"], "gitBranch": "x"}),
            400,
            "BAD_REQUEST",
        ),
        (
            api.one_path(&id),
            json!({"key": "9X"}),
            400,
            "KEY_INVALID_CHARACTERS",
        ),
        (
            api.one_path("missing"),
            json!({"value": "x"}),
            404,
            "not_found",
        ),
    ];
    for (path, body, status, code) in refusals {
        let reply = api.call(Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}");
    }
    let after_refusals = api.fake().envs("web")[0].clone();
    assert_eq!(after_refusals.r#type, "encrypted");
    assert_eq!(after_refusals.target, ["production"]);

    api.fake().edit_by_hand("web", &id, "by hand");
    let edited = &api.list("").await.body["envs"][0];
    assert_eq!(edited["updatedBy"], "user_dashboard");
    assert!(edited["updatedAt"].as_i64() > patched.body["updatedAt"].as_i64());

    let deleted = api.call(Method::DELETE, &api.one_path(&id), None).await;
    assert_eq!(
        (deleted.status, deleted.body["id"].as_str()),
        (200, Some(id.as_str()))
    );
    assert!(api.fake().envs("web").is_empty());
    let twice = api.call(Method::DELETE, &api.one_path(&id), None).await;
    assert_eq!((twice.status, twice.code()), (404, "not_found"));

    let gone = api
        .fake()
        .seed_env("web", seed("GONE", "v", "plain", &["production"]));
    api.fake().delete_by_hand("web", &gone);
    assert!(api.fake().envs("web").is_empty());
}

#[tokio::test]
async fn custom_environments_and_list_filters() {
    let api = Api::start().await;
    let staging = api.fake().add_custom_environment(&api.project, "staging");
    let reply = api
        .call(
            Method::GET,
            &format!("/v9/projects/web/custom-environments?slug={}", TEAM.1),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["accountLimit"]["total"], 12);
    let environment = &reply.body["environments"][0];
    assert_eq!(environment["id"], staging.as_str());
    assert!(staging.starts_with("env_"));
    assert_eq!(
        (environment["slug"].as_str(), environment["type"].as_str()),
        (Some("staging"), Some("preview"))
    );

    let created = api
        .create(
            false,
            json!([
                {"key": "S", "value": "v", "type": "encrypted", "customEnvironmentIds": [staging]},
                var("S", "v", "encrypted", &["production"]),
                {"key": "S", "value": "v", "type": "encrypted", "target": ["preview"], "gitBranch": "feat"},
            ]),
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.body["created"][0]["customEnvironmentIds"],
        json!([staging])
    );
    assert_eq!(created.body["created"][0]["target"], json!([]));
    let filters = [
        (format!("&customEnvironmentId={staging}"), 1),
        ("&customEnvironmentSlug=staging".to_owned(), 1),
        ("&gitBranch=feat".to_owned(), 1),
        (String::new(), 3),
    ];
    for (filter, count) in filters {
        let reply = api.list(&filter).await;
        assert_eq!(
            reply.body["envs"].as_array().unwrap().len(),
            count,
            "{filter}"
        );
    }
    assert_eq!(api.list("&customEnvironmentSlug=qa").await.status, 404);
}

#[tokio::test]
async fn deploy_hooks_count_deployments() {
    let api = Api::start().await;
    let hook = api.fake().add_deploy_hook("web");
    let prefix = format!(
        "{}/v1/integrations/deploy/{}/",
        api.vercel.api_url(),
        api.project
    );
    assert!(hook.starts_with(&prefix), "{hook}");
    for _ in 0..2 {
        let reply = api.raw(api.http.post(&hook)).await;
        assert_eq!(reply.status, 201, "no auth needed: the URL is the secret");
        assert_eq!(reply.body["job"]["state"], "PENDING");
        assert!(
            reply.body["job"]["id"]
                .as_str()
                .is_some_and(|id| !id.is_empty())
        );
        assert!(reply.body["job"]["createdAt"].as_i64().is_some());
    }
    let unknown = api.raw(api.http.post(format!("{prefix}nope"))).await;
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
    assert_eq!(api.raw(api.http.get(&hook)).await.status, 405);
    assert_eq!(api.fake().deployments("web"), 2);
}
