//! The admin commands: terminals, rules, cards, keys, verify, reports, jobs. Each
//! writes its human-readable answer to `out`, so tests can read it and `main` can
//! send it to stdout. Card numbers are printed masked (`****3931`), like everywhere
//! else: output gets pasted into tickets and mails. An operator who needs a card's
//! full record types its number (`card show CARD`); no command prints one back.

use crate::jobs::RunReport;
use crate::keys::{RandomError, TerminalToken, generate_signing_key};
use crate::ledger::quarantine::RetryOutcome;
use crate::ledger::verify::{Difference, check_card, check_terminal, overcommitted};
use crate::store::flow::escrow::AbandonAfter;
use crate::store::{Store, StoreError, TerminalAdded};
use config::clock::Clock;
use protocol::rules::ProgramRules;
use protocol::token::AppToken;
use protocol::{CardId, StoreId, TerminalId};
use std::io::{self, Write};
use std::path::Path;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the answer failed.
    #[error("writing output")]
    Io(#[from] io::Error),
    /// The rules file is bad.
    #[error("{0}")]
    Rules(String),
    /// `card token` before any `keys rotate`.
    #[error("no signing key yet: run `sync-server keys rotate` first")]
    NoSigningKey,
    /// No randomness for a token or key.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Output could not be rendered.
    #[error("{0}")]
    Render(String),
}

/// A time for humans and scripts: RFC 3339.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn fmt_opt_time(t: Option<OffsetDateTime>) -> String {
    t.map_or_else(|| "-".to_owned(), fmt_time)
}

/// `terminal add`: prints the new token alone on the last line, once.
pub async fn terminal_add(
    store: &dyn Store,
    clock: Clock,
    s: &StoreId,
    t: &TerminalId,
    rotate: bool,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let token = TerminalToken::generate()?;
    let added = store
        .add_terminal(s, t, &token.hash(), rotate, clock.now())
        .await?;
    let what = match added {
        TerminalAdded::Created => "added",
        TerminalAdded::Rotated => "has a new token (the old one no longer works)",
        TerminalAdded::Reactivated => "is active again with a new token",
    };
    writeln!(out, "terminal {s}/{t} {what}.")?;
    writeln!(
        out,
        "Its token follows, shown only this once (HQ keeps only a hash); put it in the agent's token_file:"
    )?;
    writeln!(out, "{}", token.reveal())?;
    Ok(())
}

/// `terminal list`.
pub async fn terminal_list(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let rows = store.list_terminals().await?.into_iter().map(|t| {
        vec![
            t.store.as_str().to_owned(),
            t.terminal.as_str().to_owned(),
            fmt_time(t.created_at),
            fmt_opt_time(t.revoked_at),
            t.acked_through.get().to_string(),
            fmt_opt_time(t.last_push_at),
        ]
    });
    let header = [
        "STORE",
        "TERMINAL",
        "CREATED",
        "REVOKED",
        "ACKED_THROUGH",
        "LAST_PUSH",
    ];
    write_table(out, &header, rows.collect())
}

/// Writes `rows` under `header` in columns as wide as their widest cell (two spaces
/// apart; the last column is not padded).
fn write_table(
    out: &mut dyn Write,
    header: &[&str],
    rows: Vec<Vec<String>>,
) -> Result<(), AdminError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, &width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// `terminal revoke`.
pub async fn terminal_revoke(
    store: &dyn Store,
    clock: Clock,
    s: &StoreId,
    t: &TerminalId,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    store.revoke_terminal(s, t, clock.now()).await?;
    writeln!(out, "terminal {s}/{t} revoked: its token no longer works.")?;
    Ok(())
}

/// `rules set FILE`.
pub async fn rules_set(
    store: &dyn Store,
    clock: Clock,
    file: &Path,
    out: &mut dyn Write,
) -> Result<u64, AdminError> {
    let rules = config::load_rules(file).map_err(|e| AdminError::Rules(e.to_string()))?;
    // load_rules validates; checking again keeps this function safe for any caller.
    rules
        .validate()
        .map_err(|e| AdminError::Rules(format!("{}: {e}", file.display())))?;
    let version = store.set_rules(rules, clock.now()).await?;
    writeln!(out, "rules version {version} is now current")?;
    Ok(version)
}

/// Output format of `rules show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesFormat {
    /// The rules file format.
    Toml,
    /// JSON, as agents receive it.
    Json,
}

/// `rules show`.
pub async fn rules_show(
    store: &dyn Store,
    format: RulesFormat,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let rules: ProgramRules = store.current_rules().await?;
    let text = match format {
        RulesFormat::Toml => {
            toml::to_string(&rules).map_err(|e| AdminError::Render(e.to_string()))?
        }
        RulesFormat::Json => {
            serde_json::to_string_pretty(&rules).map_err(|e| AdminError::Render(e.to_string()))?
        }
    };
    writeln!(out, "{}", text.trim_end())?;
    Ok(())
}

/// `card block` / `card unblock`.
pub async fn card_block(
    store: &dyn Store,
    clock: Clock,
    card: &CardId,
    blocked: bool,
    reason: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let changed = store
        .set_blocked(card, blocked, reason, clock.now())
        .await?;
    let state = if blocked { "blocked" } else { "unblocked" };
    if changed {
        writeln!(
            out,
            "card {} {state}; terminals learn it at their next pull",
            card.masked()
        )?;
    } else {
        writeln!(out, "card {} was already {state}", card.masked())?;
    }
    Ok(())
}

/// `card show`.
pub async fn card_show(
    store: &dyn Store,
    card: &CardId,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let Some(report) = store.card_report(card, 20).await? else {
        writeln!(
            out,
            "card {}: HQ holds no record of it (balance 0)",
            card.masked()
        )?;
        return Ok(());
    };
    let s = &report.state;
    writeln!(out, "card       {}", s.card.masked())?;
    writeln!(out, "balance    {}", s.balance)?;
    writeln!(out, "pending    {}", s.pending)?;
    writeln!(
        out,
        "reserved   {} (open reservations, all tills)",
        s.reserved
    )?;
    writeln!(
        out,
        "leased     {} (open leases not yet spent, all tills)",
        s.leased
    )?;
    writeln!(out, "available  {}", s.available())?;
    writeln!(
        out,
        "tier       {} (spend over 12 months: {})",
        s.tier.as_deref().unwrap_or("-"),
        s.spend_12m
    )?;
    let blocked = match (&s.blocked, &report.block_reason) {
        (false, _) => "no".to_owned(),
        (true, Some(reason)) => format!("yes ({reason})"),
        (true, None) => "yes".to_owned(),
    };
    writeln!(out, "blocked    {blocked}")?;
    writeln!(out, "flags      {}", s.flags)?;
    writeln!(
        out,
        "welcome    {}",
        if s.welcome_given {
            "given"
        } else {
            "not given"
        }
    )?;
    writeln!(out, "updated    {}", fmt_time(report.updated_at))?;
    writeln!(out, "recent ledger rows, newest first:")?;
    for r in &report.recent {
        writeln!(
            out,
            "  {}  {:<16} balance {:>+8}  pending {:>+8}  {}",
            fmt_time(r.at),
            r.kind.as_str(),
            r.delta_balance.get(),
            r.delta_pending.get(),
            r.entry_id
                .map_or_else(|| "(HQ)".to_owned(), |id| format!("entry {id}"))
        )?;
    }
    Ok(())
}

/// `card token`: an app QR token signed with the current key, alone on its line.
pub async fn card_token(
    store: &dyn Store,
    clock: Clock,
    card: &CardId,
    ttl_secs: u32,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let (key_id, key) = store
        .current_signing_key()
        .await?
        .ok_or(AdminError::NoSigningKey)?;
    let now = clock.now().unix_timestamp();
    let token = AppToken {
        card: card.clone(),
        issued_at: now,
        expires_at: now.saturating_add(i64::from(ttl_secs.max(1))),
        key_id,
    }
    .sign(&key);
    writeln!(out, "{token}")?;
    Ok(())
}

/// `keys rotate`.
pub async fn keys_rotate(
    store: &dyn Store,
    clock: Clock,
    grace_days: u32,
    out: &mut dyn Write,
) -> Result<(), AdminError> {
    let key = generate_signing_key()?;
    let grace = Duration::days(i64::from(grace_days));
    let now = clock.now();
    let info = store.rotate_keys(&key, grace, now).await?;
    writeln!(
        out,
        "signing key {} is now current (public key {})",
        info.key_id, info.public_key
    )?;
    if info.key_id.0 > 1 {
        writeln!(
            out,
            "tokens signed by older keys stay valid until {}",
            fmt_time(now.checked_add(grace).unwrap_or(now))
        )?;
    }
    Ok(())
}

/// `keys list`.
pub async fn keys_list(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let rows = store.list_keys().await?.into_iter().map(|k| {
        vec![
            k.key_id.0.to_string(),
            fmt_time(k.created_at),
            k.valid_until
                .map_or_else(|| "(current)".to_owned(), fmt_time),
            k.public_key,
        ]
    });
    let header = ["KEY_ID", "CREATED", "VALID_UNTIL", "PUBLIC_KEY"];
    write_table(out, &header, rows.collect())
}

/// `verify`: prints every difference; true when there is none.
pub async fn verify(store: &dyn Store, out: &mut dyn Write) -> Result<bool, AdminError> {
    let audit = store.audit().await?;
    let mut differences: Vec<Difference> = Vec::new();
    for (card, detail) in &audit.unreadable {
        differences.push(Difference::Unreadable {
            card: card.clone(),
            detail: detail.clone(),
        });
    }
    for card in &audit.cards {
        differences.extend(check_card(card));
    }
    for terminal in &audit.terminals {
        differences.extend(check_terminal(terminal));
    }
    for d in &differences {
        writeln!(out, "DIFFERENCE {d}")?;
    }
    for warning in audit.cards.iter().filter_map(overcommitted) {
        writeln!(out, "WARNING {warning}")?;
    }
    writeln!(
        out,
        "verified {} cards and {} terminals: {}",
        audit.cards.len() + audit.unreadable.len(),
        audit.terminals.len(),
        if differences.is_empty() {
            "every balance matches its ledger".to_owned()
        } else {
            format!("{} differences", differences.len())
        }
    )?;
    Ok(differences.is_empty())
}

/// `report overdrafts`.
pub async fn report_overdrafts(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let overdrafts = store.overdrafts().await?;
    if overdrafts.is_empty() {
        writeln!(out, "no card has a negative balance")?;
    }
    for o in overdrafts {
        writeln!(out, "card {} balance {}", o.card.masked(), o.balance)?;
        for f in o.flagged {
            writeln!(
                out,
                "  {}  {}/{} seq {}  entry {}  {}: {}",
                fmt_time(f.at),
                f.store,
                f.terminal,
                f.seq,
                f.entry_id,
                f.kind,
                f.detail
            )?;
        }
    }
    Ok(())
}

/// `report flags`.
pub async fn report_flags(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let flags = store.flagged_entries().await?;
    if flags.is_empty() {
        writeln!(out, "no flagged entries")?;
    }
    for f in flags {
        writeln!(
            out,
            "{}  {}/{} seq {}  entry {}  card {}  {}: {}",
            fmt_time(f.at),
            f.store,
            f.terminal,
            f.seq,
            f.entry_id,
            f.card.masked(),
            f.kind,
            f.detail
        )?;
    }
    Ok(())
}

/// `report anomalies`.
pub async fn report_anomalies(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let anomalies = store.anomalies().await?;
    if anomalies.is_empty() {
        writeln!(out, "no anomalies")?;
    }
    for a in anomalies {
        writeln!(
            out,
            "{}  {}/{}  {}: {}",
            fmt_time(a.at),
            a.store,
            a.terminal,
            a.kind,
            a.detail
        )?;
    }
    Ok(())
}

/// `report quarantine`.
pub async fn report_quarantine(store: &dyn Store, out: &mut dyn Write) -> Result<(), AdminError> {
    let entries = store.quarantined().await?;
    if entries.is_empty() {
        writeln!(out, "no quarantined entries")?;
    }
    for q in entries {
        let state = q.released_at.map_or_else(
            || "QUARANTINED".to_owned(),
            |at| format!("applied by a retry at {}", fmt_time(at)),
        );
        writeln!(
            out,
            "#{}  {}  {}/{} seq {}  entry {}  card {}  {state}  {}: {}",
            q.id,
            fmt_time(q.quarantined_at),
            q.store,
            q.terminal,
            q.seq,
            q.entry_id,
            q.card
                .as_ref()
                .map_or_else(|| "-".to_owned(), |c| c.masked().to_string()),
            q.kind,
            q.reason
        )?;
    }
    Ok(())
}

/// `quarantine retry ID`: true when the entry is applied (now or before).
pub async fn quarantine_retry(
    store: &dyn Store,
    clock: Clock,
    id: i64,
    out: &mut dyn Write,
) -> Result<bool, AdminError> {
    let outcome = store.retry_quarantined(id, clock.now()).await?;
    writeln!(out, "quarantined entry #{id}: {outcome}")?;
    Ok(!matches!(outcome, RetryOutcome::StillQuarantined(_)))
}

/// `jobs run`.
pub async fn jobs_run(
    store: &dyn Store,
    now: OffsetDateTime,
    after: AbandonAfter,
    out: &mut dyn Write,
) -> Result<RunReport, AdminError> {
    let report = crate::jobs::run_once(store, now, after).await?;
    writeln!(out, "ledger job at {}: {report}", fmt_time(now))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_line_up_whatever_the_cell_widths() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["store-0042-north".into(), "t".into(), "z".into()],
            vec!["s".into(), "till-3".into(), "zz".into()],
        ];
        write_table(&mut out, &["STORE", "TERMINAL", "LAST"], rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "STORE             TERMINAL  LAST\n\
             store-0042-north  t         z\n\
             s                 till-3    zz\n"
        );
    }
}
