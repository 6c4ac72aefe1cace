//! The offline redemption policy.
//!
//! While HQ is unreachable a till cannot know what other stores did with a card, so
//! redemptions are bounded the way card terminals bound offline payments: limits
//! stack, and the first one reached refuses the redemption with a code naming it.
//! Accrual is never limited. In a standalone store, or when HQ just confirmed the
//! balance, none of this applies.

use config::agent::OfflineSection;
use protocol::Points;
use protocol::escrow::LeaseRefusal;

/// What this terminal has already redeemed offline, as the caps count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfflineUsage {
    /// Offline redemptions (committed or held) of this card today.
    pub card_today: Points,
    /// Offline redemptions (committed or held) of all cards today.
    pub terminal_today: Points,
    /// Offline redemptions of this card since HQ was last reached.
    pub consecutive_for_card: u32,
    /// Seconds since HQ last answered (`None`: never).
    pub secs_since_contact: Option<i64>,
}

/// The offline limit that refused a redemption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfflineLimit {
    /// HQ was never reached from this till.
    NeverSynced,
    /// HQ unreachable for longer than `max_offline_hours`.
    TooLong,
    /// `max_consecutive_per_card` offline redemptions since HQ was last reached.
    ConsecutiveCap,
    /// `max_redeem_per_receipt`.
    ReceiptCap,
    /// `max_redeem_per_card_per_day`.
    CardDailyCap,
    /// `max_redeem_per_terminal_per_day`.
    TerminalDailyCap,
    /// Escrow mode: this till holds no lease of the card.
    NoAllowance,
    /// Escrow mode: the card's lease here holds fewer points than asked.
    AllowanceShort,
    /// Escrow mode: the card's lease here expires before the hold would.
    AllowanceExpiring,
    /// `redemption = "none"`: no redemption while HQ is unreachable.
    RedemptionOff,
}

impl OfflineLimit {
    /// Every limit (the till API's document lists their codes).
    pub const ALL: [Self; 10] = [
        Self::NeverSynced,
        Self::TooLong,
        Self::ConsecutiveCap,
        Self::ReceiptCap,
        Self::CardDailyCap,
        Self::TerminalDailyCap,
        Self::NoAllowance,
        Self::AllowanceShort,
        Self::AllowanceExpiring,
        Self::RedemptionOff,
    ];

    /// The stable code naming the limit (the till API's error code, and what a quote
    /// reports in `limited_by`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NeverSynced => "offline_never_synced",
            Self::TooLong => "offline_too_long",
            Self::ConsecutiveCap => "offline_consecutive_cap",
            Self::ReceiptCap => "offline_receipt_cap",
            Self::CardDailyCap => "offline_card_daily_cap",
            Self::TerminalDailyCap => "offline_terminal_daily_cap",
            Self::NoAllowance => "offline_no_allowance",
            Self::AllowanceShort => "offline_allowance_short",
            Self::AllowanceExpiring => "offline_allowance_expiring",
            Self::RedemptionOff => "offline_redemption_off",
        }
    }
}

/// A refused redemption: the limit and an explanation for the cashier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The limit that applied.
    pub limit: OfflineLimit,
    /// What the limit is and how much of it is used.
    pub message: String,
}

impl From<LeaseRefusal> for Refusal {
    /// Escrow mode's refusals, as the till sees them.
    fn from(r: LeaseRefusal) -> Self {
        let limit = match r {
            LeaseRefusal::NoLease => OfflineLimit::NoAllowance,
            LeaseRefusal::Insufficient { .. } => OfflineLimit::AllowanceShort,
            LeaseRefusal::Expiring => OfflineLimit::AllowanceExpiring,
        };
        Self {
            limit,
            message: format!("HQ is unreachable: {r}"),
        }
    }
}

/// The refusal of every offline redemption when `redemption = "none"`.
pub fn redemption_off() -> Refusal {
    Refusal {
        limit: OfflineLimit::RedemptionOff,
        message: "HQ is unreachable and this till redeems no points offline ([offline] redemption = \"none\")".into(),
    }
}

/// The most points the offline caps still allow on one receipt for this card (before
/// the balance and the program rules, which apply separately). Zero with the reason
/// when nothing is allowed.
pub fn offline_headroom(usage: &OfflineUsage, limits: &OfflineSection) -> Result<Points, Refusal> {
    let max_secs = i64::try_from(limits.max_offline_hours.saturating_mul(3600)).unwrap_or(i64::MAX);
    match usage.secs_since_contact {
        None => {
            return Err(Refusal {
                limit: OfflineLimit::NeverSynced,
                message: "HQ has never been reached from this till: no offline redemption".into(),
            });
        }
        Some(secs) if secs > max_secs => {
            return Err(Refusal {
                limit: OfflineLimit::TooLong,
                message: format!(
                    "HQ unreachable for {}h, more than max_offline_hours = {}: no offline redemption",
                    secs / 3600,
                    limits.max_offline_hours
                ),
            });
        }
        Some(_) => {}
    }
    if usage.consecutive_for_card >= limits.max_consecutive_per_card {
        return Err(Refusal {
            limit: OfflineLimit::ConsecutiveCap,
            message: format!(
                "this card already made {} offline redemptions since HQ was last reached (max_consecutive_per_card = {})",
                usage.consecutive_for_card, limits.max_consecutive_per_card
            ),
        });
    }
    let card_left = limits.max_redeem_per_card_per_day.get() - usage.card_today.get();
    let terminal_left = limits.max_redeem_per_terminal_per_day.get() - usage.terminal_today.get();
    Ok(Points(
        limits
            .max_redeem_per_receipt
            .get()
            .min(card_left)
            .min(terminal_left)
            .max(0),
    ))
}

/// Checks one offline redemption of `ask` points against every cap.
pub fn check_offline(
    ask: Points,
    usage: &OfflineUsage,
    limits: &OfflineSection,
) -> Result<(), Refusal> {
    offline_headroom(usage, limits)?;
    if ask > limits.max_redeem_per_receipt {
        return Err(Refusal {
            limit: OfflineLimit::ReceiptCap,
            message: format!(
                "offline, one receipt may redeem at most {} points (max_redeem_per_receipt)",
                limits.max_redeem_per_receipt
            ),
        });
    }
    let card_total = usage.card_today.get().saturating_add(ask.get());
    if card_total > limits.max_redeem_per_card_per_day.get() {
        return Err(Refusal {
            limit: OfflineLimit::CardDailyCap,
            message: format!(
                "offline, this card may redeem at most {} points a day here; {} already used today",
                limits.max_redeem_per_card_per_day, usage.card_today
            ),
        });
    }
    let terminal_total = usage.terminal_today.get().saturating_add(ask.get());
    if terminal_total > limits.max_redeem_per_terminal_per_day.get() {
        return Err(Refusal {
            limit: OfflineLimit::TerminalDailyCap,
            message: format!(
                "offline, this till may redeem at most {} points a day; {} already used today",
                limits.max_redeem_per_terminal_per_day, usage.terminal_today
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> OfflineSection {
        OfflineSection {
            max_redeem_per_card_per_day: Points(1_000),
            max_redeem_per_terminal_per_day: Points(1_500),
            max_redeem_per_receipt: Points(500),
            max_consecutive_per_card: 2,
            max_offline_hours: 24,
            ..OfflineSection::default()
        }
    }

    fn usage() -> OfflineUsage {
        OfflineUsage {
            secs_since_contact: Some(60),
            ..OfflineUsage::default()
        }
    }

    fn code(r: Result<(), Refusal>) -> &'static str {
        r.err().map_or("ok", |r| r.limit.as_str())
    }

    #[test]
    fn within_every_cap_an_offline_redemption_is_allowed() {
        assert_eq!(code(check_offline(Points(500), &usage(), &limits())), "ok");
    }

    #[test]
    fn each_cap_refuses_with_its_own_code() {
        assert_eq!(
            code(check_offline(Points(501), &usage(), &limits())),
            "offline_receipt_cap"
        );
        let u = OfflineUsage {
            card_today: Points(900),
            ..usage()
        };
        assert_eq!(
            code(check_offline(Points(101), &u, &limits())),
            "offline_card_daily_cap"
        );
        let u = OfflineUsage {
            terminal_today: Points(1_400),
            ..usage()
        };
        assert_eq!(
            code(check_offline(Points(101), &u, &limits())),
            "offline_terminal_daily_cap"
        );
        let u = OfflineUsage {
            consecutive_for_card: 2,
            ..usage()
        };
        assert_eq!(
            code(check_offline(Points(1), &u, &limits())),
            "offline_consecutive_cap"
        );
    }

    #[test]
    fn no_offline_redemption_after_max_offline_hours_or_before_any_contact() {
        let u = OfflineUsage {
            secs_since_contact: Some(24 * 3600 + 1),
            ..usage()
        };
        assert_eq!(
            code(check_offline(Points(1), &u, &limits())),
            "offline_too_long"
        );
        let u = OfflineUsage {
            secs_since_contact: None,
            ..usage()
        };
        assert_eq!(
            code(check_offline(Points(1), &u, &limits())),
            "offline_never_synced"
        );
    }

    #[test]
    fn headroom_is_the_tightest_cap() {
        let u = OfflineUsage {
            card_today: Points(700),
            ..usage()
        };
        assert_eq!(offline_headroom(&u, &limits()), Ok(Points(300)));
        let u = OfflineUsage {
            terminal_today: Points(2_000),
            ..usage()
        };
        assert_eq!(offline_headroom(&u, &limits()), Ok(Points(0)));
    }
}
