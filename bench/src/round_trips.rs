//! Round trips of one 10-entry push to PostgreSQL (`pg_push_round_trips`), counted on
//! the wire by a protocol-aware proxy ([`FlightCounter`]) between the store and the
//! database: the push of known cards, after a warm-up push that made them known and
//! prepared the connection's statements (one connection, so it is that one).

use crate::hq::HqDb;
use protocol::{StoreId, TerminalId};
use sync_server::keys::TerminalToken;
use sync_server::ledger::batch::Batch;
use sync_server::store::Store;
use sync_server::store::postgres::PgStore;
use testkit::entries::sale;
use testkit::pg_flights::FlightCounter;
use time::OffsetDateTime;

/// The cards the pushes touch.
const CARDS: [&str; 5] = [
    "4006381333931",
    "4006381333948",
    "4006381333955",
    "4006381333962",
    "4006381333979",
];

/// The round trips of the measured push.
pub fn measure(db: &HqDb) -> anyhow::Result<u64> {
    let HqDb::Postgres(db) = db else {
        anyhow::bail!("round trips are counted on PostgreSQL only");
    };
    let (counter, url) = FlightCounter::for_url(db.url())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let store = PgStore::open(&format!("{url}?pool_max_size=1")).await?;
        let token = TerminalToken::generate()?;
        let now = OffsetDateTime::now_utc();
        store
            .add_terminal(
                &StoreId::parse("store-1")?,
                &TerminalId::parse("till-1")?,
                &token.hash(),
                false,
                now,
            )
            .await?;
        let terminal = store
            .authenticate(&token.hash())
            .await?
            .ok_or_else(|| anyhow::anyhow!("the terminal just added is not known"))?;
        let card = |seq: u64| CARDS[(seq % 5) as usize];
        // Warm-up: 5 points per sale on each card.
        let warm = (1..=10).map(|seq| sale(seq, card(seq), 0)).collect();
        store.push(&terminal, Batch::new(warm)?, now).await?;
        // Measured: accruals and redemptions (lots read and consumed) on known cards.
        // The proxy may count a flight twice when it reaches it in pieces on a loaded
        // machine, never a round trip less: the least of identical pushes is the count.
        let mut least = u64::MAX;
        for round in 1..=3u64 {
            let measured = (round * 10 + 1..=round * 10 + 10)
                .map(|seq| sale(seq, card(seq), if seq % 2 == 0 { 3 } else { 0 }))
                .collect();
            counter.reset();
            let out = store.push(&terminal, Batch::new(measured)?, now).await?;
            anyhow::ensure!(
                out.applied == 10,
                "the measured push applied {}",
                out.applied
            );
            least = least.min(counter.flights());
        }
        Ok(least)
    })
}
