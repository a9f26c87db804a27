//! The terminal view of a posture: headline, unreadable sources, then secrets worst first.

use std::fmt::Write as _;

use super::model::*;

/// Rows of healthy secrets shown before the rest are summed up in one line.
const HEALTHY_ROWS: usize = 20;

pub fn render(p: &Posture) -> String {
    let mut out = String::new();
    let f = &p.headline.figures;
    let _ = writeln!(
        out,
        "keyward posture of {} at {} (alerts since {})",
        p.org,
        p.generated_at.format("%Y-%m-%d %H:%M UTC"),
        p.window.from.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        out,
        "  governed {} of {} declared ({} in Secrets Manager); {}% within rotation policy",
        f.secrets_governed,
        f.secrets_declared,
        f.secrets_existing,
        p.headline.within_policy_percent
    );
    let _ = writeln!(
        out,
        "  overdue {}, never rotated {}, no value {}, missing {}, undeclared {}",
        f.overdue, f.never_rotated, f.no_value, f.missing, f.undeclared
    );
    let _ = writeln!(
        out,
        "  Vercel {}/{} in parity; open drift {}; alerts {}; ghost readers {}; audit chain {}",
        f.vercel_targets_in_parity,
        f.vercel_targets,
        f.open_drift,
        f.alerts_in_window,
        f.ghost_readers,
        f.chain.as_str()
    );
    for source in p.sources.iter().filter(|s| !s.read || s.error.is_some()) {
        let _ = writeln!(
            out,
            "  ! {}: {}",
            source.source.as_str(),
            source.error.as_deref().unwrap_or("not read")
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<5} {:<52} {:<22} {:<14} {:>7} {:<16} notes",
        "", "secret", "rotation", "strategy", "age(d)", "owner"
    );
    let mut healthy_hidden = 0usize;
    let mut healthy_shown = 0usize;
    for s in &p.secrets {
        if s.health == Health::Ok {
            if healthy_shown == HEALTHY_ROWS {
                healthy_hidden += 1;
                continue;
            }
            healthy_shown += 1;
        }
        let _ = writeln!(
            out,
            "{:<5} {:<52} {:<22} {:<14} {:>7} {:<16} {}",
            health_mark(s.health),
            s.name,
            s.rotation.as_str(),
            s.strategy.map(|st| st.as_str()).unwrap_or("-"),
            s.age_days
                .map(|a| format!("{a:.1}"))
                .unwrap_or_else(|| "-".into()),
            s.owner.as_deref().unwrap_or("-"),
            notes(s)
        );
    }
    if healthy_hidden > 0 {
        let _ = writeln!(out, "      ... and {healthy_hidden} more within policy");
    }
    if !p.drift.is_empty() {
        out.push_str("\ndrift\n");
        for d in &p.drift {
            let _ = writeln!(
                out,
                "  {:<6} {:<30} {} ({:.1} h{})",
                if d.closed.is_some() { "closed" } else { "OPEN" },
                d.finding,
                d.secret.as_deref().unwrap_or(&d.fingerprint),
                d.age_hours,
                if d.closed.is_some() {
                    " to closure"
                } else {
                    ""
                }
            );
        }
    }
    if p.alerts.total > 0 {
        out.push_str("\nalerts by rule\n");
        for (rule, count) in &p.alerts.by_rule {
            let _ = writeln!(out, "  {count:>5}  {rule}");
        }
    }
    let _ = writeln!(out, "\naudit chain: {}", p.chain.summary);
    out
}

fn health_mark(h: Health) -> &'static str {
    match h {
        Health::Bad => "BAD",
        Health::Warn => "warn",
        Health::Ok => "ok",
    }
}

/// What else is wrong with a secret, in a few words.
fn notes(s: &SecretPosture) -> String {
    let mut notes = Vec::new();
    if s.open_drift > 0 {
        notes.push(format!("{} open drift", s.open_drift));
    }
    if s.rotation_failures > 0 {
        notes.push(format!("{} rotation failure(s)", s.rotation_failures));
    }
    if s.readers.public {
        notes.push("public policy".to_owned());
    }
    if !s.readers.ghost.is_empty() {
        notes.push(format!("ghost readers: {}", s.readers.ghost.join(", ")));
    }
    let off: Vec<String> = s
        .vercel
        .iter()
        .filter(|t| t.state != ParityState::InParity)
        .map(|t| format!("{} {} {}", t.target, t.key, t.state.as_str()))
        .collect();
    if !off.is_empty() {
        notes.push(format!("Vercel: {}", off.join(", ")));
    }
    notes.join("; ")
}
