//! The marketing reports: what the program is worth. Each is a pure module over what
//! the store reads, rendered as JSON for scripts or a table for people; the loaders
//! here are the one place the CLI, the HTTP endpoint and the dashboard get them from.

pub mod clv;
pub mod kpi;
pub mod promotion_figures;
pub mod tier_figures;

use crate::ledger::kpi::Period;
use crate::store::{Store, StoreError};
use protocol::StoreId;
use time::OffsetDateTime;

/// Why a report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The figures could not be computed.
    #[error(transparent)]
    Kpi(#[from] kpi::KpiError),
}

/// The KPI report of `period` for one store or the chain, at `now`.
pub async fn load_kpi(
    store: &dyn Store,
    period: Period,
    store_id: Option<&StoreId>,
    now: OffsetDateTime,
) -> Result<kpi::KpiReport, ReportError> {
    let inputs = store.kpi_inputs(period, store_id, now).await?;
    let rules = store.current_rules().await?;
    Ok(kpi::build(
        &period,
        store_id,
        &inputs,
        rules.point_value_minor,
    )?)
}
