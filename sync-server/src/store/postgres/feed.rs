//! What agents read on PostgreSQL: the change feed (`pull`) and live balances, each in
//! one REPEATABLE READ read-only transaction, so `acked_through` and the balances come
//! from the same snapshot.
//!
//! # The cursor
//!
//! Transactions commit out of order here, so "everything after counter N" would
//! skip a change whose transaction drew a lower number but committed after the pull.
//! Instead every card change and block event records the 64-bit id of its
//! transaction (`loyalty_xid()`), and a pull answers only changes whose transaction
//! id is below the xmin of its own snapshot: every transaction below xmin has
//! finished, and every later writer gets a larger id, so nothing can still commit
//! into the range a pull has answered. A cursor is a position `(xid, card)`:
//!
//! * `x<xid>`: every change with a transaction id below `xid` was delivered (the
//!   usual cursor, `xid` being the xmin of the last pull's snapshot);
//! * `x<xid>:<card>`: a full page stopped inside transaction `xid`; cards up to
//!   `(xid, card)` were delivered.
//!
//! The next pull answers cards with `(xid, card)` past the cursor and `xid` below its
//! own snapshot's xmin, in that order. A card changed again later comes again with
//! its newer state. Block events are answered by transaction id only, once their
//! whole transaction is behind the cursor; each carries the card's current state in
//! the snapshot, so events that arrive out of their commit order still leave the
//! agent with HQ's latest word.

use super::rows::card_row;
use super::{admin, rules, sql};
use crate::store::encode::{
    CARD_COLUMNS, RulesCache, card, card_balance, unseen_card_balance, unsigned,
};
use crate::store::{PullRequest, StoreError, TerminalIdentity};
use deadpool_postgres::{Client, GenericClient, Transaction};
use protocol::wire::{
    BlockChange, LiveBalanceResponse, PROTOCOL_VERSION, PublicKeyInfo, PullResponse,
};
use protocol::{CardId, Seq};
use time::OffsetDateTime;
use tokio_postgres::IsolationLevel;

/// A feed position; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Changes of transactions below this id are delivered (and those of this one up
    /// to `card`).
    pub xid: i64,
    /// Empty: nothing of transaction `xid` itself was delivered.
    pub card: String,
}

impl Cursor {
    /// The start of the feed.
    pub const START: Self = Self {
        xid: 0,
        card: String::new(),
    };

    /// Parses a cursor this backend issued. A plain number is a cursor of the SQLite
    /// backend (an agent of an HQ that moved to PostgreSQL): such an agent starts
    /// over and receives every balance once.
    pub fn parse(cursor: Option<&str>) -> Result<Self, StoreError> {
        let s = match cursor.map(str::trim) {
            None | Some("") => return Ok(Self::START),
            Some(s) => s,
        };
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Self::START);
        }
        let bad = || StoreError::BadCursor(s.to_owned());
        let rest = s.strip_prefix('x').ok_or_else(bad)?;
        let (xid, card) = rest.split_once(':').unwrap_or((rest, ""));
        let xid = xid
            .parse::<i64>()
            .ok()
            .filter(|x| *x >= 0)
            .ok_or_else(bad)?;
        if !card.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Self {
            xid,
            card: card.to_owned(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.card.is_empty() {
            write!(f, "x{}", self.xid)
        } else {
            write!(f, "x{}:{}", self.xid, self.card)
        }
    }
}

/// A read-only transaction on one snapshot.
async fn snapshot(client: &mut Client) -> Result<Transaction<'_>, StoreError> {
    Ok(client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?)
}

async fn acked_through(
    tx: &impl GenericClient,
    terminal: &TerminalIdentity,
) -> Result<Seq, StoreError> {
    let row = sql::query_opt(
        tx,
        "SELECT acked_through FROM terminals WHERE id = $1 AND revoked_at IS NULL",
        &[&terminal.key],
    )
    .await?;
    match row {
        Some(r) => Ok(Seq(unsigned(r.try_get(0)?)?)),
        None => Err(StoreError::Revoked(terminal.to_string())),
    }
}

/// See [`crate::store::Store::pull`].
pub async fn pull(
    client: &mut Client,
    cache: &RulesCache,
    terminal: &TerminalIdentity,
    request: PullRequest<'_>,
    now: OffsetDateTime,
) -> Result<PullResponse, StoreError> {
    let mut cursor = Cursor::parse(request.cursor)?;
    let page = i64::from(request.page_size.max(1));
    let tx = snapshot(client).await?;
    // The first statement takes the transaction's snapshot; its xmin bounds the page.
    let upper: i64 = sql::query_one(
        &tx,
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
        &[],
    )
    .await?
    .try_get(0)?;
    let acked = acked_through(&tx, terminal).await?;
    // A cursor from the future (HQ restored from a backup, or another database)
    // cannot be trusted: the agent gets everything again.
    if cursor.xid > upper {
        cursor = Cursor::START;
    }
    let current = rules::current(&tx, cache).await?;
    let rules = (current.version > request.rules_version).then(|| (*current).clone());
    let keys = admin::list_keys(&tx)
        .await?
        .into_iter()
        .map(|k| PublicKeyInfo {
            key_id: k.key_id,
            public_key: k.public_key,
            valid_until: k.valid_until,
        })
        .collect();
    let rows = sql::query(
        &tx,
        &format!(
            "SELECT c.change_xid, {} FROM cards c
             WHERE (c.change_xid, c.card) > ($2, $3) AND c.change_xid < $4
               AND EXISTS (SELECT 1 FROM store_cards s WHERE s.store = $1 AND s.card = c.card)
             ORDER BY c.change_xid, c.card LIMIT $5",
            prefixed(CARD_COLUMNS, "c.")
        ),
        &[
            &terminal.store.as_str(),
            &cursor.xid,
            &cursor.card,
            &upper,
            &page,
        ],
    )
    .await?;
    let mut balances = Vec::with_capacity(rows.len());
    let mut last = None;
    for r in &rows {
        let state = card_row(r, 1)?.into_state()?;
        last = Some(Cursor {
            xid: r.try_get(0)?,
            card: state.card.as_str().to_owned(),
        });
        balances.push(card_balance(state, now));
    }
    let more = i64::try_from(balances.len()).unwrap_or(i64::MAX) >= page;
    let next = match last {
        Some(last) if more => last,
        _ => Cursor {
            xid: upper,
            card: String::new(),
        },
    };
    // Block events of transactions wholly behind the new cursor and not behind the old.
    let rows = sql::query(
        &tx,
        "SELECT e.card, c.blocked FROM block_events e JOIN cards c ON c.card = e.card
         WHERE e.xid >= $1 AND e.xid < $2 ORDER BY e.xid, e.id",
        &[&cursor.xid, &next.xid],
    )
    .await?;
    let blocked = rows
        .iter()
        .map(|r| {
            let c: String = r.try_get(0)?;
            Ok(BlockChange {
                card: card(&c)?,
                blocked: r.try_get(1)?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    tx.commit().await?;
    Ok(PullResponse {
        protocol: PROTOCOL_VERSION,
        cursor: next.to_string(),
        more,
        acked_through: acked,
        rules,
        blocked,
        keys,
        balances,
    })
}

/// `a, b` with each column prefixed (`c.a, c.b`).
fn prefixed(columns: &str, prefix: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// See [`crate::store::Store::live_balance`].
pub async fn live_balance(
    client: &mut Client,
    terminal: &TerminalIdentity,
    card_id: &CardId,
    now: OffsetDateTime,
) -> Result<LiveBalanceResponse, StoreError> {
    let tx = snapshot(client).await?;
    let acked = acked_through(&tx, terminal).await?;
    let row = sql::query_opt(
        &tx,
        &format!("SELECT {CARD_COLUMNS} FROM cards WHERE card = $1"),
        &[&card_id.as_str()],
    )
    .await?;
    tx.commit().await?;
    let balance = match row {
        Some(row) => card_balance(card_row(&row, 0)?.into_state()?, now),
        None => unseen_card_balance(card_id, now),
    };
    Ok(LiveBalanceResponse {
        protocol: PROTOCOL_VERSION,
        acked_through: acked,
        balance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_foreign_ones_start_over() {
        for c in [
            Cursor::START,
            Cursor {
                xid: 7_000_123,
                card: String::new(),
            },
            Cursor {
                xid: 42,
                card: "4006381333931".into(),
            },
        ] {
            assert_eq!(Cursor::parse(Some(&c.to_string())).unwrap(), c);
        }
        assert_eq!(Cursor::parse(None).unwrap(), Cursor::START);
        assert_eq!(Cursor::parse(Some("1234")).unwrap(), Cursor::START);
        for bad in ["x", "y12", "x-1", "x12:abc", "x1:2:3"] {
            assert!(
                matches!(Cursor::parse(Some(bad)), Err(StoreError::BadCursor(_))),
                "{bad}"
            );
        }
        assert_eq!(prefixed("a, b", "c."), "c.a, c.b");
    }
}
