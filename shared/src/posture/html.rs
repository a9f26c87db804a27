//! The posture page: one self-contained HTML file (inline CSS, inline SVG charts, a few lines
//! of inline script for the table filter; no fetch, no font, no CDN), so it opens from `file://`,
//! an S3 download or an email attachment alike. Every text is escaped; the page carries names
//! and figures only.

use std::fmt::Write as _;

use super::model::*;

/// Secrets drawn in the rotation-age chart: the oldest against their interval.
const CHART_SECRETS: usize = 40;
/// The chart's scale ends at this share of the interval (older bars are clipped and marked).
const CHART_MAX_RATIO: f64 = 1.5;

pub fn render(p: &Posture) -> String {
    let mut page = String::with_capacity(64 * 1024 + p.secrets.len() * 600);
    let title = format!("keyward posture: {}", p.org);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>{}</title><style>{STYLE}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        page,
        "<header><h1>{}</h1><p>Generated {} &middot; alerts from {} to {}</p></header>",
        esc(&title),
        p.generated_at.format("%Y-%m-%d %H:%M UTC"),
        p.window.from.format("%Y-%m-%d %H:%M"),
        p.window.to.format("%Y-%m-%d %H:%M UTC")
    );
    sources(&mut page, p);
    headline(&mut page, p);
    page.push_str("<div class=\"charts\">");
    rotation_chart(&mut page, p);
    alerts_chart(&mut page, p);
    page.push_str("</div>");
    secrets_table(&mut page, p);
    drift_table(&mut page, p);
    readers_table(&mut page, p);
    keys_grid(&mut page, p);
    chain(&mut page, p);
    let _ = writeln!(page, "<script>{SCRIPT}</script></body></html>");
    page
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn health_class(h: Health) -> &'static str {
    match h {
        Health::Bad => "bad",
        Health::Warn => "warn",
        Health::Ok => "ok",
    }
}

/// A source that could not be read is a red state with its reason, never a blank part.
fn sources(page: &mut String, p: &Posture) {
    let failed: Vec<&SourceState> = p
        .sources
        .iter()
        .filter(|s| !s.read || s.error.is_some())
        .collect();
    if failed.is_empty() {
        return;
    }
    page.push_str("<section id=\"sources\" class=\"alert\"><h2>Sources not read</h2><ul>");
    for s in failed {
        let _ = write!(
            page,
            "<li data-source=\"{}\"><b>{}</b>: {}</li>",
            wire_name(&s.source),
            esc(s.source.as_str()),
            esc(s.error.as_deref().unwrap_or("not read"))
        );
    }
    page.push_str("</ul></section>");
}

fn headline(page: &mut String, p: &Posture) {
    let f = &p.headline.figures;
    let chain_class = match f.chain {
        ChainVerdict::Valid => "ok",
        ChainVerdict::Broken => "bad",
        ChainVerdict::NotVerified => "warn",
    };
    let cards: [(&str, String, &str, &str); 7] = [
        (
            "governed",
            f.secrets_governed.to_string(),
            "secrets governed",
            if f.missing + f.undeclared > 0 {
                "warn"
            } else {
                "ok"
            },
        ),
        (
            "within-policy",
            format!("{}%", p.headline.within_policy_percent),
            "within rotation policy",
            if f.overdue + f.no_value > 0 {
                "bad"
            } else {
                "ok"
            },
        ),
        (
            "overdue",
            f.overdue.to_string(),
            "overdue for rotation",
            if f.overdue > 0 { "bad" } else { "ok" },
        ),
        (
            "parity",
            format!("{}/{}", f.vercel_targets_in_parity, f.vercel_targets),
            "Vercel targets in parity",
            if f.vercel_targets_in_parity < f.vercel_targets {
                "warn"
            } else {
                "ok"
            },
        ),
        (
            "open-drift",
            f.open_drift.to_string(),
            "open drift findings",
            if f.open_drift > 0 { "bad" } else { "ok" },
        ),
        (
            "alerts",
            f.alerts_in_window.to_string(),
            "alerts in the window",
            if f.alerts_in_window > 0 { "warn" } else { "ok" },
        ),
        (
            "chain",
            f.chain.as_str().to_owned(),
            "audit chain",
            chain_class,
        ),
    ];
    page.push_str("<section id=\"headline\" class=\"cards\">");
    for (id, value, label, class) in cards {
        let _ = write!(
            page,
            "<div class=\"card {class}\" id=\"card-{id}\"><div class=\"value\">{}</div><div class=\"label\">{}</div></div>",
            esc(&value),
            esc(label)
        );
    }
    page.push_str("</section>");
}

/// Horizontal bars: each secret's age as a share of its interval, a line at the policy.
fn rotation_chart(page: &mut String, p: &Posture) {
    let mut rows: Vec<(&SecretPosture, f64)> = p
        .secrets
        .iter()
        .filter_map(|s| Some((s, s.age_days? / f64::from(s.interval_days?))))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.truncate(CHART_SECRETS);
    let (label_w, bar_w, row_h) = (260.0, 380.0, 16.0);
    let height = 30.0 + row_h * rows.len().max(1) as f64;
    let _ = write!(
        page,
        "<figure id=\"rotation-chart\"><figcaption>Rotation age against policy ({} oldest)</figcaption>\
         <svg role=\"img\" aria-label=\"rotation age against policy\" width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\">",
        rows.len(),
        label_w + bar_w + 20.0,
        label_w + bar_w + 20.0
    );
    let policy_x = label_w + bar_w / CHART_MAX_RATIO;
    for (i, (s, ratio)) in rows.iter().enumerate() {
        let y = 10.0 + row_h * i as f64;
        let width = bar_w * ratio.min(CHART_MAX_RATIO) / CHART_MAX_RATIO;
        let _ = write!(
            page,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"axis\">{}</text>\
             <rect class=\"{}\" x=\"{label_w}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\"><title>{}: {} of {} days</title></rect>",
            label_w - 6.0,
            y + row_h - 5.0,
            esc(&short(&s.name, 40)),
            health_class(s.rotation.health()),
            row_h - 4.0,
            esc(&s.name),
            s.age_days.unwrap_or_default(),
            s.interval_days.unwrap_or_default()
        );
    }
    let _ = write!(
        page,
        "<line x1=\"{policy_x}\" x2=\"{policy_x}\" y1=\"4\" y2=\"{}\" class=\"policy\"/>\
         <text x=\"{policy_x}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">interval</text></svg></figure>",
        height - 14.0,
        height - 2.0
    );
}

fn alerts_chart(page: &mut String, p: &Posture) {
    let days = &p.alerts.by_day;
    let max = days.iter().map(|d| d.count).max().unwrap_or(0).max(1) as f64;
    let (bar_w, chart_h) = (32.0, 120.0);
    let width = 20.0 + bar_w * days.len().max(1) as f64;
    let _ = write!(
        page,
        "<figure id=\"alerts-chart\"><figcaption>Alerts per day ({} in the window)</figcaption>\
         <svg role=\"img\" aria-label=\"alerts per day\" width=\"{width}\" height=\"{}\" viewBox=\"0 0 {width} {}\">",
        p.alerts.total,
        chart_h + 40.0,
        chart_h + 40.0
    );
    for (i, day) in days.iter().enumerate() {
        let h = chart_h * day.count as f64 / max;
        let x = 10.0 + bar_w * i as f64;
        let _ = write!(
            page,
            "<rect class=\"alerts\" x=\"{x}\" y=\"{:.1}\" width=\"{}\" height=\"{h:.1}\"><title>{}: {}</title></rect>\
             <text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>\
             <text x=\"{}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            10.0 + chart_h - h,
            bar_w - 6.0,
            esc(&day.name),
            day.count,
            x + (bar_w - 6.0) / 2.0,
            chart_h + 24.0,
            esc(day.name.get(5..).unwrap_or(&day.name)),
            x + (bar_w - 6.0) / 2.0,
            (10.0 + chart_h - h - 3.0).max(9.0),
            day.count
        );
    }
    page.push_str("</svg>");
    if !p.alerts.by_rule.is_empty() {
        page.push_str("<ul class=\"rules\">");
        for (rule, count) in &p.alerts.by_rule {
            let _ = write!(
                page,
                "<li data-rule=\"{}\">{} <b>{count}</b></li>",
                esc(rule),
                esc(rule)
            );
        }
        page.push_str("</ul>");
    }
    page.push_str("</figure>");
}

fn secrets_table(page: &mut String, p: &Posture) {
    page.push_str(
        "<section id=\"secrets\"><h2>Secrets</h2>\
         <p><input id=\"filter\" type=\"search\" placeholder=\"filter by any text\" aria-label=\"filter secrets\">\
         <select id=\"health\" aria-label=\"health\"><option value=\"\">all</option><option value=\"bad\">bad</option>\
         <option value=\"warn\">warn</option><option value=\"ok\">ok</option></select> <span id=\"shown\"></span></p>\
         <table><thead><tr><th>secret</th><th>rotation</th><th>strategy</th><th>age (days)</th>\
         <th>interval</th><th>next due</th><th>owner</th><th>class</th><th>Vercel</th><th>drift</th><th>readers</th></tr></thead><tbody>",
    );
    for s in &p.secrets {
        let vercel: Vec<String> = s
            .vercel
            .iter()
            .map(|t| format!("{} {}: {}", t.target, t.key, t.state.as_str()))
            .collect();
        let _ = write!(
            page,
            "<tr class=\"{}\" data-health=\"{}\" data-secret=\"{}\"><td>{}</td>\
             <td class=\"rotation\" data-state=\"{}\">{}</td><td class=\"strategy\">{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            health_class(s.health),
            health_class(s.health),
            esc(&s.name),
            esc(&s.name),
            wire_name(&s.rotation),
            esc(s.rotation.as_str()),
            s.strategy.map(|st| st.as_str()).unwrap_or("-"),
            s.age_days
                .map(|a| format!("{a:.1}"))
                .unwrap_or_else(|| "-".into()),
            s.interval_days
                .map(|d| d.to_string())
                .unwrap_or_else(|| "-".into()),
            s.next_due
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_else(|| "-".into()),
            esc(s.owner.as_deref().unwrap_or("-")),
            s.classification
                .map(|c| esc(&format!("{c:?}").to_lowercase()))
                .unwrap_or_else(|| "-".into()),
            esc(&vercel.join("; ")),
            if s.open_drift > 0 {
                s.open_drift.to_string()
            } else {
                String::new()
            },
            readers_cell(&s.readers)
        );
    }
    page.push_str("</tbody></table></section>");
}

fn readers_cell(r: &Readers) -> String {
    let mut parts = vec![format!("exposure {}", r.exposure)];
    if r.public {
        parts.push("PUBLIC".into());
    }
    if !r.ghost.is_empty() {
        parts.push(format!("{} ghost", r.ghost.len()));
    }
    esc(&parts.join(", "))
}

fn drift_table(page: &mut String, p: &Posture) {
    page.push_str("<section id=\"drift\"><h2>Drift</h2>");
    if p.drift.is_empty() {
        page.push_str("<p>No drift open or closed in the window.</p></section>");
        return;
    }
    page.push_str(
        "<table><thead><tr><th>state</th><th>finding</th><th>secret</th><th>severity</th>\
         <th>detected</th><th>closed</th><th>age (h)</th></tr></thead><tbody>",
    );
    for d in &p.drift {
        let state = if d.closed.is_some() { "closed" } else { "open" };
        let _ = write!(
            page,
            "<tr class=\"{}\" data-drift=\"{}\" data-state=\"{state}\"><td>{state}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            if d.closed.is_some() { "ok" } else { "bad" },
            esc(&d.fingerprint),
            esc(&d.finding),
            esc(d.secret.as_deref().unwrap_or("-")),
            esc(&format!("{:?}", d.severity).to_lowercase()),
            d.detected.format("%Y-%m-%d %H:%M"),
            d.closed
                .map(|c| c.format("%Y-%m-%d %H:%M").to_string())
                .unwrap_or_else(|| "-".into()),
            d.age_hours
        );
    }
    page.push_str("</tbody></table></section>");
}

/// Secrets whose readers need a look: ghost readers, unused grants, a public policy.
fn readers_table(page: &mut String, p: &Posture) {
    let rows: Vec<&SecretPosture> = p
        .secrets
        .iter()
        .filter(|s| s.readers.public || !s.readers.ghost.is_empty() || !s.readers.seen.is_empty())
        .collect();
    page.push_str("<section id=\"readers\"><h2>Readers: declared against seen</h2>");
    if rows.is_empty() {
        page.push_str("<p>No reads seen, no public policy.</p></section>");
        return;
    }
    page.push_str(
        "<table><thead><tr><th>secret</th><th>declared</th><th>admitted by policy</th><th>seen</th>\
         <th>ghost (seen, not declared)</th><th>unused grants</th><th>exposure</th></tr></thead><tbody>",
    );
    let list = |items: &[String]| esc(&items.join(", "));
    for s in rows {
        let r = &s.readers;
        let seen: Vec<String> = r.seen.iter().map(|s| s.principal.clone()).collect();
        let _ = write!(
            page,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if r.public || !r.ghost.is_empty() {
                "bad"
            } else {
                "ok"
            },
            esc(&s.name),
            list(&r.declared),
            if r.public { "<b>* (public)</b> " } else { "" },
            list(&r.admitted),
            list(&seen),
            list(&r.ghost),
            list(&r.unused),
            r.exposure
        );
    }
    page.push_str("</tbody></table></section>");
}

fn keys_grid(page: &mut String, p: &Posture) {
    let grid = &p.keys_by_environment;
    page.push_str("<section id=\"keys\"><h2>Keys by environment</h2><table><thead><tr><th>service</th><th>name</th>");
    for env in &grid.environments {
        let _ = write!(page, "<th>{}</th>", esc(env));
    }
    page.push_str("</tr></thead><tbody>");
    for row in &grid.rows {
        let _ = write!(
            page,
            "<tr class=\"{}\"><td>{}</td><td>{}</td>",
            if row.gap { "warn" } else { "ok" },
            esc(&row.service),
            esc(&row.name)
        );
        for cell in &row.cells {
            let _ = write!(
                page,
                "<td class=\"cell-{}\">{}</td>",
                cell.as_str(),
                cell.as_str()
            );
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table></section>");
}

fn chain(page: &mut String, p: &Posture) {
    let c = &p.chain;
    let class = match c.verdict {
        ChainVerdict::Valid => "ok",
        ChainVerdict::Broken => "bad",
        ChainVerdict::NotVerified => "warn",
    };
    let _ = write!(
        page,
        "<section id=\"chain\" class=\"{class}\" data-verdict=\"{}\"><h2>Audit chain: {}</h2><p>{}</p>",
        esc(c.verdict.as_str()),
        esc(c.verdict.as_str()),
        esc(&c.summary)
    );
    if let Some(last) = &c.last_digest {
        let _ = write!(
            page,
            "<p>Newest digest {} ({} h old)</p>",
            esc(last),
            c.last_digest_age_hours.unwrap_or_default()
        );
    }
    if !c.failures.is_empty() {
        page.push_str("<ul>");
        for failure in &c.failures {
            let _ = write!(page, "<li>{}</li>", esc(failure));
        }
        page.push_str("</ul>");
    }
    page.push_str("</section>");
}

/// The last `max` characters of a long name, so the distinguishing end stays visible.
fn short(name: &str, max: usize) -> String {
    let count = name.chars().count();
    if count <= max {
        return name.to_owned();
    }
    let tail: String = name.chars().skip(count - (max - 1)).collect();
    format!("…{tail}")
}

const STYLE: &str = "\
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 24px 40px;color:#1d2330;background:#fafbfc}\
h1{font-size:22px;margin:18px 0 2px}h2{font-size:17px;margin:26px 0 8px}header p{margin:0;color:#5b6474}\
.cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:16px}\
.card{background:#fff;border:1px solid #dde1e6;border-left:6px solid #2e9d57;border-radius:6px;padding:10px 14px;min-width:130px}\
.card .value{font-size:24px;font-weight:600}.card .label{color:#5b6474;font-size:12px}\
.card.warn{border-left-color:#d99a00}.card.bad{border-left-color:#c8332b}\
.alert{background:#fdecea;border:1px solid #c8332b;border-radius:6px;padding:4px 14px;margin-top:14px}\
.charts{display:flex;flex-wrap:wrap;gap:24px}figure{margin:16px 0 0;background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px}\
figcaption{font-weight:600;margin-bottom:6px}svg text.axis{font-size:10px;fill:#5b6474}\
rect.ok{fill:#2e9d57}rect.warn{fill:#d99a00}rect.bad{fill:#c8332b}rect.alerts{fill:#4063c9}line.policy{stroke:#1d2330;stroke-dasharray:4 3}\
ul.rules{list-style:none;padding:0;margin:6px 0 0;font-size:12px}\
table{border-collapse:collapse;width:100%;background:#fff;font-size:12.5px}th,td{border-bottom:1px solid #e5e8ec;padding:4px 6px;text-align:left;vertical-align:top}\
th{background:#f0f2f5;position:sticky;top:0}tr.bad td:first-child{border-left:4px solid #c8332b}tr.warn td:first-child{border-left:4px solid #d99a00}\
tr.ok td:first-child{border-left:4px solid #2e9d57}td.cell-missing{background:#fdecea}td.cell-undeclared{background:#fff4d6}td.cell-absent{color:#9aa3af}\
section#chain{border-radius:6px;padding:2px 14px;margin-top:20px;border:1px solid #dde1e6;background:#fff}\
section#chain.bad{background:#fdecea;border-color:#c8332b}input,select{font:inherit;padding:3px 6px}";

/// Filters the secrets table by text and health; without script every row stays visible.
const SCRIPT: &str = "\
(function(){var f=document.getElementById('filter'),h=document.getElementById('health'),n=document.getElementById('shown');\
var rows=[].slice.call(document.querySelectorAll('#secrets tbody tr'));\
function apply(){var q=f.value.toLowerCase(),w=h.value,k=0;rows.forEach(function(r){\
var ok=(!q||r.textContent.toLowerCase().indexOf(q)>=0)&&(!w||r.getAttribute('data-health')===w);\
r.style.display=ok?'':'none';if(ok)k++;});n.textContent=k+' of '+rows.length+' shown';}\
f.addEventListener('input',apply);h.addEventListener('change',apply);apply();})();";
