//! Posture: mid-run, the posture `keyward posture` computes (the same library, the same
//! sources) shows the drift finding open; at the end the posture function's daily report shows
//! the rotations within policy, the stripe key as manual, the drift closed, the run's alerts
//! and the chain valid. The page is then loaded in a real headless Chromium and its DOM is
//! checked for the same figures; a screenshot is kept under `target/posture/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;
use keyward_shared::adapters::aws::{
    KmsDigestSigner, S3AuditBucket, S3MarkerStore, SecretsManagerCatalog,
};
use keyward_shared::audit::DigestSigner;
use keyward_shared::posture::{
    self, ChainVerdict, Posture, PostureRequest, PostureSources, RotationState,
};
use keyward_shared::redact::ExposeSecret;

use super::Scenario;

/// Rotated earlier in the run (the rotation step). The stripe key shows as rotated too: moto
/// stamps `LastRotatedDate` when `RotateSecret` is called, before (and whatever) the steps
/// return, where AWS stamps it when a rotation completes; the check holds it to `manual` only.
const ROTATED: [&str; 3] = [
    "/acme/dev/web/session-key",
    "/acme/prod/payments/db-credentials",
    "/acme/prod/web/auth0-m2m",
];
const MANUAL: &str = "/acme/prod/payments/stripe-api-key";
const BROWSER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(90);

/// The posture as the CLI reads it, from moto and the stack's buckets.
async fn read_posture(s: &Scenario) -> Result<Posture> {
    let stack = &s.stack;
    let sdk = stack.moto.sdk_config();
    let secrets = SecretsManagerCatalog::new(aws_sdk_secretsmanager::Client::new(&sdk));
    let state = S3MarkerStore::new(stack.moto.s3(), &stack.anomaly.state_bucket);
    let audit = S3AuditBucket::new(stack.moto.s3(), &stack.audit.bucket);
    let public_key =
        KmsDigestSigner::new(aws_sdk_kms::Client::new(&sdk), &stack.audit.digest_key_id)
            .public_key_der()
            .await
            .map_err(|e| e.to_string());
    let request = PostureRequest {
        org: stack.manifest.org.to_string(),
        now: Utc::now(),
        window_days: 7,
        history_days: 30,
        max_digest_age: chrono::Duration::hours(2),
        digest_lookback: chrono::Duration::hours(48),
    };
    let sources = PostureSources {
        manifest: Ok(stack.manifest.clone()),
        secrets: &secrets,
        state: &state,
        audit: &audit,
        audit_bucket: &stack.audit.bucket,
        public_key,
    };
    Ok(posture::compute(&posture::gather(&request, sources).await))
}

/// The drift fingerprints the posture shows open now.
pub(super) async fn open_drift(s: &Scenario) -> Result<Vec<String>> {
    Ok(read_posture(s)
        .await?
        .drift
        .iter()
        .filter(|d| d.closed.is_none())
        .map(|d| d.fingerprint.clone())
        .collect())
}

/// After detection, before any fix: the run's findings (those not open `before` it) are open.
pub(super) async fn drift_is_open(s: &mut Scenario, before: &[String]) -> Result<()> {
    let posture = read_posture(s).await?;
    let opened: Vec<String> = posture
        .drift
        .iter()
        .filter(|d| d.closed.is_none() && !before.contains(&d.fingerprint))
        .map(|d| d.fingerprint.clone())
        .collect();
    s.check(
        "posture: drift findings open before their fix",
        !opened.is_empty()
            && posture.headline.figures.open_drift == (before.len() + opened.len()) as u64,
        format!("{} opened: {}", opened.len(), opened.join(", ")),
    );
    s.open_drift = opened;
    Ok(())
}

/// The daily report, its figures, and the page in a real browser.
pub(super) async fn daily_report(s: &mut Scenario) -> Result<()> {
    let outcome = s
        .stack
        .tick("PostureReportFunction.Daily", Utc::now())
        .await?;
    let json = s.stack.state_object("reports/posture/latest.json").await?;
    let page = s.stack.state_object("reports/posture/latest.html").await?;
    let posture: Posture =
        serde_json::from_slice(&json).context("latest.json is not a posture document")?;
    let dir = crate::target_dir().join("posture");
    std::fs::create_dir_all(&dir)?;
    let page_path = dir.join("posture.html");
    std::fs::write(&page_path, &page)?;
    std::fs::write(dir.join("posture.json"), &json)?;
    println!("posture page: {}", page_path.display());

    s.check(
        "posture: report written and snapshot published",
        outcome["snapshot_published"] == true
            && outcome["report_key"]
                .as_str()
                .is_some_and(|k| k.starts_with("reports/posture/")),
        format!(
            "{} ({} governed, {} sources not read)",
            outcome["report_key"].as_str().unwrap_or("?"),
            posture.headline.figures.secrets_governed,
            outcome["sources_not_read"].as_array().map_or(0, Vec::len)
        ),
    );
    let state_of = |name: &str| {
        posture
            .secrets
            .iter()
            .find(|p| p.name == name)
            .map(|p| (p.rotation, p.strategy.map(|st| st.as_str())))
    };
    let rotated: Vec<_> = ROTATED.iter().map(|n| state_of(n)).collect();
    s.check(
        "posture: rotated secrets within policy, the stripe key manual",
        rotated
            .iter()
            .all(|r| r.is_some_and(|(state, _)| state == RotationState::WithinPolicy))
            && state_of(MANUAL).is_some_and(|(_, strategy)| strategy == Some("manual")),
        format!("{rotated:?}; {MANUAL}: {:?}", state_of(MANUAL)),
    );
    let closed: Vec<&str> = posture
        .drift
        .iter()
        .filter(|d| d.closed.is_some())
        .map(|d| d.fingerprint.as_str())
        .collect();
    s.check(
        "posture: the drift opened in the run is closed",
        !s.open_drift.is_empty() && s.open_drift.iter().all(|f| closed.contains(&f.as_str())),
        format!("closed: {}", closed.join(", ")),
    );
    let ghost = posture
        .secrets
        .iter()
        .find(|p| p.name == super::anomaly::GHOST_READ)
        .map(|p| p.readers.clone())
        .unwrap_or_default();
    s.check(
        "posture: a reader CloudTrail saw but the manifest does not name is a ghost",
        ghost.ghost == [super::anomaly::GHOST_READER]
            && ghost
                .unused
                .iter()
                .any(|u| u.ends_with("role/payments-api")),
        format!(
            "{}: ghost {:?}, unused {:?}, exposure {}",
            super::anomaly::GHOST_READ,
            ghost.ghost,
            ghost.unused,
            ghost.exposure
        ),
    );
    let alerts = s.stack.anomaly.loki.fake.entries().len() as u64;
    s.check(
        "posture: the run's alerts, the chain valid",
        posture.alerts.total == alerts && posture.chain.verdict == ChainVerdict::Valid,
        format!(
            "{} alerts ({alerts} in Loki); chain: {}",
            posture.alerts.total, posture.chain.summary
        ),
    );
    let page_text = String::from_utf8_lossy(&page);
    let json_text = String::from_utf8_lossy(&json);
    let leaked = s
        .stack
        .provisioned_values
        .iter()
        .filter(|v| page_text.contains(v.expose_secret()) || json_text.contains(v.expose_secret()))
        .count();
    s.check(
        "posture: no secret value in the page or the JSON",
        leaked == 0,
        format!(
            "{} + {} bytes scanned, {leaked} leaks",
            page.len(),
            json.len()
        ),
    );
    in_the_browser(s, &posture, &page_path, &dir)
}

/// Loads the page from `file://` in headless Chromium: the DOM after its script ran must
/// carry the figures above; the screenshot is for a person.
fn in_the_browser(s: &mut Scenario, posture: &Posture, page: &Path, dir: &Path) -> Result<()> {
    let dom = chromium(page, &["--dump-dom".to_owned()])?;
    let screenshot = dir.join("posture.png");
    let _ = std::fs::remove_file(&screenshot);
    chromium(
        page,
        &[
            format!("--screenshot={}", screenshot.display()),
            "--window-size=1400,2600".to_owned(),
        ],
    )?;
    let f = &posture.headline.figures;
    let rows_ok = ROTATED.iter().all(|name| {
        row(&dom, "data-secret", name).is_some_and(|r| r.contains("data-state=\"within_policy\""))
    }) && row(&dom, "data-secret", MANUAL)
        .is_some_and(|r| r.contains("<td class=\"strategy\">manual</td>"));
    let drift_ok = s.open_drift.iter().all(|fingerprint| {
        row(&dom, "data-drift", fingerprint).is_some_and(|r| r.contains("data-state=\"closed\""))
    });
    let cards_ok = card(&dom, "alerts") == Some(f.alerts_in_window.to_string())
        && card(&dom, "chain").as_deref() == Some("valid")
        && card(&dom, "governed") == Some(f.secrets_governed.to_string());
    // Written by the page's own script: proof the browser ran it.
    let rows = posture.secrets.len();
    let script_ran = dom.contains(&format!("{rows} of {rows} shown"));
    s.check(
        "posture: the page in headless Chromium shows the figures",
        rows_ok && drift_ok && cards_ok && script_ran && screenshot.is_file(),
        format!(
            "rows {rows_ok}, drift {drift_ok}, cards {cards_ok}, script {script_ran}; screenshot {}",
            screenshot.display()
        ),
    );
    Ok(())
}

/// Runs headless Chromium on a `file://` page with the flags CI machines need; stdout back.
fn chromium(page: &Path, extra: &[String]) -> Result<String> {
    let profile = tempfile::tempdir()?;
    let mut command = std::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", absolute(page).display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command
        .spawn()
        .context("chromium did not start (scripts/lib.sh installs the Debian package)")?;
    let pid = child.id();
    // Read on a thread: a DOM larger than the pipe's buffer would block a waiting parent.
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match outcome.recv_timeout(BROWSER_TIMEOUT) {
        Ok(output) => output?,
        Err(_) => {
            // SAFETY: signals a process this function started and has not reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            anyhow::bail!("chromium did not finish within {BROWSER_TIMEOUT:?}");
        }
    };
    if !output.status.success() {
        anyhow::bail!(
            "chromium exited with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The `<tr>` whose attribute has this value.
fn row<'a>(dom: &'a str, attribute: &str, value: &str) -> Option<&'a str> {
    let at = dom.find(&format!("{attribute}=\"{value}\""))?;
    let start = dom[..at].rfind("<tr")?;
    let end = at + dom[at..].find("</tr>")?;
    Some(&dom[start..end])
}

/// A headline card's value.
fn card(dom: &str, id: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"card-{id}\""))?;
    let rest = &dom[at..];
    let value = rest.find("class=\"value\">")? + "class=\"value\">".len();
    let end = rest[value..].find('<')?;
    Some(rest[value..value + end].to_owned())
}
