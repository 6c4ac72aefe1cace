//! The push's statements on PostgreSQL: each group of [`PushRows`] is one pipelined
//! flight ([`sql::flight`]), so a push costs two round trips whatever its size:
//!
//! 1. `START TRANSACTION` with the push's planner settings ([`PUSH_COSTS`],
//!    [`KEYS_ONLY`]), lock the terminal's row, what HQ holds of the batch's seq
//!    range, the rules version (and the JSON of versions the cache lacks), then
//!    lock the batch's cards that have a row in card-id order and read their
//!    reservations, leases and open lots ([`card_reads`]): the server runs a
//!    flight's statements in the order sent, so the cards are locked after the
//!    terminal and every read comes after the locks. The card reads are the whole
//!    batch's, asked for before HQ knows which entries are new; a batch that
//!    repeats entries HQ holds (a retry) takes its new entries' in a flight of
//!    their own, as all pushes did before (`lock_and_read_cards`): the extra locks
//!    of the first flight are the same cards' or more, taken in the same order;
//! 2. every write as one statement ([`write`]: a sub-statement per table, arrays
//!    through `unnest`; cards HQ never held are inserted with their figures; the
//!    ack; the store's KPI rows last), then `COMMIT`. Every lock the push took
//!    (terminal, cards, the per-store KPI rows all of a store's tills update) is
//!    released with that flight's answer instead of one HQ turn and one more round
//!    trip later.
//!
//! Only a card whose cached spend is stale (rare: the ledger job recomputes it) adds
//! a round trip, before the write flight.
//!
//! A failing statement aborts the transaction, so the flight's `COMMIT` rolls the
//! transaction back: nothing of a failed write flight is ever committed. The write
//! statement's failure says why: a clash of the entry rows with the uniqueness
//! constraints is the refusal it always was; a card another push inserted between
//! this one's locks and writes fails the new cards' insert on the card's key, and the
//! push starts over in a new transaction (see [`cards::INSERT_NEW_CARDS`]); a
//! serialization failure or deadlock is retried as before ([`super::retry`]).

use super::session::{self, PgSession};
use super::{cards, escrow, rules, sql, terminals};
use crate::store::Result;
use crate::store::encode::signed;
use crate::store::rows::Columns;
use crate::store::statements::{
    CardReads, CardState, Head, HeadReads, Locked, PushRows, PushWrites, Written,
};
use deadpool_postgres::Client;
use protocol::ReceiptId;
use std::collections::HashSet;

mod write;

/// The stored JSON of the rules versions among `versions`.
async fn rules_bodies(c: &Client, versions: &[u64]) -> Result<Vec<(u64, String)>> {
    if versions.is_empty() {
        return Ok(Vec::new());
    }
    let versions = versions
        .iter()
        .map(|v| signed(*v))
        .collect::<Result<Vec<i64>>>()?;
    sql::all(c, RULES_BODIES, &[&versions], |r| {
        Ok((r.counter(0)?, r.text(1)?))
    })
    .await
}

/// The statement of [`rules_bodies`].
const RULES_BODIES: &str = "SELECT version, body FROM rules WHERE version = ANY($1)";

/// Sends the held-back `START TRANSACTION`, if any.
pub(super) async fn begin(c: &Client, begin: Option<&str>) -> Result<()> {
    if let Some(sql) = begin {
        c.batch_execute(sql).await?;
    }
    Ok(())
}

/// How a push's transaction plans, besides [`PUSH_COSTS`]: no sequential scans.
/// Every read and write of a push finds its rows by key, so this costs it nothing,
/// and it lets the push cache the card locks, open lots and reservations
/// ([`sql::Plan::InPush`]) instead of parsing and planning them at every run: a
/// generic plan made under it uses the key whatever the statistics said when it was
/// made (an index scan was always possible; a sequential scan of a small table
/// looked cheaper). `LOCAL`, as [`PUSH_COSTS`].
pub(super) const KEYS_ONLY: &str = "SET LOCAL enable_seqscan = off";

/// Sends the held-back `START TRANSACTION` of a push, if any, with the push's
/// planner settings in the same message (one simple query, no round trip of its
/// own); the settings alone in a transaction begun already.
async fn begin_push(c: &Client, begin: Option<&str>) -> Result<()> {
    match begin {
        Some(sql) => c.batch_execute(&with_push_settings(sql)).await?,
        None => c.batch_execute(&push_settings()).await?,
    }
    Ok(())
}

/// `begin` (a `START TRANSACTION`) followed by the push's planner settings, as one
/// simple query.
pub(super) fn with_push_settings(begin: &str) -> String {
    format!("{begin}; {}", push_settings())
}

/// The push's planner settings ([`PUSH_COSTS`], [`KEYS_ONLY`]), as one simple query.
fn push_settings() -> String {
    format!("{PUSH_COSTS}; {KEYS_ONLY}")
}

/// How a push's transaction plans: a random page read costs about a sequential one. The
/// statements that read a batch by key were planned for their arrays (the card locks
/// and update, `cards::lock_sorted` and `cards::write_cards`; the batch's reservations,
/// `escrow::reservations`; the cards' update still is), and with the default cost (4, a
/// spinning disk's) 500 keys were costed cheaper as a sequential scan than as 500
/// probes of the key: at 20,000 cards each push of the backlog benchmark read every
/// card twice, hashing them all for the update (about 14 of its 17 ms, `EXPLAIN
/// ANALYZE`), and every reservation ever written (settled rows stay), costs that grow
/// with the chain. The pages a push touches (its keys' index pages and rows, the
/// tables' right edges) are in memory, where a probe costs what PostgreSQL's
/// documentation suggests for cached data. `LOCAL`: the setting ends with the
/// transaction, so no other use of the pooled connection plans with it.
const PUSH_COSTS: &str = "SET LOCAL random_page_cost = 1.1";

/// The statements of [`card_reads`], in the order sent; cached, under the push's
/// settings (`push_settings`, sent in the push's first flight).
fn card_read_statements() -> [&'static str; 4] {
    [
        cards::LOCK_CARDS.as_str(),
        escrow::RESERVATIONS.as_str(),
        escrow::LEASES.as_str(),
        cards::OPEN_LOTS.as_str(),
    ]
}

/// Locks the cards among `keys` (sorted) that have a row, then reads the
/// reservations, leases and open lots `reads` names: statements of one flight.
async fn card_reads(c: &Client, keys: &[&str], reads: CardReads<'_>) -> Result<CardState> {
    let in_push = sql::Plan::InPush;
    // One read for both kinds of receipt, each by key: a settled row of an open
    // receipt settles nothing (`settle` leaves it), so it may come back too.
    let receipts: Vec<ReceiptId> = reads
        .receipts
        .iter()
        .chain(reads.open_receipts)
        .cloned()
        .collect();
    let (locked, reservations, leases, open_lots) = tokio::join!(
        cards::lock_sorted(c, keys, in_push),
        escrow::reservations(c, reads.terminal, &receipts, in_push),
        escrow::leases(c, reads.leases),
        cards::open_lots(c, reads.consuming, in_push),
    );
    Ok(CardState {
        locked: Locked {
            cards: locked?,
            created: HashSet::new(),
        },
        reservations: reservations?,
        leases: leases?,
        open_lots: open_lots?,
    })
}

impl PushRows for PgSession<'_> {
    async fn push_head(&mut self, reads: HeadReads<'_>) -> Result<Head> {
        let start = self.take_begin();
        let c = self.client();
        let key = reads.terminal;
        // The card reads come after the terminal's lock in the same flight: the
        // server runs a flight's statements in the order sent.
        let card_keys = cards::sorted_keys(reads.cards.cards);
        let mut statements = vec![
            terminals::LOCK_TERMINAL,
            terminals::HELD,
            rules::RULES_VERSION,
            RULES_BODIES,
        ];
        statements.extend(card_read_statements());
        let (began, terminal, held, rules_version, bodies, cards) =
            sql::flight(c, &statements, async {
                tokio::join!(
                    begin_push(c, start),
                    terminals::lock_terminal(c, key),
                    async {
                        match reads.range {
                            Some((from, to)) => terminals::held(c, key, from, to).await,
                            None => Ok(Vec::new()),
                        }
                    },
                    rules::rules_version(c),
                    rules_bodies(c, reads.rules),
                    async { card_reads(c, &card_keys, reads.cards).await.map(Some) },
                )
            })
            .await?;
        began?;
        Ok(Head {
            terminal: terminal?,
            held: held?,
            rules_version: rules_version?,
            rules: bodies?,
            cards: cards?,
        })
    }

    async fn lock_and_read_cards(&mut self, reads: CardReads<'_>) -> Result<CardState> {
        let keys = cards::sorted_keys(reads.cards);
        let c = self.conn().await?;
        sql::flight(c, &card_read_statements(), card_reads(c, &keys, reads)).await?
    }

    async fn write_push(&mut self, w: &PushWrites<'_>) -> Result<Written> {
        let params = write::write_params(w)?;
        let c = self.conn().await?;
        let (written, committed) = sql::flight(c, &[write::WRITE_PUSH.as_str()], async {
            tokio::join!(
                write::write(c, w, &params),
                session::commit_in_flight(c, true)
            )
        })
        .await?;
        // Answered: the transaction is over, committed or (after the statement
        // failed) rolled back by that `COMMIT`.
        committed?;
        self.ended();
        written
    }
}

#[cfg(test)]
mod tests;
