//! What HQ IT reviews: anomalies (refused pushes), flagged entries, overdrawn cards.

use super::done;
use crate::store::Result;
use crate::store::backend::{Access, Attempt, Op};
use crate::store::statements::Statements;
use crate::store::{Anomaly, FlaggedEntry, Overdraft};

/// Records an anomaly in its own transaction.
pub struct RecordAnomaly(pub Anomaly);

impl Op for RecordAnomaly {
    type Out = ();
    const ACCESS: Access = Access::WriteOne;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<()>> {
        done(c.insert_anomaly(&self.0).await)
    }
}

/// Every anomaly, oldest first.
pub struct Anomalies;

impl Op for Anomalies {
    type Out = Vec<Anomaly>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<Anomaly>>> {
        done(c.anomalies().await)
    }
}

/// Every flagged entry, oldest first.
pub struct Flagged;

impl Op for Flagged {
    type Out = Vec<FlaggedEntry>;
    const ACCESS: Access = Access::Read;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<FlaggedEntry>>> {
        done(c.flagged_entries(None).await)
    }
}

/// Cards with a negative balance, most negative first, each with its flagged
/// entries, from one snapshot.
pub struct Overdrafts;

impl Op for Overdrafts {
    type Out = Vec<Overdraft>;
    const ACCESS: Access = Access::Snapshot;

    async fn run<C: Statements>(&mut self, c: &mut C) -> Result<Attempt<Vec<Overdraft>>> {
        let cards = c.overdrawn_cards().await?;
        let mut out = Vec::with_capacity(cards.len());
        for (card, balance) in cards {
            let flagged = c.flagged_entries(Some(&card)).await?;
            out.push(Overdraft {
                card,
                balance,
                flagged,
            });
        }
        done(Ok(out))
    }
}
