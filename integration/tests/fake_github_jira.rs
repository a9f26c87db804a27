//! The fake GitHub and Jira APIs over real HTTP: the drift detector's ticketing is tested against
//! them, so their behaviour must be the documented one (see the module docs of
//! `keyward_integration::fakes::github` and `keyward_integration::fakes::jira`).

use keyward_integration::fakes::github::{self, FakeGithub, PullSeed, RunningGithub};
use keyward_integration::fakes::jira::{self, FakeJira, RunningJira};
use keyward_integration::support::Reply;
use reqwest::Method;
use serde_json::{Value, json};

const GH_TOKEN: &str = "ghs_test_token";
const OWNER: &str = "acme";
const REPO: &str = "infra";
const JIRA_EMAIL: &str = "bot@acme.test";
const JIRA_TOKEN: &str = "jira-api-token";

/// What the GitHub tests read from a reply.
trait GithubReply {
    fn links(&self) -> Vec<(String, String)>;
    fn link(&self, rel: &str) -> Option<String>;
    fn numbers(&self) -> Vec<u64>;
}

impl GithubReply for Reply {
    /// The `rel="…"` targets of a GitHub `Link` header.
    fn links(&self) -> Vec<(String, String)> {
        let link = self.header("link");
        link.split(", ")
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (url, rel) = l.split_once("; rel=").expect("link part");
                (
                    rel.trim_matches('"').to_owned(),
                    url.trim_matches(['<', '>']).to_owned(),
                )
            })
            .collect()
    }

    fn link(&self, rel: &str) -> Option<String> {
        self.links()
            .into_iter()
            .find(|(r, _)| r == rel)
            .map(|(_, u)| u)
    }

    fn numbers(&self) -> Vec<u64> {
        self.body
            .as_array()
            .expect("array body")
            .iter()
            .map(|i| i["number"].as_u64().expect("number"))
            .collect()
    }
}

struct Gh {
    running: RunningGithub,
    http: reqwest::Client,
}

impl Gh {
    /// A fake with one repository, acme/infra.
    async fn start() -> Gh {
        let running = FakeGithub::start(GH_TOKEN).await.expect("fake github");
        running.fake.add_repo(OWNER, REPO);
        Gh {
            running,
            http: reqwest::Client::new(),
        }
    }

    fn fake(&self) -> &FakeGithub {
        &self.running.fake
    }

    fn url(&self, path: &str) -> String {
        format!("{}/repos/{OWNER}/{REPO}{path}", self.running.api_url())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_url(method, &self.url(path), body).await
    }

    async fn call_url(&self, method: Method, url: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(GH_TOKEN)
            .header("accept", "application/vnd.github+json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::send(request).await
    }

    async fn create(&self, title: &str, labels: &[&str]) -> Reply {
        let body = json!({"title": title, "body": format!("about {title}"), "labels": labels});
        self.call(Method::POST, "/issues", Some(body)).await
    }

    fn pull_seed(&self, title: &str) -> PullSeed {
        PullSeed {
            title: title.into(),
            body: "rotates the key".into(),
            author: "alice".into(),
            head_sha: "a".repeat(40),
            base_ref: "main".into(),
        }
    }
}

fn is_sha(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|s| s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn github_refuses_bad_credentials_and_always_sends_rate_headers() {
    let gh = Gh::start().await;
    let url = gh.url("/issues");
    let cases = [
        (gh.http.get(&url), 401),
        (gh.http.get(&url).bearer_auth("ghs_wrong"), 401),
        (gh.http.get(&url).basic_auth(GH_TOKEN, None::<&str>), 401),
        (
            gh.http
                .get(&url)
                .header("authorization", format!("token {GH_TOKEN}")),
            200,
        ),
        (gh.http.get(&url).bearer_auth(GH_TOKEN), 200),
    ];
    for (request, status) in cases {
        let reply = Reply::send(request).await;
        assert_eq!(reply.status, status);
        if status == 401 {
            assert_eq!(
                reply.body,
                json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"})
            );
        }
        assert_eq!(reply.header("x-ratelimit-limit"), "5000");
        assert_eq!(reply.header("x-ratelimit-resource"), "core");
        assert_eq!(reply.header("x-github-api-version-selected"), "2022-11-28");
        assert!(reply.header("x-ratelimit-reset").parse::<i64>().unwrap() > 1_700_000_000);
    }
    // Only authenticated calls spend the budget.
    let reply = gh.call(Method::GET, "/issues", None).await;
    assert_eq!(
        (
            reply.header("x-ratelimit-used"),
            reply.header("x-ratelimit-remaining")
        ),
        ("3", "4997")
    );
    let unknown = gh
        .call_url(
            Method::GET,
            &format!("{}/repos/acme/nope/issues", gh.running.api_url()),
            None,
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.body["message"].as_str()),
        (404, Some("Not Found"))
    );
    let statuses: Vec<u16> = gh.fake().seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [401, 401, 401, 200, 200, 200, 404]);
    assert_eq!(gh.fake().seen()[0].path, "/repos/acme/infra/issues");
}

#[tokio::test]
async fn github_issues_are_created_listed_and_filtered_with_pull_requests_among_them() {
    let gh = Gh::start().await;
    let created = gh.create("drift: key A", &["drift", "sev-high"]).await;
    assert_eq!(created.status, 201);
    assert_eq!(
        created.header("location"),
        gh.url("/issues/1"),
        "Location names the new issue"
    );
    assert_eq!(created.body["number"], 1);
    assert_eq!(created.body["state"], "open");
    assert_eq!(created.body["state_reason"], Value::Null);
    assert_eq!(created.body["user"]["login"], github::TOKEN_USER);
    assert_eq!(created.body["labels"][0]["name"], "drift");
    assert_eq!(created.body["labels"][0]["default"], false);
    assert!(created.body.get("pull_request").is_none());
    // An existing label is matched case-insensitively and keeps its first spelling.
    let second = gh.create("drift: key B", &["DRIFT"]).await;
    assert_eq!(second.body["labels"][0]["name"], "drift");
    assert_eq!(
        second.body["labels"][0]["id"],
        created.body["labels"][0]["id"]
    );
    let pull = gh
        .fake()
        .open_pull(OWNER, REPO, gh.pull_seed("rotate key A"));
    assert_eq!(pull, 3, "pull requests share the issue numbers");
    gh.create("unrelated", &[]).await;
    let closed = gh
        .call(Method::PATCH, "/issues/2", Some(json!({"state": "closed"})))
        .await;
    assert_eq!(closed.status, 200);

    let cases: [(&str, &[u64]); 6] = [
        ("", &[4, 3, 1]),
        ("?state=closed", &[2]),
        ("?state=all", &[4, 3, 2, 1]),
        ("?labels=drift", &[1]),
        ("?state=all&labels=Drift", &[2, 1]),
        ("?state=all&labels=drift,sev-high", &[1]),
    ];
    for (query, expected) in cases {
        let reply = gh.call(Method::GET, &format!("/issues{query}"), None).await;
        assert_eq!(reply.status, 200, "{query}");
        assert_eq!(reply.numbers(), expected, "{query}");
        assert!(reply.header("link").is_empty(), "one page: no Link");
    }
    let listed = gh.call(Method::GET, "/issues", None).await;
    let pr = &listed.body[1];
    assert_eq!(pr["number"], 3);
    assert!(
        pr["pull_request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/pulls/3")
    );
    assert_eq!(pr["pull_request"]["merged_at"], Value::Null);
    assert!(listed.body[0].get("pull_request").is_none());
    let one = gh.call(Method::GET, "/issues/3", None).await;
    assert_eq!(
        (one.status, one.body["title"].as_str()),
        (200, Some("rotate key A"))
    );
    assert_eq!(gh.call(Method::GET, "/issues/99", None).await.status, 404);
    let bad_state = gh.call(Method::GET, "/issues?state=merged", None).await;
    assert_eq!(bad_state.status, 422);

    for body in [
        json!({"body": "no title"}),
        json!({"title": "  "}),
        json!({"title": null}),
    ] {
        let refused = gh.call(Method::POST, "/issues", Some(body)).await;
        assert_eq!(refused.status, 422);
        assert_eq!(refused.body["message"], "Validation Failed");
        assert_eq!(
            refused.body["errors"],
            json!([{"resource": "Issue", "code": "missing_field", "field": "title"}])
        );
    }
    let not_json = Reply::send(
        gh.http
            .post(gh.url("/issues"))
            .bearer_auth(GH_TOKEN)
            .body("title=x"),
    )
    .await;
    assert_eq!(
        (not_json.status, not_json.body["message"].as_str()),
        (400, Some("Problems parsing JSON"))
    );
    let stored = gh.fake().issues(OWNER, REPO);
    assert_eq!(
        stored.iter().map(|i| i.number).collect::<Vec<_>>(),
        [1, 2, 4]
    );
    assert_eq!(stored[0].labels, ["drift", "sev-high"]);
    assert_eq!(stored[0].body, "about drift: key A");
}

#[tokio::test]
async fn github_lists_page_by_link_header() {
    let gh = Gh::start().await;
    gh.fake().set_per_page_max(2);
    for n in 1..=5 {
        gh.create(&format!("issue {n}"), &["drift"]).await;
    }
    // per_page above the cap is capped; every page comes from following rel="next" as given.
    let first = gh
        .call(Method::GET, "/issues?labels=drift&per_page=100", None)
        .await;
    assert_eq!(first.numbers(), [5, 4]);
    let rels: Vec<String> = first.links().into_iter().map(|(r, _)| r).collect();
    assert_eq!(rels, ["next", "last"]);
    let next = first.link("next").unwrap();
    assert!(
        next.starts_with(&format!("{}/repositories/", gh.running.api_url())),
        "canonical repository-id URL: {next}"
    );
    assert!(next.contains("labels=drift") && next.ends_with("page=2"));
    assert!(first.link("last").unwrap().ends_with("page=3"));

    let mut numbers = first.numbers();
    let mut url = first.link("next");
    let mut last_reply = None;
    while let Some(next) = url {
        let page = gh.call_url(Method::GET, &next, None).await;
        assert_eq!(page.status, 200);
        numbers.extend(page.numbers());
        url = page.link("next");
        last_reply = Some(page);
    }
    assert_eq!(numbers, [5, 4, 3, 2, 1]);
    let last = last_reply.unwrap();
    let rels: Vec<String> = last.links().into_iter().map(|(r, _)| r).collect();
    assert_eq!(rels, ["prev", "first"]);
    let beyond = gh.call(Method::GET, "/issues?page=9", None).await;
    assert_eq!((beyond.status, beyond.body.clone()), (200, json!([])));
    let small = gh.call(Method::GET, "/issues?per_page=1", None).await;
    assert_eq!(small.numbers(), [5]);
    assert!(small.link("last").unwrap().ends_with("per_page=1&page=5"));
}

#[tokio::test]
async fn github_patch_closes_with_state_reason_and_comments_are_added() {
    let gh = Gh::start().await;
    gh.create("drift: key A", &["drift"]).await;
    // (body, state, state_reason) after each PATCH, in order.
    let steps = [
        (
            json!({"state": "closed", "state_reason": "not_planned"}),
            "closed",
            Some("not_planned"),
        ),
        // "Ignored unless state is changed."
        (
            json!({"state": "closed", "state_reason": "completed"}),
            "closed",
            Some("not_planned"),
        ),
        (json!({"state": "open"}), "open", Some("reopened")),
        (json!({"state": "closed"}), "closed", Some("completed")),
        (
            json!({"title": "drift: key A (renamed)", "labels": ["drift", "resolved"]}),
            "closed",
            Some("completed"),
        ),
    ];
    for (body, state, reason) in steps {
        let reply = gh.call(Method::PATCH, "/issues/1", Some(body)).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["state"], state);
        assert_eq!(reply.body["state_reason"].as_str(), reason);
        assert_eq!(reply.body["closed_at"].is_null(), state == "open");
    }
    for body in [
        json!({"state": "merged"}),
        json!({"state": "closed", "state_reason": "wontfix"}),
        json!({"title": ""}),
    ] {
        let reply = gh.call(Method::PATCH, "/issues/1", Some(body)).await;
        assert_eq!(reply.status, 422);
    }
    assert_eq!(
        gh.call(Method::PATCH, "/issues/7", Some(json!({"state": "closed"})))
            .await
            .status,
        404
    );

    for text in ["rotated by keyward", "verified"] {
        let reply = gh
            .call(
                Method::POST,
                "/issues/1/comments",
                Some(json!({"body": text})),
            )
            .await;
        assert_eq!(reply.status, 201);
        assert_eq!(reply.body["body"], text);
        assert_eq!(reply.body["user"]["login"], github::TOKEN_USER);
        assert!(reply.body["id"].as_u64().is_some());
        assert!(reply.body["created_at"].as_str().unwrap().ends_with('Z'));
        let html = reply.body["html_url"].as_str().unwrap();
        assert!(html.starts_with("https://github.com/acme/infra/issues/1#issuecomment-"));
    }
    for body in [json!({"body": ""}), json!({})] {
        let reply = gh
            .call(Method::POST, "/issues/1/comments", Some(body))
            .await;
        assert_eq!(reply.status, 422);
        assert_eq!(reply.body["errors"][0]["field"], "body");
    }
    let on_unknown = gh
        .call(
            Method::POST,
            "/issues/9/comments",
            Some(json!({"body": "x"})),
        )
        .await;
    assert_eq!(on_unknown.status, 404);
    let listed = gh.call(Method::GET, "/issues/1/comments", None).await;
    let bodies: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["rotated by keyward", "verified"]);
    assert_eq!(
        gh.fake().comments(OWNER, REPO, 1),
        ["rotated by keyward", "verified"]
    );
    let stored = &gh.fake().issues(OWNER, REPO)[0];
    assert_eq!(
        (
            stored.title.as_str(),
            stored.state.as_str(),
            stored.state_reason.as_deref(),
            stored.comments
        ),
        ("drift: key A (renamed)", "closed", Some("completed"), 2)
    );
    assert_eq!(stored.labels, ["drift", "resolved"]);
}

#[tokio::test]
async fn github_pull_request_merge_fields_and_reviews() {
    let gh = Gh::start().await;
    gh.create("an issue first", &[]).await;
    let number = gh.fake().open_pull(OWNER, REPO, gh.pull_seed("rotate"));
    let path = format!("/pulls/{number}");

    let open = gh.call(Method::GET, &path, None).await;
    assert_eq!(open.status, 200);
    assert_eq!(
        (
            &open.body["number"],
            &open.body["state"],
            &open.body["merged"]
        ),
        (&json!(2), &json!("open"), &json!(false))
    );
    assert_eq!(open.body["merged_at"], Value::Null);
    assert_eq!(open.body["merged_by"], Value::Null);
    assert_eq!(open.body["user"]["login"], "alice");
    assert_eq!(open.body["head"]["sha"], "a".repeat(40));
    assert_eq!(open.body["base"]["ref"], "main");
    // Before merging, merge_commit_sha is the test merge commit: not proof of a merge.
    assert!(is_sha(&open.body["merge_commit_sha"]));

    let sha = gh.fake().merge_pull(OWNER, REPO, number, "bob");
    let merged = gh.call(Method::GET, &path, None).await;
    assert_eq!(merged.body["merged"], true);
    assert_eq!(merged.body["state"], "closed");
    assert_eq!(merged.body["merge_commit_sha"], sha);
    assert_ne!(
        open.body["merge_commit_sha"],
        merged.body["merge_commit_sha"]
    );
    assert!(is_sha(&merged.body["merge_commit_sha"]));
    assert_eq!(merged.body["merged_by"]["login"], "bob");
    assert!(merged.body["merged_at"].as_str().unwrap().ends_with('Z'));
    let as_issue = gh
        .call(Method::GET, &format!("/issues/{number}"), None)
        .await;
    assert_eq!(
        as_issue.body["pull_request"]["merged_at"],
        merged.body["merged_at"]
    );
    assert_eq!(as_issue.body["state"], "closed");
    assert_eq!(
        gh.call(Method::GET, "/pulls/1", None).await.status,
        404,
        "a plain issue is no pull request"
    );
    assert_eq!(gh.call(Method::GET, "/pulls/9", None).await.status, 404);

    gh.fake().set_per_page_max(2);
    for (login, state) in [
        ("carol", "COMMENTED"),
        ("dave", "CHANGES_REQUESTED"),
        ("carol", "APPROVED"),
    ] {
        gh.fake().review(OWNER, REPO, number, login, state);
    }
    let first = gh.call(Method::GET, &format!("{path}/reviews"), None).await;
    assert_eq!(first.status, 200);
    let next = first.link("next").expect("a second page");
    let second = gh.call_url(Method::GET, &next, None).await;
    let reviews: Vec<(String, String)> = [first.body, second.body]
        .iter()
        .flat_map(|page| page.as_array().unwrap().clone())
        .map(|r| {
            assert_eq!(r["commit_id"], "a".repeat(40));
            assert_eq!(r["body"], "");
            assert!(r["submitted_at"].is_string());
            (
                r["user"]["login"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reviews,
        [
            ("carol".into(), "COMMENTED".into()),
            ("dave".into(), "CHANGES_REQUESTED".into()),
            ("carol".into(), "APPROVED".into()),
        ]
    );
    assert_eq!(
        gh.call(Method::GET, "/pulls/1/reviews", None).await.status,
        404
    );
}

#[tokio::test]
async fn github_primary_and_secondary_rate_limits() {
    let gh = Gh::start().await;
    gh.create("before", &[]).await;

    gh.fake().throttle_next(1, 30, false);
    let primary = gh.create("throttled", &[]).await;
    assert_eq!(primary.status, 403);
    assert_eq!(
        primary.body["message"],
        "API rate limit exceeded for user ID 1."
    );
    assert!(
        primary.body["documentation_url"]
            .as_str()
            .unwrap()
            .starts_with("https://docs.github.com/")
    );
    assert_eq!(primary.header("x-ratelimit-remaining"), "0");
    let reset: i64 = primary.header("x-ratelimit-reset").parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((now + 28..=now + 31).contains(&reset), "reset {reset}");
    assert!(primary.header("retry-after").is_empty());

    gh.fake().throttle_next(2, 7, true);
    for _ in 0..2 {
        let secondary = gh.call(Method::GET, "/issues", None).await;
        assert_eq!(secondary.status, 429);
        assert_eq!(secondary.header("retry-after"), "7");
        assert!(
            secondary.body["message"]
                .as_str()
                .unwrap()
                .starts_with("You have exceeded a secondary rate limit")
        );
        // The primary budget is not what stopped the call.
        assert_ne!(secondary.header("x-ratelimit-remaining"), "0");
    }
    let after = gh.call(Method::GET, "/issues", None).await;
    assert_eq!(after.status, 200);
    assert_eq!(after.numbers(), [1], "throttled calls wrote nothing");
    let statuses: Vec<u16> = gh.fake().seen().iter().map(|s| s.status).collect();
    assert_eq!(statuses, [201, 403, 429, 429, 200]);
    gh.fake().clear_seen();
    assert!(gh.fake().seen().is_empty());
}

struct Jr {
    running: RunningJira,
    http: reqwest::Client,
}

fn adf(text: &str) -> Value {
    json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": text}]}
    ]})
}

impl Jr {
    /// A fake site with project SEC (and OPS).
    async fn start() -> Jr {
        let running = FakeJira::start(JIRA_EMAIL, JIRA_TOKEN)
            .await
            .expect("fake jira");
        running.fake.add_project("SEC");
        running.fake.add_project("OPS");
        Jr {
            running,
            http: reqwest::Client::new(),
        }
    }

    fn fake(&self) -> &FakeJira {
        &self.running.fake
    }

    fn url(&self, path: &str) -> String {
        format!("{}/rest/api/3{path}", self.running.base_url())
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let mut request = self
            .http
            .request(method, self.url(path))
            .basic_auth(JIRA_EMAIL, Some(JIRA_TOKEN))
            .header("accept", "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::send(request).await
    }

    async fn create(&self, project: &str, summary: &str, labels: &[&str]) -> Reply {
        let body = json!({"fields": {
            "project": {"key": project},
            "summary": summary,
            "issuetype": {"name": "Task"},
            "description": adf(&format!("details of {summary}")),
            "labels": labels,
        }});
        self.call(Method::POST, "/issue", Some(body)).await
    }

    async fn search(&self, body: Value) -> Reply {
        self.call(Method::POST, "/search/jql", Some(body)).await
    }

    /// Every key the JQL matches, following `nextPageToken` with `maxResults` per page; also
    /// returns the number of pages.
    async fn search_all(&self, jql: &str, max_results: u64) -> (Vec<String>, usize) {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut body = json!({"jql": jql, "fields": ["summary", "status", "labels"], "maxResults": max_results});
            if let Some(token) = &token {
                body["nextPageToken"] = json!(token);
            }
            let reply = self.search(body).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert!(
                reply.body.get("total").is_none(),
                "enhanced search has no total"
            );
            pages += 1;
            let issues = reply.body["issues"].as_array().unwrap();
            assert!(issues.len() as u64 <= max_results);
            keys.extend(issues.iter().map(|i| i["key"].as_str().unwrap().to_owned()));
            token = reply.body["nextPageToken"].as_str().map(str::to_owned);
            assert_eq!(reply.body["isLast"], token.is_none());
            if token.is_none() {
                return (keys, pages);
            }
        }
    }
}

#[tokio::test]
async fn jira_refuses_bad_credentials() {
    let jr = Jr::start().await;
    let url = jr.url("/issue/SEC-1");
    let cases = [
        (jr.http.get(&url), 401),
        (jr.http.get(&url).basic_auth(JIRA_EMAIL, Some("wrong")), 401),
        (
            jr.http
                .get(&url)
                .basic_auth("other@acme.test", Some(JIRA_TOKEN)),
            401,
        ),
        (jr.http.get(&url).bearer_auth(JIRA_TOKEN), 401),
        (
            jr.http.get(&url).basic_auth(JIRA_EMAIL, Some(JIRA_TOKEN)),
            404,
        ),
    ];
    for (request, status) in cases {
        let reply = Reply::send(request).await;
        assert_eq!(reply.status, status);
        assert!(!reply.header("x-ratelimit-limit").is_empty());
        if status == 401 {
            assert_eq!(
                reply.body,
                json!({"errorMessages": ["You are not authenticated. Authentication required to perform this operation."], "errors": {}})
            );
        } else {
            assert_eq!(
                reply.body,
                json!({"errorMessages": ["Issue does not exist or you do not have permission to see it."], "errors": {}})
            );
        }
    }
}

#[tokio::test]
async fn jira_creates_gets_and_edits_issues_with_adf() {
    let jr = Jr::start().await;
    let created = jr.create("SEC", "Drift: key A", &["drift", "x"]).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["key"], "SEC-1");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(
        created.body["self"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/rest/api/3/issue/{id}"))
    );

    for path in ["/issue/SEC-1", &format!("/issue/{id}"), "/issue/sec-1"] {
        let got = jr.call(Method::GET, path, None).await;
        assert_eq!(got.status, 200, "{path}");
        let fields = &got.body["fields"];
        assert_eq!(got.body["key"], "SEC-1");
        assert_eq!(fields["summary"], "Drift: key A");
        assert_eq!(fields["status"]["name"], "To Do");
        assert_eq!(fields["status"]["statusCategory"]["key"], "new");
        assert_eq!(fields["labels"], json!(["drift", "x"]));
        assert_eq!(fields["description"], adf("details of Drift: key A"));
    }
    let only = jr
        .call(Method::GET, "/issue/SEC-1?fields=summary", None)
        .await;
    assert_eq!(only.body["fields"], json!({"summary": "Drift: key A"}));

    // (fields, the error key, the message)
    let refused = [
        (
            json!({"project": {"key": "SEC"}, "issuetype": {"name": "Task"}}),
            "summary",
            "You must specify a summary of the issue.",
        ),
        (
            json!({"project": {"key": "NOPE"}, "summary": "s", "issuetype": {"name": "Task"}}),
            "project",
            "valid project is required",
        ),
        (
            json!({"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Task"}, "description": "plain text"}),
            "description",
            "Operation value must be an Atlassian Document (see the Atlassian Document Format)",
        ),
        (
            json!({"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Epicish"}}),
            "issuetype",
            "The issue type selected is invalid.",
        ),
        (
            json!({"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Bug"}, "labels": ["has space"]}),
            "labels",
            "The label 'has space' contains spaces which is invalid.",
        ),
        (
            json!({"project": {"key": "SEC"}, "summary": "s", "issuetype": {"name": "Bug"}, "status": {"name": "Done"}}),
            "status",
            "Field 'status' cannot be set. It is not on the appropriate screen, or unknown.",
        ),
    ];
    for (fields, key, message) in refused {
        let reply = jr
            .call(Method::POST, "/issue", Some(json!({"fields": fields})))
            .await;
        assert_eq!(reply.status, 400, "{key}");
        assert_eq!(reply.body["errorMessages"], json!([]));
        assert_eq!(reply.body["errors"][key], message, "{}", reply.body);
    }
    let bug = jr
        .call(
            Method::POST,
            "/issue",
            Some(json!({"fields": {"project": {"key": "SEC"}, "summary": "no description", "issuetype": {"name": "Bug"}}})),
        )
        .await;
    assert_eq!((bug.status, bug.body["key"].as_str()), (201, Some("SEC-2")));

    let edit = jr
        .call(
            Method::PUT,
            "/issue/SEC-1",
            Some(json!({
                "fields": {"summary": "Drift: key A (still)", "description": adf("line one")},
                "update": {"labels": [{"add": "seen-twice"}, {"remove": "x"}]},
            })),
        )
        .await;
    assert_eq!((edit.status, edit.body.clone()), (204, Value::Null));
    let bad_edit = jr
        .call(
            Method::PUT,
            "/issue/SEC-1",
            Some(json!({"fields": {"description": "plain"}})),
        )
        .await;
    assert_eq!(bad_edit.status, 400);
    assert_eq!(
        jr.call(Method::PUT, "/issue/SEC-9", Some(json!({"fields": {}})))
            .await
            .status,
        404
    );

    let stored = jr.fake().issues();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[0].key, "SEC-1");
    assert_eq!(stored[0].summary, "Drift: key A (still)");
    assert_eq!(stored[0].description_text, "line one");
    assert_eq!(stored[0].labels, ["drift", "seen-twice"]);
    assert_eq!(stored[0].status, "To Do");
    assert_eq!(stored[1].description_text, "");
}

#[tokio::test]
async fn jira_jql_search_pages_by_next_page_token() {
    let jr = Jr::start().await;
    for n in 1..=5 {
        jr.create("SEC", &format!("drift {n}"), &["drift", "x"])
            .await;
    }
    jr.create("SEC", "other secret", &["drift", "y"]).await; // SEC-6
    jr.create("SEC", "no labels", &[]).await; // SEC-7
    jr.create("OPS", "elsewhere", &["drift", "x"]).await; // OPS-1
    jr.fake().set_status("SEC-2", "Done");

    let jql = r#"project = SEC AND labels = "drift" AND labels = "x""#;
    let (keys, pages) = jr.search_all(jql, 2).await;
    assert_eq!(keys, ["SEC-5", "SEC-4", "SEC-3", "SEC-2", "SEC-1"]);
    assert_eq!(pages, 3);
    let cases: [(&str, &[&str]); 4] = [
        (
            r#"project = SEC AND labels = "drift" AND labels = "y""#,
            &["SEC-6"],
        ),
        (r#"project = OPS AND labels = "x""#, &["OPS-1"]),
        (
            "project = sec AND labels = drift AND labels = x",
            &["SEC-5", "SEC-4", "SEC-3", "SEC-2", "SEC-1"],
        ),
        (
            r#"project = SEC AND labels = "drift" AND labels = "z""#,
            &[],
        ),
    ];
    for (jql, expected) in cases {
        let (keys, _) = jr.search_all(jql, 50).await;
        assert_eq!(keys, expected, "{jql}");
    }

    // What keyward sends: the newest match, with its status only.
    let found = jr
        .search(json!({"jql": jql, "fields": ["status"], "maxResults": 1}))
        .await;
    assert_eq!(found.body["issues"][0]["key"], "SEC-5");
    assert_eq!(found.body["issues"][0]["fields"]["status"]["name"], "To Do");
    assert!(found.body["issues"][0]["fields"].get("labels").is_none());
    assert_eq!(found.body["isLast"], false);

    // Without `fields` the enhanced search returns IDs only.
    let ids = jr
        .search(json!({"jql": r#"project = OPS AND labels = "x""#, "maxResults": 10}))
        .await;
    let issue = &ids.body["issues"][0];
    assert!(issue["id"].is_string());
    assert!(issue.get("key").is_none() && issue.get("fields").is_none());
    assert_eq!(ids.body["isLast"], true);
    assert!(ids.body.get("nextPageToken").is_none());
    let with_fields = jr
        .search(json!({"jql": jql, "fields": ["summary", "status"]}))
        .await;
    let done = with_fields.body["issues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == "SEC-2")
        .expect("SEC-2 found");
    assert_eq!(done["fields"]["status"]["statusCategory"]["key"], "done");
    assert!(done["fields"].get("labels").is_none());

    // (body, the start of the first error message)
    let refused = [
        (
            json!({"jql": r#"project = NOPE AND labels = "x""#}),
            "The value 'NOPE' does not exist for the field 'project'.",
        ),
        (
            json!({"jql": jql, "startAt": 0}),
            "Invalid request payload.",
        ),
        (
            json!({"jql": jql, "nextPageToken": "forged"}),
            "Invalid nextPageToken.",
        ),
    ];
    for (body, message) in refused {
        let reply = jr.search(body.clone()).await;
        assert_eq!(reply.status, 400, "{body}");
        let first = reply.body["errorMessages"][0].as_str().unwrap_or("");
        assert!(first.starts_with(message), "{body}: {first}");
    }
    // A page token belongs to its query.
    let page = jr.search(json!({"jql": jql, "maxResults": 1})).await;
    let token = page.body["nextPageToken"].as_str().unwrap();
    let reused = jr
        .search(json!({"jql": r#"project = OPS AND labels = "x""#, "nextPageToken": token}))
        .await;
    assert_eq!(reused.status, 400);
}

#[tokio::test]
async fn jira_refuses_jql_keyward_never_sends_with_jiras_error() {
    let jr = Jr::start().await;
    jr.create("SEC", "drift 1", &["drift", "x"]).await;
    for jql in [
        "project = SEC AND AND labels = x",
        "project = SEC labels = x",
        "summary = \"unterminated",
        "ORDER BY key",
        "frobnicate = 1",
        "summary = drift",
        "project = SEC",
        r#"labels = "drift" AND project = SEC"#,
        "project = SEC AND labels != x ORDER BY key ASC",
        "project = SEC AND labels IS EMPTY",
        "project IN (SEC, OPS) AND labels = y",
        "project = SEC AND NOT labels = drift",
        "text ~ \"keyward\"",
        "",
    ] {
        let reply = jr
            .search(json!({"jql": jql, "fields": ["status"], "maxResults": 1}))
            .await;
        assert_eq!(reply.status, 400, "{jql}");
        assert_eq!(reply.body["errors"], json!({}), "{jql}");
        let messages = reply.body["errorMessages"]
            .as_array()
            .expect("errorMessages");
        assert_eq!(messages.len(), 1, "{jql}");
        let first = messages[0].as_str().unwrap_or("");
        assert!(
            first.starts_with("Error in the JQL Query: "),
            "{jql}: {first}"
        );
    }
}

#[tokio::test]
async fn jira_transitions_change_status_and_comments_are_stored() {
    let jr = Jr::start().await;
    jr.create("SEC", "Drift: key A", &["drift"]).await;
    let ids = |reply: &Reply| -> Vec<String> {
        reply.body["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let listed = jr.call(Method::GET, "/issue/SEC-1/transitions", None).await;
    assert_eq!(listed.status, 200);
    assert_eq!(ids(&listed), ["21", "31"]);
    assert_eq!(listed.body["transitions"][1]["name"], "Done");
    assert_eq!(listed.body["transitions"][1]["to"]["name"], "Done");

    // (transition id, status after, transitions then available)
    let steps = [
        ("21", "In Progress", vec!["11", "31"]),
        ("31", "Done", vec!["11", "21"]),
        ("11", "To Do", vec!["21", "31"]),
    ];
    for (id, status, available) in steps {
        let reply = jr
            .call(
                Method::POST,
                "/issue/SEC-1/transitions",
                Some(json!({"transition": {"id": id}})),
            )
            .await;
        assert_eq!(reply.status, 204, "{id}");
        let got = jr.call(Method::GET, "/issue/SEC-1", None).await;
        assert_eq!(got.body["fields"]["status"]["name"], status);
        assert_eq!(got.body["fields"]["resolution"].is_null(), status != "Done");
        let listed = jr.call(Method::GET, "/issue/SEC-1/transitions", None).await;
        assert_eq!(ids(&listed), available);
    }
    for body in [
        json!({"transition": {"id": "999"}}),
        json!({"transition": {"id": "11"}}),
        json!({}),
    ] {
        let reply = jr
            .call(Method::POST, "/issue/SEC-1/transitions", Some(body.clone()))
            .await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.body["errors"]["transition"].is_string(), "{body}");
    }
    assert_eq!(jr.fake().issues()[0].status, "To Do");
    let unknown = jr
        .call(
            Method::POST,
            "/issue/SEC-9/transitions",
            Some(json!({"transition": {"id": "31"}})),
        )
        .await;
    assert_eq!(unknown.status, 404);

    let two_paragraphs = json!({"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "Rotated "}, {"type": "text", "text": "today", "marks": [{"type": "strong"}]}]},
        {"type": "paragraph", "content": [{"type": "text", "text": "by keyward"}]},
    ]});
    let comment = jr
        .call(
            Method::POST,
            "/issue/SEC-1/comment",
            Some(json!({"body": two_paragraphs})),
        )
        .await;
    assert_eq!(comment.status, 201);
    assert!(comment.body["id"].is_string() && comment.body["created"].is_string());
    assert_eq!(comment.body["body"], two_paragraphs);
    for (body, message) in [
        (
            json!({"body": "plain"}),
            "Operation value must be an Atlassian Document (see the Atlassian Document Format)",
        ),
        (json!({}), "Comment body can not be empty!"),
        (
            json!({"body": {"type": "doc", "version": 1, "content": []}}),
            "Comment body can not be empty!",
        ),
    ] {
        let reply = jr
            .call(Method::POST, "/issue/SEC-1/comment", Some(body))
            .await;
        assert_eq!(reply.status, 400);
        assert_eq!(reply.body["errors"]["comment"], message);
    }
    let listed = jr.call(Method::GET, "/issue/SEC-1/comment", None).await;
    assert_eq!(listed.body["total"], 1);
    assert_eq!(
        jr.fake().issues()[0].comments,
        ["Rotated today\nby keyward"]
    );
}

#[tokio::test]
async fn jira_throttles_with_retry_after_and_answers_unknown_paths() {
    let jr = Jr::start().await;
    jr.fake().throttle_next(1, 5);
    let throttled = jr.create("SEC", "throttled", &[]).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(
        throttled.body,
        json!({"errorMessages": ["Rate limit exceeded."], "errors": {}})
    );
    assert_eq!(throttled.header("retry-after"), "5");
    assert_eq!(throttled.header("x-ratelimit-remaining"), "0");
    assert_eq!(throttled.header("ratelimit-reason"), "jira-quota-based");
    let reset = throttled.header("x-ratelimit-reset");
    assert!(
        chrono::NaiveDateTime::parse_from_str(reset, "%Y-%m-%dT%H:%MZ").is_ok(),
        "ISO 8601 reset: {reset}"
    );
    assert!(!throttled.header("x-ratelimit-limit").is_empty());
    assert!(
        jr.fake().issues().is_empty(),
        "a throttled call writes nothing"
    );
    let after = jr.create("SEC", "after", &[]).await;
    assert_eq!(
        (after.status, after.body["key"].as_str()),
        (201, Some("SEC-1"))
    );

    let unknown = jr.call(Method::GET, "/nothing/here", None).await;
    assert_eq!(unknown.status, 404);
    let wrong_method = jr.call(Method::DELETE, "/search/jql", None).await;
    assert_eq!(wrong_method.status, 405);
    let seen = jr.fake().seen();
    let statuses: Vec<u16> = seen.iter().map(|s| s.status).collect();
    assert_eq!(statuses, [429, 201, 404, 405]);
    assert_eq!(
        seen[0],
        jira::Seen {
            method: "POST".into(),
            path: "/rest/api/3/issue".into(),
            query: String::new(),
            status: 429,
        }
    );
}
