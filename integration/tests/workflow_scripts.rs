//! The workflows' shell, run as GitHub Actions runs it: `bash infra/github/scripts/<x>.sh` with
//! the environment the workflow gives, GitHub's event payloads (fixtures in
//! `integration/fixtures/github-events/`), a throwaway git repository, the fake GitHub API,
//! moto for the manifest publish, and stand-ins for the tools a runner has that this machine
//! need not (terraform, keyward plan) which record how they were called.
//!
//! Every run is checked for the tokens it was given: none may appear in what a script prints.
//! curl and git are wrapped to record their command lines too, since `ps` shows those to every
//! user of a runner.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use keyward_integration::fakes::github::{FakeGithub, PullSeed, RunningGithub};
use serde_json::{Value, json};

const GITHUB_TOKEN: &str = "ghs_workflowscripttoken0123456789abcdef";
const REQUEST_TOKEN: &str = "github_pat_11REQUESTtoken0123456789";
const ID_REQUEST_TOKEN: &str = "ACTIONSidtokenrequest0123456789";
const OIDC_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXBvOmFjbWUifQ.c2lnbmF0dXJlLXNlY3JldA";
const SECRETS: [&str; 4] = [GITHUB_TOKEN, REQUEST_TOKEN, ID_REQUEST_TOKEN, OIDC_TOKEN];
const OWNER: &str = "acme";
const REPO: &str = "platform";
const MARKER: &str = "<!-- keyward:secret-request-plan -->";
const START: &str = "<!-- keyward:secret-request-plan:start -->";
const END: &str = "<!-- keyward:secret-request-plan:end -->";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn fixture(name: &str) -> Value {
    let path = root().join("integration/fixtures/github-events").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

/// A scratch area: a runner's temp dir, a bin dir put first on PATH (the wrappers and
/// stand-ins), and the log the wrappers append each command line to.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let sandbox = Sandbox {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        for dir in ["bin", "runner", "home"] {
            std::fs::create_dir_all(sandbox.path(dir)).expect("mkdir");
        }
        // curl and git record their arguments, then run the real tool.
        for tool in ["curl", "git"] {
            let real = which(tool);
            sandbox.tool(
                tool,
                &format!(
                    "printf '%s\\n' \"{tool} $*\" >> \"{argv}\"\nexec {real} \"$@\"\n",
                    argv = sandbox.path("argv.log").display(),
                    real = real.display()
                ),
            );
        }
        sandbox
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn work(&self) -> PathBuf {
        self.path("runner/keyward")
    }

    /// An executable `bin/<name>` running `body` under bash.
    fn tool(&self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path("bin").join(name);
        std::fs::write(
            &path,
            format!("#!/usr/bin/env bash\nset -euo pipefail\n{body}"),
        )
        .expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn write_json(&self, rel: &str, value: &Value) -> PathBuf {
        let path = self.path(rel);
        std::fs::write(&path, serde_json::to_vec_pretty(value).expect("json")).expect("write");
        path
    }

    /// The command lines curl and git were run with.
    fn argv_log(&self) -> String {
        std::fs::read_to_string(self.path("argv.log")).unwrap_or_default()
    }

    /// Runs `bash infra/github/scripts/<script> args…` in `cwd` with only `env` (and PATH,
    /// HOME, RUNNER_TEMP): a variable the test leaves out is missing, as in a workflow that
    /// forgot it.
    async fn run(&self, cwd: &Path, script: &str, args: &[&str], env: &[(&str, String)]) -> Run {
        let path = format!(
            "{}:{}",
            self.path("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = tokio::process::Command::new("bash");
        command
            .arg(root().join("infra/github/scripts").join(script))
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.path("home"))
            .env("RUNNER_TEMP", self.path("runner"))
            // git run by the scripts must not read this machine's configuration.
            .env("GIT_CONFIG_NOSYSTEM", "1");
        for (name, value) in env {
            command.env(name, value);
        }
        let output = command.output().await.expect("bash runs");
        let run = Run::from(output);
        for secret in SECRETS {
            assert!(
                !run.stdout.contains(secret) && !run.stderr.contains(secret),
                "{script} printed a token:\n{run:?}"
            );
            assert!(
                !self.argv_log().contains(secret),
                "{script} put a token on a command line:\n{}",
                self.argv_log()
            );
        }
        run
    }
}

fn which(tool: &str) -> PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} is not installed"))
}

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

impl Run {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success: {self:?}");
        self
    }

    /// Failed with an error annotation containing `words`.
    #[track_caller]
    fn failed_with(&self, words: &str) -> &Self {
        assert_ne!(self.code, Some(0), "expected failure: {self:?}");
        assert!(
            self.stderr.contains("::error::") && self.stderr.contains(words),
            "expected an error saying {words:?}: {self:?}"
        );
        self
    }
}

/// Runs git in `dir`, panicking on failure; returns its stdout trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn tfvars(secrets: &[(&str, &str)]) -> Value {
    let secrets: serde_json::Map<String, Value> = secrets
        .iter()
        .map(|(name, description)| {
            (
                (*name).to_owned(),
                json!({"description": description, "rotation_days": 30}),
            )
        })
        .collect();
    json!({"org": "acme", "secrets": secrets})
}

/// A repository whose HEAD changes the Terraform variables of `base` into `head` (per
/// environment; `None` is no file): returns its directory and the base commit.
fn repo_with_change(
    sandbox: &Sandbox,
    base: &[(&str, Option<Value>)],
    head: &[(&str, Option<Value>)],
) -> (PathBuf, String) {
    let dir = sandbox.path("repo");
    std::fs::create_dir_all(dir.join("infra/generated/terraform")).expect("mkdir");
    std::fs::create_dir_all(dir.join("infra/config/manifest")).expect("mkdir");
    std::fs::create_dir_all(dir.join("infra/terraform")).expect("mkdir");
    git(&dir, &["init", "-q", "-b", "main"]);
    let write = |files: &[(&str, Option<Value>)]| {
        for (env, value) in files {
            let path = dir.join(format!("infra/generated/terraform/{env}.tfvars.json"));
            match value {
                Some(v) => std::fs::write(&path, serde_json::to_vec_pretty(v).unwrap()).unwrap(),
                None => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    };
    std::fs::write(dir.join("infra/config/manifest/enums.yaml"), "owners: []\n").unwrap();
    write(base);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "base"]);
    let base_sha = git(&dir, &["rev-parse", "HEAD"]);
    write(head);
    git(&dir, &["add", "-A"]);
    git(&dir, &["commit", "-q", "-m", "the change"]);
    (dir, base_sha)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

fn pull_request_event(sandbox: &Sandbox) -> PathBuf {
    sandbox.write_json(
        "pull_request.json",
        &fixture("pull_request.synchronize.json"),
    )
}

fn push_event(sandbox: &Sandbox, before: &str) -> PathBuf {
    let mut event = fixture("push.main.json");
    event["before"] = json!(before);
    sandbox.write_json("push.json", &event)
}

fn event_env(name: &str, path: &Path, sandbox: &Sandbox) -> Vec<(&'static str, String)> {
    let output = sandbox.path("github_output");
    vec![
        ("GITHUB_EVENT_NAME", name.to_owned()),
        ("GITHUB_EVENT_PATH", path.display().to_string()),
        ("GITHUB_OUTPUT", output.display().to_string()),
    ]
}

/// The usual change: in dev, `b` changed, `d` added, `c` removed, `a` untouched; staging is new;
/// prod is untouched.
fn usual_change(sandbox: &Sandbox) -> (PathBuf, String) {
    repo_with_change(
        sandbox,
        &[
            ("dev", Some(tfvars(&[("a", "A"), ("b", "B"), ("c", "C")]))),
            ("prod", Some(tfvars(&[("x", "X")]))),
        ],
        &[
            ("dev", Some(tfvars(&[("a", "A"), ("b", "B2"), ("d", "D")]))),
            ("prod", Some(tfvars(&[("x", "X")]))),
            ("staging", Some(tfvars(&[("s1", "S")]))),
        ],
    )
}

#[tokio::test]
async fn the_plan_targets_exactly_the_secrets_a_pull_request_adds_or_changes() {
    let sandbox = Sandbox::new();
    let (repo, _) = usual_change(&sandbox);
    let event = pull_request_event(&sandbox);
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["plan"],
            &event_env("pull_request", &event, &sandbox),
        )
        .await
        .ok();
    let work = sandbox.work();
    assert_eq!(lines(&work.join("envs")), ["dev", "staging"]);
    assert_eq!(lines(&work.join("dev.keys")), ["b", "d"]);
    assert_eq!(lines(&work.join("dev.removed")), ["c"]);
    assert_eq!(lines(&work.join("staging.keys")), ["s1"]);
    assert!(!work.join("prod.keys").exists(), "prod did not change");
    assert_eq!(lines(&sandbox.path("github_output")), ["any=true"]);

    let vars = json!({
        "KEYWARD_ROTATION_FUNCTION_ARN_DEV": "arn:aws:lambda:eu-west-1:123456789012:function:rot",
        "KEYWARD_KMS_KEY_ARN_PROD": "arn:aws:kms:eu-west-1:123456789012:key/other-env",
    });
    let run = sandbox
        .run(
            &repo,
            "terraform-args.sh",
            &["dev"],
            &[("VARS_JSON", vars.to_string())],
        )
        .await;
    run.ok();
    let args: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        args,
        [
            "-target=aws_kms_alias.this",
            r#"-target=aws_secretsmanager_secret.this["b"]"#,
            r#"-target=aws_secretsmanager_secret_policy.this["b"]"#,
            r#"-target=aws_secretsmanager_secret_rotation.this["b"]"#,
            r#"-target=aws_secretsmanager_secret.this["d"]"#,
            r#"-target=aws_secretsmanager_secret_policy.this["d"]"#,
            r#"-target=aws_secretsmanager_secret_rotation.this["d"]"#,
            "-var=rotation_lambda_arn=arn:aws:lambda:eu-west-1:123456789012:function:rot",
        ]
    );
}

#[tokio::test]
async fn the_apply_diffs_from_the_pushs_before_and_skips_removed_environments() {
    let sandbox = Sandbox::new();
    let (repo, base) = repo_with_change(
        &sandbox,
        &[
            ("dev", Some(tfvars(&[("a", "A")]))),
            ("qa", Some(tfvars(&[("q", "Q")]))),
        ],
        &[
            ("dev", Some(tfvars(&[("a", "A2"), ("e", "E")]))),
            ("qa", None),
        ],
    );
    // The push's `before` is the commit main pointed at.
    let event = push_event(&sandbox, &base);
    let run = sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["apply"],
            &event_env("push", &event, &sandbox),
        )
        .await;
    run.ok();
    assert!(
        run.stdout
            .contains("::warning::infra/generated/terraform/qa.tfvars.json was deleted"),
        "{run:?}"
    );
    assert_eq!(lines(&sandbox.work().join("envs")), ["dev"]);
    assert_eq!(lines(&sandbox.work().join("dev.keys")), ["a", "e"]);

    // A force push: GitHub's `before` is a commit the clone does not have; the parent is used.
    let event = push_event(&sandbox, "1111111111111111111111111111111111111111");
    let run = sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["apply"],
            &event_env("push", &event, &sandbox),
        )
        .await;
    run.ok();
    assert!(run.stdout.contains(&format!("base: {base}")), "{run:?}");
    assert_eq!(lines(&sandbox.work().join("dev.keys")), ["a", "e"]);
}

#[tokio::test]
async fn changed_secrets_refuses_bad_input_and_leaves_no_lists() {
    let sandbox = Sandbox::new();
    let (repo, _) = usual_change(&sandbox);
    let work = sandbox.work();
    let output = sandbox.path("github_output").display().to_string();

    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["plan"],
            &[("GITHUB_OUTPUT", output.clone())],
        )
        .await
        .failed_with("missing environment variable(s): GITHUB_EVENT_NAME GITHUB_EVENT_PATH");

    let garbled = sandbox.path("garbled.json");
    std::fs::write(&garbled, "{\"pull_request\": {\"number\": 7").unwrap();
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["plan"],
            &event_env("pull_request", &garbled, &sandbox),
        )
        .await
        .failed_with("is not a JSON object");

    let mut event = fixture("push.main.json");
    event.as_object_mut().unwrap().remove("before");
    let no_before = sandbox.write_json("no-before.json", &event);
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["apply"],
            &event_env("push", &no_before, &sandbox),
        )
        .await
        .failed_with("no 40-hex `before`");

    let event = pull_request_event(&sandbox);
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["apply"],
            &event_env("pull_request", &event, &sandbox),
        )
        .await
        .failed_with("apply runs on push");

    // A tfvars file that is not an object of secrets stops the run before anything is listed.
    std::fs::write(
        repo.join("infra/generated/terraform/dev.tfvars.json"),
        "[1, 2]",
    )
    .unwrap();
    git(&repo, &["commit", "-q", "-am", "broken"]);
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["plan"],
            &event_env("pull_request", &event, &sandbox),
        )
        .await
        .failed_with("is not a tfvars object");

    assert!(!work.join("envs").exists(), "no list after a failed run");
    assert!(
        std::fs::read_to_string(&output)
            .unwrap_or_default()
            .is_empty(),
        "no step output after a failed run"
    );
}

/// terraform as a stand-in: each call's arguments logged, `plan` answers with a plan and exit
/// 2 (changes) or TF_FAIL_ENV's environment fails.
fn fake_terraform(sandbox: &Sandbox) {
    let log = sandbox.path("terraform.log");
    sandbox.tool(
        "terraform",
        &format!(
            r#"printf '%s\n' "$*" >> "{log}"
case "$1" in
  plan|apply)
    if [ -n "${{TF_FAIL_ENV:-}}" ] && [[ "$*" == *"/$TF_FAIL_ENV.tfvars.json"* ]]; then
      echo "Error: AccessDenied for $TF_FAIL_ENV" >&2; exit 1
    fi
    if [ "$1" = plan ]; then echo "Plan: 6 to add, 0 to change, 0 to destroy."; exit 2; fi ;;
esac
"#,
            log = log.display()
        ),
    );
    sandbox.tool(
        "keyward",
        "[ \"$1 $2\" = 'plan --env' ] || exit 64\nprintf '**keyward plan** (%s): 1 secret missing\\n' \"$3\"\nexit 2\n",
    );
}

#[tokio::test]
async fn plan_and_apply_run_terraform_at_the_listed_secrets_and_report_each_environment() {
    let sandbox = Sandbox::new();
    let (repo, _) = usual_change(&sandbox);
    fake_terraform(&sandbox);
    let event = pull_request_event(&sandbox);
    sandbox
        .run(
            &repo,
            "changed-secrets.sh",
            &["plan"],
            &event_env("pull_request", &event, &sandbox),
        )
        .await
        .ok();
    let summary = sandbox.path("summary.md");
    let env = |extra: &[(&'static str, String)]| {
        let mut env = vec![
            ("STATE_BUCKET", "acme-tf-state".to_owned()),
            ("STATE_REGION", "eu-west-1".to_owned()),
            (
                "HEAD_SHA",
                "a5b7e2c0f1d34c8b9e6f7a8b9c0d1e2f3a4b5c6d".to_owned(),
            ),
            ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
            ("VARS_JSON", "{}".to_owned()),
        ];
        env.extend_from_slice(extra);
        env
    };
    sandbox.run(&repo, "plan.sh", &[], &env(&[])).await.ok();
    let comment = std::fs::read_to_string(sandbox.work().join("comment.md")).unwrap();
    assert!(comment.starts_with(MARKER), "{comment}");
    assert!(comment.contains("head a5b7e2c0f1d3)"), "{comment}");
    for expected in [
        "### `dev`",
        "- `b`\n- `d`",
        "- `c`",
        "### `staging`",
        "- `s1`",
        "Plan: 6 to add",
        "**keyward plan** (dev): 1 secret missing",
    ] {
        assert!(
            comment.contains(expected),
            "{expected:?} missing from\n{comment}"
        );
    }
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains("### `staging`")
    );
    let calls = std::fs::read_to_string(sandbox.path("terraform.log")).unwrap();
    let plan_dev = calls
        .lines()
        .find(|l| l.starts_with("plan ") && l.contains("/dev.tfvars.json"))
        .expect("a dev plan");
    assert!(
        plan_dev.contains("-lock=false -detailed-exitcode"),
        "{plan_dev}"
    );
    assert!(
        plan_dev.contains(r#"-target=aws_secretsmanager_secret.this["d"]"#),
        "{plan_dev}"
    );
    assert!(
        !plan_dev.contains(r#"this["a"]"#) && !plan_dev.contains(r#"this["c"]"#),
        "{plan_dev}"
    );
    assert!(
        calls.contains("-backend-config=key=keyward/acme/staging/secrets.tfstate"),
        "{calls}"
    );

    // A failing plan fails the step and says so in the comment, which is still written.
    let run = sandbox
        .run(
            &repo,
            "plan.sh",
            &[],
            &env(&[("TF_FAIL_ENV", "staging".to_owned())]),
        )
        .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    let comment = std::fs::read_to_string(sandbox.work().join("comment.md")).unwrap();
    assert!(
        comment.contains("**terraform plan failed** (exit 1)"),
        "{comment}"
    );
    assert!(comment.contains("AccessDenied for staging"), "{comment}");

    // Apply: every listed environment applied with the same targets; a failure is named.
    std::fs::remove_file(sandbox.path("terraform.log")).unwrap();
    sandbox.run(&repo, "apply.sh", &[], &env(&[])).await.ok();
    let calls = std::fs::read_to_string(sandbox.path("terraform.log")).unwrap();
    let applies: Vec<&str> = calls.lines().filter(|l| l.starts_with("apply ")).collect();
    assert_eq!(applies.len(), 2, "{calls}");
    assert!(applies[0].contains("-auto-approve") && applies[0].contains(r#"this["b"]"#));
    assert!(calls.contains("-backend-config=use_lockfile=true"));
    sandbox
        .run(
            &repo,
            "apply.sh",
            &[],
            &env(&[("TF_FAIL_ENV", "dev".to_owned())]),
        )
        .await
        .failed_with("failed environments: dev");
    sandbox
        .run(&repo, "plan.sh", &[], &[("STATE_BUCKET", "b".to_owned())])
        .await
        .failed_with("STATE_REGION HEAD_SHA GITHUB_STEP_SUMMARY");
}

async fn github() -> RunningGithub {
    let github = FakeGithub::start(GITHUB_TOKEN).await.expect("fake github");
    github.fake.add_repo(OWNER, REPO);
    github
}

fn plan_file(sandbox: &Sandbox, text: &str) -> PathBuf {
    let path = sandbox.path("comment.md");
    std::fs::write(
        &path,
        format!("{MARKER}\n## Secret request plan\n\n{text}\n"),
    )
    .unwrap();
    path
}

fn post_env(github: &RunningGithub, pull: u64, plan: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("GH_TOKEN", GITHUB_TOKEN.to_owned()),
        ("REPO", format!("{OWNER}/{REPO}")),
        ("PR", pull.to_string()),
        ("PLAN_FILE", plan.display().to_string()),
        ("GITHUB_API_URL", github.api_url()),
    ]
}

#[tokio::test]
async fn the_plan_is_one_comment_and_one_description_section_whatever_the_pushes() {
    let sandbox = Sandbox::new();
    let github = github().await;
    // Few per page, so keyward's comment is found on a later page through the Link header.
    github.fake.set_per_page_max(2);
    let pull = github.fake.open_pull(
        OWNER,
        REPO,
        PullSeed {
            title: "Request secret payments/stripe-key".into(),
            body: "Why: the checkout needs Stripe.".into(),
            author: "octocat".into(),
            head_sha: "a5b7e2c0f1d34c8b9e6f7a8b9c0d1e2f3a4b5c6d".into(),
            base_ref: "main".into(),
        },
    );
    let http = reqwest::Client::new();
    for n in 0..3 {
        let status = http
            .post(format!(
                "{}/repos/{OWNER}/{REPO}/issues/{pull}/comments",
                github.api_url()
            ))
            .bearer_auth(GITHUB_TOKEN)
            .json(&json!({"body": format!("review note {n}")}))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 201);
    }

    let first = plan_file(&sandbox, "first push: Plan: 3 to add");
    let run = sandbox
        .run(
            &root(),
            "post-plan.sh",
            &[],
            &post_env(&github, pull, &first),
        )
        .await;
    run.ok();
    assert!(run.stdout.contains("posted the plan comment"), "{run:?}");
    for n in 3..6 {
        http.post(format!(
            "{}/repos/{OWNER}/{REPO}/issues/{pull}/comments",
            github.api_url()
        ))
        .bearer_auth(GITHUB_TOKEN)
        .json(&json!({"body": format!("review note {n}")}))
        .send()
        .await
        .unwrap();
    }
    let second = plan_file(&sandbox, "second push: Plan: 6 to add");
    let run = sandbox
        .run(
            &root(),
            "post-plan.sh",
            &[],
            &post_env(&github, pull, &second),
        )
        .await;
    run.ok();
    assert!(run.stdout.contains("updated the plan comment"), "{run:?}");

    let comments = github.fake.comments(OWNER, REPO, pull);
    let ours: Vec<&String> = comments.iter().filter(|c| c.starts_with(MARKER)).collect();
    assert_eq!(ours.len(), 1, "{comments:#?}");
    assert!(ours[0].contains("second push") && !ours[0].contains("first push"));
    assert_eq!(
        comments.len(),
        7,
        "the review notes are untouched: {comments:#?}"
    );
    // Edited in place: keyward's comment stays where it was first posted.
    assert!(comments[3].starts_with(MARKER), "{comments:#?}");

    let description = github.fake.pull_body(OWNER, REPO, pull).unwrap();
    assert!(
        description.starts_with("Why: the checkout needs Stripe."),
        "{description}"
    );
    assert_eq!(description.matches(START).count(), 1, "{description}");
    assert_eq!(description.matches(END).count(), 1, "{description}");
    assert!(
        description.contains("second push: Plan: 6 to add"),
        "{description}"
    );
    assert!(!description.contains("first push"), "{description}");
    assert!(!description.contains(MARKER), "{description}");
    let seen = github.fake.seen();
    let patches = seen
        .iter()
        .filter(|s| s.method == "PATCH" && s.path == format!("/repos/{OWNER}/{REPO}/pulls/{pull}"))
        .count();
    assert_eq!(patches, 2, "one description update per run");
}

#[tokio::test]
async fn post_plan_refusals_are_reported_and_change_nothing() {
    let sandbox = Sandbox::new();
    let github = github().await;
    let plan = plan_file(&sandbox, "Plan: 1 to add");
    let issue = github
        .fake
        .open_issue(OWNER, REPO, "octocat", "an issue", "", &[]);

    // An issue is not a pull request: GitHub's 404, and no comment is left on the issue.
    sandbox
        .run(
            &root(),
            "post-plan.sh",
            &[],
            &post_env(&github, issue, &plan),
        )
        .await
        .failed_with("HTTP 404 to GET repos/acme/platform/pulls/1: Not Found");
    assert!(github.fake.comments(OWNER, REPO, issue).is_empty());

    // A description GitHub refuses (over its 65,536 characters with the plan): 422, and neither
    // the description nor the comments changed.
    let long = "x".repeat(66_000);
    let pull = github.fake.open_pull(
        OWNER,
        REPO,
        PullSeed {
            title: "long".into(),
            body: long.clone(),
            author: "octocat".into(),
            head_sha: "b".repeat(40),
            base_ref: "main".into(),
        },
    );
    sandbox
        .run(
            &root(),
            "post-plan.sh",
            &[],
            &post_env(&github, pull, &plan),
        )
        .await
        .failed_with(
            "HTTP 422 to PATCH repos/acme/platform/pulls/2: Validation Failed; body is too long",
        );
    assert_eq!(github.fake.pull_body(OWNER, REPO, pull).unwrap(), long);
    assert!(github.fake.comments(OWNER, REPO, pull).is_empty());

    // A wrong token: 401 Bad credentials, named without the token.
    let mut env = post_env(&github, pull, &plan);
    env[0].1 = format!("{GITHUB_TOKEN}-revoked");
    sandbox
        .run(&root(), "post-plan.sh", &[], &env)
        .await
        .failed_with("HTTP 401 to GET");

    let mut env = post_env(&github, pull, &plan);
    env.retain(|(k, _)| *k != "GH_TOKEN" && *k != "PR");
    sandbox
        .run(&root(), "post-plan.sh", &[], &env)
        .await
        .failed_with("missing environment variable(s): GH_TOKEN PR");
    let not_ours = sandbox.path("other.md");
    std::fs::write(&not_ours, "hello").unwrap();
    sandbox
        .run(
            &root(),
            "post-plan.sh",
            &[],
            &post_env(&github, pull, &not_ours),
        )
        .await
        .failed_with("does not start with");
}

/// A clone of acme/platform whose origin is a bare repository under `<sandbox>/server`, which
/// plays GITHUB_SERVER_URL (file://).
fn clone_for_request(sandbox: &Sandbox) -> PathBuf {
    let server = sandbox.path("server");
    let bare = server.join(format!("{OWNER}/{REPO}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "-q", "--bare", "-b", "main"]);
    let seed = sandbox.path("seed");
    std::fs::create_dir_all(seed.join("infra/config/manifest")).unwrap();
    std::fs::create_dir_all(seed.join("infra/generated/terraform")).unwrap();
    git(&seed, &["init", "-q", "-b", "main"]);
    std::fs::write(
        seed.join("infra/config/manifest/enums.yaml"),
        "owners: []\n",
    )
    .unwrap();
    git(&seed, &["add", "-A"]);
    git(&seed, &["commit", "-q", "-m", "seed"]);
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let clone = sandbox.path("clone");
    git(
        &sandbox.path(""),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    // git keeps no empty directories; `keyward render` would create this one.
    std::fs::create_dir_all(clone.join("infra/generated/terraform")).unwrap();
    clone
}

fn request_env(sandbox: &Sandbox, github: &RunningGithub) -> Vec<(&'static str, String)> {
    vec![
        ("GH_TOKEN", REQUEST_TOKEN.to_owned()),
        ("SERVICE", "payments".to_owned()),
        ("NAME", "stripe-key".to_owned()),
        ("GITHUB_REPOSITORY", format!("{OWNER}/{REPO}")),
        ("GITHUB_ACTOR", "octocat".to_owned()),
        ("GITHUB_REF_NAME", "main".to_owned()),
        (
            "GITHUB_SERVER_URL",
            format!("file://{}", sandbox.path("server").display()),
        ),
        ("GITHUB_API_URL", github.api_url()),
    ]
}

#[tokio::test]
async fn a_request_is_pushed_and_opened_and_its_description_takes_the_plan() {
    let sandbox = Sandbox::new();
    let github = FakeGithub::start(REQUEST_TOKEN).await.expect("fake github");
    github.fake.add_repo(OWNER, REPO);
    let clone = clone_for_request(&sandbox);
    std::fs::write(
        clone.join("infra/config/manifest/request-payments-stripe-key.yaml"),
        "secrets: []\n",
    )
    .unwrap();
    std::fs::write(
        clone.join("infra/generated/terraform/dev.tfvars.json"),
        "{}\n",
    )
    .unwrap();

    let run = sandbox
        .run(
            &clone,
            "open-request-pr.sh",
            &[],
            &request_env(&sandbox, &github),
        )
        .await;
    run.ok();
    let bare = sandbox.path("server").join(format!("{OWNER}/{REPO}.git"));
    let files = git(
        &bare,
        &[
            "show",
            "--name-only",
            "--format=%s",
            "secret-request/payments-stripe-key",
        ],
    );
    assert_eq!(
        files
            .lines()
            .filter(|l| !l.is_empty())
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([
            "Request secret payments/stripe-key",
            "infra/config/manifest/request-payments-stripe-key.yaml",
            "infra/generated/terraform/dev.tfvars.json",
        ])
    );
    let pulls = github.fake.pulls(OWNER, REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let (number, title, head, base, state) = &pulls[0];
    assert_eq!(
        (title.as_str(), head.as_str(), base.as_str(), state.as_str()),
        (
            "Request secret payments/stripe-key",
            "secret-request/payments-stripe-key",
            "main",
            "open"
        )
    );
    let config = std::fs::read_to_string(clone.join(".git/config")).unwrap();
    assert!(
        !config.contains(REQUEST_TOKEN) && !config.contains("extraheader"),
        "{config}"
    );
    let opened = github.fake.pull_body(OWNER, REPO, *number).unwrap();
    assert!(
        opened.starts_with("Requested by @octocat") && opened.contains(START),
        "{opened}"
    );

    // The plan workflow's run on it replaces the placeholder section.
    let plan = plan_file(&sandbox, "Plan: 3 to add");
    let mut env = post_env(&github, *number, &plan);
    env[0].1 = REQUEST_TOKEN.to_owned();
    sandbox.run(&root(), "post-plan.sh", &[], &env).await.ok();
    let description = github.fake.pull_body(OWNER, REPO, *number).unwrap();
    assert!(
        description.starts_with("Requested by @octocat"),
        "{description}"
    );
    assert!(description.contains("Plan: 3 to add"), "{description}");
    assert!(!description.contains("appears here"), "{description}");
    assert_eq!(description.matches(START).count(), 1, "{description}");

    // The same request again: the branch exists, so nothing is pushed or opened.
    git(&clone, &["checkout", "-q", "main"]);
    std::fs::create_dir_all(clone.join("infra/generated/terraform")).unwrap();
    std::fs::write(
        clone.join("infra/generated/terraform/dev.tfvars.json"),
        "{\"x\":1}\n",
    )
    .unwrap();
    sandbox
        .run(
            &clone,
            "open-request-pr.sh",
            &[],
            &request_env(&sandbox, &github),
        )
        .await
        .failed_with("branch secret-request/payments-stripe-key exists already");
    assert_eq!(github.fake.pulls(OWNER, REPO).len(), 1);
}

#[tokio::test]
async fn a_request_github_refuses_fails_with_githubs_reason() {
    let sandbox = Sandbox::new();
    let github = FakeGithub::start(REQUEST_TOKEN).await.expect("fake github");
    github.fake.add_repo(OWNER, REPO);
    // An open pull request for the same head (its branch deleted and pushed again by hand).
    let status = reqwest::Client::new()
        .post(format!("{}/repos/{OWNER}/{REPO}/pulls", github.api_url()))
        .bearer_auth(REQUEST_TOKEN)
        .json(
            &json!({"title": "old", "head": "secret-request/payments-stripe-key", "base": "main"}),
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 201);
    let clone = clone_for_request(&sandbox);
    std::fs::write(
        clone.join("infra/generated/terraform/dev.tfvars.json"),
        "{}\n",
    )
    .unwrap();
    sandbox
        .run(&clone, "open-request-pr.sh", &[], &request_env(&sandbox, &github))
        .await
        .failed_with("HTTP 422 to POST repos/acme/platform/pulls: Validation Failed; A pull request already exists for acme:secret-request/payments-stripe-key.");
    assert_eq!(github.fake.pulls(OWNER, REPO).len(), 1);

    let mut env = request_env(&sandbox, &github);
    env.retain(|(k, _)| *k != "GH_TOKEN");
    sandbox
        .run(&clone, "open-request-pr.sh", &[], &env)
        .await
        .failed_with("set the KEYWARD_REQUEST_TOKEN secret");
    let mut env = request_env(&sandbox, &github);
    env[2].1 = "Stripe Key; rm -rf /".to_owned();
    sandbox
        .run(&clone, "open-request-pr.sh", &[], &env)
        .await
        .failed_with("is not a service or secret name");
}

/// The runner's OIDC token endpoint and keyward's gateway, as the scripts see them: the token
/// endpoint checks the request token and the audience; the gateway checks the OIDC token and
/// answers each route with what the test set.
mod gateway {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};
    use keyward_integration::fakes::{FakeServer, serve};
    use serde_json::{Value, json};

    #[derive(Default)]
    pub struct Script {
        pub answer: Option<(u16, Value)>,
        pub requests: Vec<Value>,
    }

    #[derive(Clone)]
    pub struct Stub {
        pub script: Arc<Mutex<Script>>,
    }

    fn bearer(headers: &HeaderMap) -> String {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned()
    }

    pub async fn start(audience: &'static str) -> (Stub, FakeServer) {
        let stub = Stub {
            script: Arc::default(),
        };
        let token =
            move |headers: HeaderMap,
                  Query(q): Query<std::collections::HashMap<String, String>>| async move {
                if bearer(&headers) != super::ID_REQUEST_TOKEN {
                    return (
                        StatusCode::UNAUTHORIZED,
                        axum::Json(json!({"message": "bad"})),
                    );
                }
                if q.get("audience").map(String::as_str) != Some(audience) {
                    return (
                        StatusCode::BAD_REQUEST,
                        axum::Json(json!({"message": "audience"})),
                    );
                }
                (
                    StatusCode::OK,
                    axum::Json(json!({"count": 1, "value": super::OIDC_TOKEN})),
                )
            };
        let route = |State(stub): State<Stub>, headers: HeaderMap, body: String| async move {
            if bearer(&headers) != super::OIDC_TOKEN {
                let e = json!({"error": {"code": "invalid_token", "message": "bad token"}});
                return (StatusCode::UNAUTHORIZED, axum::Json(e));
            }
            let mut script = stub.script.lock().unwrap();
            script
                .requests
                .push(serde_json::from_str(&body).unwrap_or(Value::Null));
            let (status, body) = script.answer.clone().expect("an answer set");
            (StatusCode::from_u16(status).unwrap(), axum::Json(body))
        };
        let router = Router::new()
            .route("/token", get(token))
            .route("/v1/drift/pre-merge", post(route))
            .route("/v1/drift/post-merge", post(route))
            .with_state(stub.clone());
        let server = serve(router).await.expect("stub gateway");
        (stub, server)
    }
}

fn drift_env(server: &keyward_integration::fakes::FakeServer) -> Vec<(&'static str, String)> {
    vec![
        ("GATEWAY_URL", format!("{}/", server.base_url())),
        ("AUDIENCE", "keyward-ci".to_owned()),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            format!("{}/token?api-version=2.0", server.base_url()),
        ),
        (
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            ID_REQUEST_TOKEN.to_owned(),
        ),
    ]
}

#[tokio::test]
async fn the_drift_guard_passes_or_fails_with_the_gateways_reasons() {
    let sandbox = Sandbox::new();
    let (stub, server) = gateway::start("keyward-ci").await;
    let mut env = drift_env(&server);
    let event = pull_request_event(&sandbox);
    env.push(("GITHUB_EVENT_PATH", event.display().to_string()));

    stub.script.lock().unwrap().answer = Some((
        200,
        json!({"passed": true, "approvals": ["alice"], "reasons": []}),
    ));
    let run = sandbox.run(&root(), "drift-guard.sh", &[], &env).await;
    run.ok();
    assert!(
        run.stdout
            .contains("the drift fix #7 may merge (1 approvals)"),
        "{run:?}"
    );
    assert_eq!(
        stub.script.lock().unwrap().requests,
        [json!({"pull_number": 7})]
    );

    stub.script.lock().unwrap().answer = Some((
        422,
        json!({"passed": false, "reasons": ["Drift Issue is missing", "1 approval of 2"]}),
    ));
    let run = sandbox.run(&root(), "drift-guard.sh", &[], &env).await;
    assert_eq!(run.code, Some(1));
    assert!(
        run.stdout.contains("::error::Drift Issue is missing")
            && run.stdout.contains("::error::1 approval of 2"),
        "{run:?}"
    );

    stub.script.lock().unwrap().answer = Some((
        503,
        json!({"error": {"code": "drift_unavailable", "message": "GitHub unreadable"}}),
    ));
    sandbox
        .run(&root(), "drift-guard.sh", &[], &env)
        .await
        .failed_with("HTTP 503): drift_unavailable: GitHub unreadable");

    let push = push_event(&sandbox, &"0".repeat(40));
    let mut on_push = drift_env(&server);
    on_push.push(("GITHUB_EVENT_PATH", push.display().to_string()));
    sandbox
        .run(&root(), "drift-guard.sh", &[], &on_push)
        .await
        .failed_with("no pull_request.number");
    let mut no_oidc = env.clone();
    no_oidc.retain(|(k, _)| *k != "ACTIONS_ID_TOKEN_REQUEST_TOKEN");
    sandbox
        .run(&root(), "drift-guard.sh", &[], &no_oidc)
        .await
        .failed_with("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
}

fn audit_record(verification: &str) -> Value {
    json!({
        "pull_request": 42,
        "drift_issue": "#17",
        "change_request_id": "CHG-1234",
        "jira_key": "OPS-9",
        "environment": "prod",
        "cloud_provider": "aws",
        "actor": "acme/platform/.github/workflows/drift-verify.yml@refs/heads/main@9876543210",
        "merge_commit": "a5b7e2c0f1d34c8b9e6f7a8b9c0d1e2f3a4b5c6d",
        "verification": verification,
        "event_id": "0192f0c4-7a1e-7c3b-9a44-3d1f0e6b2a10",
        "audit_record_key": "events/2026/12/04/0192f0c4-7a1e-7c3b-9a44-3d1f0e6b2a10.json",
        "detail_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    })
}

#[tokio::test]
async fn the_drift_verification_keeps_the_whole_audit_record_or_none() {
    let sandbox = Sandbox::new();
    let (stub, server) = gateway::start("keyward-ci").await;
    let mut env = drift_env(&server);
    let artifacts = sandbox.path("artifacts");
    env.push(("ARTIFACTS_DIR", artifacts.display().to_string()));
    let artifact = artifacts.join("drift-audit-pr-42.json");
    let read = |path: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(path).expect("artifact")).expect("JSON")
    };

    let record = audit_record("verified");
    stub.script.lock().unwrap().answer =
        Some((200, json!({"verdict": "verified", "audit": record})));
    let run = sandbox.run(&root(), "drift-verify.sh", &[], &env).await;
    run.ok();
    assert_eq!(
        read(&artifact),
        record,
        "every field, as the gateway recorded it"
    );
    // On a push, the pull request is the gateway's to find: no number is sent.
    assert_eq!(stub.script.lock().unwrap().requests, [json!({})]);

    // Still detected: the record is kept all the same, and the job fails naming what remains.
    std::fs::remove_dir_all(&artifacts).unwrap();
    let record = audit_record("still-detected");
    stub.script.lock().unwrap().answer = Some((
        409,
        json!({"verdict": "still_detected", "remaining": ["policy-mismatch"], "audit": record}),
    ));
    let mut with_number = env.clone();
    with_number.push(("PULL_NUMBER", "42".to_owned()));
    let run = sandbox
        .run(&root(), "drift-verify.sh", &[], &with_number)
        .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(
        run.stdout
            .contains("::error::still detected: policy-mismatch"),
        "{run:?}"
    );
    assert_eq!(read(&artifact), record);
    assert_eq!(
        stub.script.lock().unwrap().requests.last(),
        Some(&json!({"pull_number": 42}))
    );

    // A record missing fields is refused whole: no artifact at all.
    std::fs::remove_dir_all(&artifacts).unwrap();
    let mut partial = audit_record("verified");
    partial.as_object_mut().unwrap().remove("detail_sha256");
    partial.as_object_mut().unwrap().remove("actor");
    stub.script.lock().unwrap().answer = Some((200, json!({"audit": partial})));
    sandbox
        .run(&root(), "drift-verify.sh", &[], &env)
        .await
        .failed_with("the gateway's audit record lacks: actor detail_sha256");
    assert!(!artifacts.exists(), "nothing written");

    stub.script.lock().unwrap().answer =
        Some((422, json!({"verified": false, "reasons": ["not merged"]})));
    let run = sandbox.run(&root(), "drift-verify.sh", &[], &env).await;
    assert_eq!(run.code, Some(1));
    assert!(run.stdout.contains("::error::not merged"), "{run:?}");
    assert!(!artifacts.exists());

    let mut bad = env.clone();
    bad.push(("PULL_NUMBER", "42; echo".to_owned()));
    sandbox
        .run(&root(), "drift-verify.sh", &[], &bad)
        .await
        .failed_with("PULL_NUMBER '42; echo' is not a number");
}

#[tokio::test]
async fn the_manifest_is_published_to_the_config_bucket_with_stale_files_removed() {
    use keyward_integration::moto::{BucketKind, MotoServer};
    // The AWS CLI is on every GitHub-hosted runner; here it is pinned in the project's
    // virtualenv (scripts/lib.sh), whose bin directory scripts/test.sh puts on PATH.
    assert!(
        std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|dir| Path::new(dir).join("aws").is_file()),
        "the AWS CLI (aws) is not on PATH: run scripts/test.sh, which installs it"
    );
    let sandbox = Sandbox::new();
    let moto = MotoServer::shared().await;
    let s3 = moto.s3();
    let bucket = format!("keyward-config-{}", keyward_integration::support::unique());
    moto.create_bucket(&bucket, BucketKind::Versioned)
        .await
        .expect("bucket");
    for key in ["manifest/retired.yaml", "other/keep.txt"] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(b"old".to_vec().into())
            .send()
            .await
            .expect("put");
    }
    let repo = sandbox.path("repo");
    let manifest = repo.join("infra/config/manifest");
    std::fs::create_dir_all(&manifest).unwrap();
    std::fs::write(manifest.join("enums.yaml"), "owners: [team-web]\n").unwrap();
    std::fs::write(manifest.join("payments.yaml"), "secrets: []\n").unwrap();
    std::fs::write(manifest.join("NOTES.md"), "not a manifest\n").unwrap();

    let mut env: Vec<(&str, String)> = moto
        .function_env()
        .into_iter()
        .filter_map(|(k, v)| {
            let name: &'static str = match k.as_str() {
                "AWS_ENDPOINT_URL" => "AWS_ENDPOINT_URL",
                "AWS_REGION" => "AWS_REGION",
                "AWS_DEFAULT_REGION" => "AWS_DEFAULT_REGION",
                "AWS_ACCESS_KEY_ID" => "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY" => "AWS_SECRET_ACCESS_KEY",
                "AWS_EC2_METADATA_DISABLED" => "AWS_EC2_METADATA_DISABLED",
                _ => return None,
            };
            Some((name, v))
        })
        .collect();
    let empty = sandbox.path("aws-config");
    std::fs::write(&empty, "").unwrap();
    env.push(("AWS_CONFIG_FILE", empty.display().to_string()));
    env.push(("AWS_SHARED_CREDENTIALS_FILE", empty.display().to_string()));
    sandbox
        .run(&repo, "publish-manifest.sh", &[], &env)
        .await
        .failed_with("missing environment variable(s): CONFIG_BUCKET");
    env.push(("CONFIG_BUCKET", bucket.clone()));
    sandbox
        .run(&repo, "publish-manifest.sh", &[], &env)
        .await
        .ok();

    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    let keys: BTreeSet<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "manifest/enums.yaml".to_owned(),
            "manifest/payments.yaml".to_owned(),
            "other/keep.txt".to_owned(),
        ])
    );
    let body = s3
        .get_object()
        .bucket(&bucket)
        .key("manifest/payments.yaml")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(&body[..], b"secrets: []\n");

    // An empty manifest directory would empty the bucket's manifest/: refused.
    for file in ["enums.yaml", "payments.yaml"] {
        std::fs::remove_file(manifest.join(file)).unwrap();
    }
    sandbox
        .run(&repo, "publish-manifest.sh", &[], &env)
        .await
        .failed_with("holds no *.yaml");
    let listed = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .expect("list");
    assert_eq!(listed.contents().len(), 3, "nothing deleted");
}
