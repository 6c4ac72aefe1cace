//! The SQLite schema, as numbered migrations.
//!
//! Times are integer microseconds since the Unix epoch; points and money are integer
//! minor units; booleans are 0/1. The SQL stays close to what PostgreSQL accepts, so
//! the PostgreSQL backend's schema is a translation, not a redesign.

use rusqlite::OptionalExtension;
use rusqlite_migration::{HookError, HookResult, M, Migrations};

/// Every migration, oldest first. Never edit a released one: add the next.
///
/// The store runs them with foreign keys off (SQLite cannot change a CHECK constraint
/// in place: V2 rebuilds `entries`, which `ledger` and `flags` reference), and a
/// migration that rebuilds a table checks the foreign keys before it commits.
pub fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(V1),
        M::up(V2).foreign_key_check(),
        M::up(V3_QUARANTINE),
        M::up(V4),
        M::up(V5_PROMOTIONS_TIERS),
        M::up(V6_LEDGER_EXPIRY),
        M::up(V7_NO_SPEND_DROPS_INDEX),
        M::up_with_hook(V8_CHECKS_WITHOUT_IN_LISTS, checks_without_in_lists),
        M::up_with_hook(V9_DEFERRED_KEYS, deferred_keys),
        M::up_with_hook(V10_DEFERRED_ENTRY_TERMINAL, deferred_entry_terminal),
        M::up_with_hook(V11_NO_PUSH_TABLE_KEYS, no_push_table_keys),
        M::up(V12_PUSH_INDEXES),
        M::up(V13_STORE_FEED_POSITIONS),
    ])
}

/// Entries HQ stored without effect (`ledger::quarantine`): one record per entry,
/// released when a retry applied it.
const V3_QUARANTINE: &str = r#"
CREATE TABLE quarantine (
    id             INTEGER PRIMARY KEY,
    entry_id       TEXT NOT NULL UNIQUE REFERENCES entries (id),
    card           TEXT,
    kind           TEXT NOT NULL CHECK (kind IN ('overflow', 'out_of_limits', 'internal')),
    reason         TEXT NOT NULL,
    quarantined_at INTEGER NOT NULL,
    released_at    INTEGER
);
"#;

const V1: &str = r#"
-- Terminals and their bearer tokens (SHA-256 hex only). acked_through is the highest
-- contiguous seq HQ holds for the terminal.
CREATE TABLE terminals (
    id            INTEGER PRIMARY KEY,
    store         TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER,
    acked_through INTEGER NOT NULL DEFAULT 0 CHECK (acked_through >= 0),
    last_push_at  INTEGER,
    UNIQUE (store, terminal)
);

-- Every journal entry HQ applied, exactly once: (terminal, seq) and id are unique,
-- whatever the code above does.
CREATE TABLE entries (
    id            TEXT PRIMARY KEY,
    terminal_ref  INTEGER NOT NULL REFERENCES terminals (id),
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('sale', 'return', 'welcome')),
    card          TEXT,
    spend_minor   INTEGER NOT NULL,
    rules_version INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    body          TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (terminal_ref, seq)
);
-- Covering (spend_minor included): the tier spend of a card is read from the index alone.
CREATE INDEX entries_card_at ON entries (card, at, spend_minor) WHERE card IS NOT NULL;

-- Cached card totals; the ledger is the truth, `verify` compares.
CREATE TABLE cards (
    card          TEXT PRIMARY KEY,
    balance       INTEGER NOT NULL,
    pending       INTEGER NOT NULL,
    tier          TEXT,
    spend_12m     INTEGER NOT NULL,
    -- When the oldest entry counted in spend_12m leaves the 365-day window: the job
    -- recomputes exactly the cards whose moment has come.
    spend_drops_at INTEGER,
    welcome_given INTEGER NOT NULL,
    seen          INTEGER NOT NULL,
    blocked       INTEGER NOT NULL DEFAULT 0,
    block_reason  TEXT,
    flags         INTEGER NOT NULL DEFAULT 0,
    change_pos    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX cards_change_pos ON cards (change_pos);
CREATE INDEX cards_spend_drops ON cards (spend_drops_at) WHERE spend_drops_at IS NOT NULL;

-- Which store's entries mentioned which card: the balance feed of a store.
CREATE TABLE store_cards (
    store TEXT NOT NULL,
    card  TEXT NOT NULL REFERENCES cards (card),
    PRIMARY KEY (store, card)
) WITHOUT ROWID;

-- Parcels of points, for pending points and oldest-first expiry.
CREATE TABLE lots (
    id           INTEGER PRIMARY KEY,
    card         TEXT NOT NULL REFERENCES cards (card),
    kind         TEXT NOT NULL CHECK (kind IN ('accrual', 'welcome', 'restore')),
    source_entry TEXT,
    earned_at    INTEGER NOT NULL,
    matures_at   INTEGER,
    matured      INTEGER NOT NULL,
    expires_at   INTEGER,
    amount       INTEGER NOT NULL CHECK (amount > 0),
    remaining    INTEGER NOT NULL CHECK (remaining >= 0 AND remaining <= amount)
);
CREATE INDEX lots_open ON lots (card) WHERE remaining > 0;
CREATE INDEX lots_maturing ON lots (matures_at) WHERE matured = 0;
CREATE INDEX lots_expiring ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;

-- The append-only points ledger.
CREATE TABLE ledger (
    id            INTEGER PRIMARY KEY,
    card          TEXT NOT NULL REFERENCES cards (card),
    kind          TEXT NOT NULL CHECK (kind IN ('accrual', 'redemption', 'return_restore',
                      'return_reversal', 'welcome', 'maturation', 'expiry')),
    delta_balance INTEGER NOT NULL,
    delta_pending INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    entry_id      TEXT REFERENCES entries (id)
);
CREATE INDEX ledger_card ON ledger (card, id);

-- Entries applied although they broke a rule.
CREATE TABLE flags (
    id       INTEGER PRIMARY KEY,
    entry_id TEXT NOT NULL REFERENCES entries (id),
    card     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX flags_card ON flags (card);

-- Refused pushes and other protocol anomalies.
CREATE TABLE anomalies (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    store    TEXT NOT NULL,
    terminal TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);

-- Block and unblock events, in change-feed order.
CREATE TABLE block_events (
    pos     INTEGER PRIMARY KEY,
    card    TEXT NOT NULL,
    blocked INTEGER NOT NULL,
    reason  TEXT,
    at      INTEGER NOT NULL
);

-- Every rules version ever set (entries name the version they were made under).
CREATE TABLE rules (
    version INTEGER PRIMARY KEY CHECK (version >= 1),
    body    TEXT NOT NULL,
    set_at  INTEGER NOT NULL
);

-- App-token signing keys; valid_until NULL marks the current one.
CREATE TABLE signing_keys (
    key_id      INTEGER PRIMARY KEY,
    secret_hex  TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    valid_until INTEGER
);

-- The change feed's position: each card change and block event takes the next one in
-- its writing transaction. One writer at a time, so commit order = position order.
CREATE TABLE change_counter (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    pos INTEGER NOT NULL
);
INSERT INTO change_counter (id, pos) VALUES (1, 0);

-- What the ledger job last did: tiers follow the rules version they were computed
-- with, so a new rules version makes the next run recompute every tier once.
CREATE TABLE job_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    tiers_rules_version INTEGER NOT NULL
);
INSERT INTO job_state (id, tiers_rules_version) VALUES (1, 0);
"#;

/// Points never spent twice (issue 12): reservations, leases, app-token uses, the
/// card's cached reserved/leased figures, the terminal's lease-sync epoch, and the
/// entry kinds `release` and `lease_closed`.
const V2: &str = r#"
CREATE TABLE entries_v2 (
    id            TEXT PRIMARY KEY,
    terminal_ref  INTEGER NOT NULL REFERENCES terminals (id),
    seq           INTEGER NOT NULL CHECK (seq >= 1),
    at            INTEGER NOT NULL,
    kind          TEXT NOT NULL
                      CHECK (kind IN ('sale', 'return', 'welcome', 'release', 'lease_closed')),
    card          TEXT,
    spend_minor   INTEGER NOT NULL,
    rules_version INTEGER NOT NULL,
    content_hash  TEXT NOT NULL,
    body          TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    UNIQUE (terminal_ref, seq)
);
INSERT INTO entries_v2 SELECT * FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v2 RENAME TO entries;
CREATE INDEX entries_card_at ON entries (card, at, spend_minor) WHERE card IS NOT NULL;

-- Cached sums of the open reservations and leases (points - charged) of the card;
-- `verify` compares them with the rows below.
ALTER TABLE cards ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0);
ALTER TABLE cards ADD COLUMN leased INTEGER NOT NULL DEFAULT 0 CHECK (leased >= 0);

-- The last lease-sync epoch HQ answered for the terminal.
ALTER TABLE terminals ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;

-- Points held at HQ for one receipt of one terminal. Settled rows stay: a late ask
-- for a settled receipt is refused instead of holding points again.
CREATE TABLE reservations (
    terminal_ref INTEGER NOT NULL REFERENCES terminals (id),
    receipt_id   TEXT NOT NULL,
    card         TEXT NOT NULL,
    points       INTEGER NOT NULL CHECK (points >= 0),
    status       TEXT NOT NULL CHECK (status IN ('open', 'captured', 'released')),
    expires_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (terminal_ref, receipt_id)
);
CREATE INDEX reservations_open_card ON reservations (card, terminal_ref) WHERE status = 'open';
CREATE INDEX reservations_open_expiry ON reservations (expires_at) WHERE status = 'open';

-- Points of a card moved into one terminal's escrow, for offline redemption.
CREATE TABLE leases (
    id           TEXT PRIMARY KEY,
    terminal_ref INTEGER NOT NULL REFERENCES terminals (id),
    card         TEXT NOT NULL,
    points       INTEGER NOT NULL CHECK (points > 0),
    charged      INTEGER NOT NULL CHECK (charged >= 0 AND charged <= points),
    status       TEXT NOT NULL CHECK (status IN ('open', 'closed', 'reclaimed')),
    expires_at   INTEGER NOT NULL,
    granted_at   INTEGER NOT NULL
);
CREATE INDEX leases_open_terminal ON leases (terminal_ref, card) WHERE status = 'open';
CREATE INDEX leases_open_card ON leases (card) WHERE status = 'open';
CREATE INDEX leases_open_expiry ON leases (expires_at) WHERE status = 'open';

-- App-token uses (the token's id is a hash, never the token), forgotten a day after
-- the token expired.
CREATE TABLE token_uses (
    token_id     TEXT PRIMARY KEY,
    terminal_ref INTEGER NOT NULL REFERENCES terminals (id),
    scan_id      TEXT NOT NULL,
    card         TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER NOT NULL
);
CREATE INDEX token_uses_expiry ON token_uses (expires_at);
"#;

/// The KPI aggregates, kept current by each push in its own transaction
/// (`ledger::kpi` says what each entry adds). Days are Julian day numbers of the UTC
/// date. Entries applied before this migration are not in them.
const V4: &str = r#"
CREATE TABLE kpi_daily (
    day             INTEGER NOT NULL,
    store           TEXT NOT NULL,
    member          INTEGER NOT NULL,
    receipts        INTEGER NOT NULL,
    revenue_minor   INTEGER NOT NULL,
    items           INTEGER NOT NULL,
    discount_minor  INTEGER NOT NULL,
    points_accrued  INTEGER NOT NULL,
    points_redeemed INTEGER NOT NULL,
    PRIMARY KEY (day, store, member)
) WITHOUT ROWID;

-- Which member bought on which day at which store: active, churned and new members.
CREATE TABLE kpi_member_days (
    day   INTEGER NOT NULL,
    card  TEXT NOT NULL,
    store TEXT NOT NULL,
    PRIMARY KEY (day, card, store)
) WITHOUT ROWID;
CREATE INDEX kpi_member_days_card ON kpi_member_days (card, day);

-- Each member's first receipt day.
CREATE TABLE kpi_members (
    card      TEXT PRIMARY KEY,
    first_day INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX kpi_members_first ON kpi_members (first_day);

-- Points expired in a period: the job's expiry rows by time.
CREATE INDEX ledger_kind_at ON ledger (kind, at);
"#;

/// What the promotions' difference-in-differences and the tier figures read: sale
/// lines' revenue per day, store, member flag and category (kept by each push, like
/// V4's tables), and every change of a card's tier, recorded by triggers on `cards`
/// whoever writes it (a push, the ledger job, a quarantine retry), dated by the
/// card's `updated_at` (HQ's time of the change) as a Julian day number.
const V5_PROMOTIONS_TIERS: &str = r#"
CREATE TABLE kpi_category_daily (
    day           INTEGER NOT NULL,
    store         TEXT NOT NULL,
    member        INTEGER NOT NULL,
    category      TEXT NOT NULL,
    revenue_minor INTEGER NOT NULL,
    items         INTEGER NOT NULL,
    PRIMARY KEY (day, store, member, category)
) WITHOUT ROWID;

CREATE TABLE kpi_tier_moves (
    id        INTEGER PRIMARY KEY,
    day       INTEGER NOT NULL,
    card      TEXT NOT NULL,
    from_tier TEXT,
    to_tier   TEXT
);
CREATE INDEX kpi_tier_moves_day ON kpi_tier_moves (day);

CREATE TRIGGER cards_tier_moved AFTER UPDATE OF tier ON cards
WHEN OLD.tier IS NOT NEW.tier
BEGIN
    INSERT INTO kpi_tier_moves (day, card, from_tier, to_tier)
    VALUES (2440588 + NEW.updated_at / 86400000000, NEW.card, OLD.tier, NEW.tier);
END;

CREATE TRIGGER cards_tier_set AFTER INSERT ON cards
WHEN NEW.tier IS NOT NULL
BEGIN
    INSERT INTO kpi_tier_moves (day, card, from_tier, to_tier)
    VALUES (2440588 + NEW.updated_at / 86400000000, NEW.card, NULL, NEW.tier);
END;
"#;

/// The only reader of `ledger_kind_at` is the points-expired report, which asks for
/// expiry rows alone; yet every ledger row of every push paid an entry in it. Expiry
/// rows are written by the ledger job only, so the push writes none into the partial
/// index that replaces it (as PostgreSQL's migration 6).
const V6_LEDGER_EXPIRY: &str = r#"
CREATE INDEX ledger_expiry_at ON ledger (at) WHERE kind = 'expiry';
DROP INDEX ledger_kind_at;
"#;

/// See the PostgreSQL schema's V7: the ledger job, the index's only reader, scans
/// `cards` instead, and each card write of a push updates one index less.
const V7_NO_SPEND_DROPS_INDEX: &str = "DROP INDEX cards_spend_drops;";

/// Migration 8 is its hook, [`checks_without_in_lists`]; this text only says why.
const V8_CHECKS_WITHOUT_IN_LISTS: &str = "
-- SQLite builds a temporary table for an IN list of three values or more at each run
-- of a statement that checks it: once per entry for the insert into `entries`, about
-- 7 % of the writer's instructions in a backlog (README, *Backlogs*). The hook
-- rewrites those CHECK constraints as chains of comparisons allowing the same values.
";

/// The CHECK constraints migration 8 rewrites: table, the text its declaration holds
/// (as migrations 1 and 2 wrote it), the column and the values it allows.
const IN_LIST_CHECKS: [(&str, &str, &str, &[&str]); 5] = [
    (
        "entries",
        "CHECK (kind IN ('sale', 'return', 'welcome', 'release', 'lease_closed'))",
        "kind",
        &["sale", "return", "welcome", "release", "lease_closed"],
    ),
    (
        "ledger",
        "CHECK (kind IN ('accrual', 'redemption', 'return_restore',
                      'return_reversal', 'welcome', 'maturation', 'expiry'))",
        "kind",
        &[
            "accrual",
            "redemption",
            "return_restore",
            "return_reversal",
            "welcome",
            "maturation",
            "expiry",
        ],
    ),
    (
        "lots",
        "CHECK (kind IN ('accrual', 'welcome', 'restore'))",
        "kind",
        &["accrual", "welcome", "restore"],
    ),
    (
        "reservations",
        "CHECK (status IN ('open', 'captured', 'released'))",
        "status",
        &["open", "captured", "released"],
    ),
    (
        "leases",
        "CHECK (status IN ('open', 'closed', 'reclaimed'))",
        "status",
        &["open", "closed", "reclaimed"],
    ),
];

/// `CHECK (column = 'a' OR column = 'b' …)`.
fn comparisons(column: &str, values: &[&str]) -> String {
    let alternatives: Vec<String> = values.iter().map(|v| format!("{column} = '{v}'")).collect();
    format!("CHECK ({})", alternatives.join(" OR "))
}

/// Migration 8: each of [`IN_LIST_CHECKS`] rewritten in its table's declaration
/// ([`rewrite_declarations`]). The rows are not touched: the new checks allow
/// exactly the values the old ones did.
fn checks_without_in_lists(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let rewrites: Vec<_> = IN_LIST_CHECKS
        .iter()
        .map(|&(table, in_list, column, values)| (table, in_list, comparisons(column, values)))
        .collect();
    rewrite_declarations(tx, &rewrites)
}

/// Migration 9 is its hook, [`deferred_keys`]; this text only says why.
const V9_DEFERRED_KEYS: &str = "
-- A multi-row insert into a table with an immediate foreign key keeps a statement
-- journal (a copy of every page it touches) because SQLite checks the key at the
-- statement's end and must be able to undo the statement alone. Checked at COMMIT
-- instead, the key lets the push's multi-row inserts run without one; the writer
-- finds a push that broke a key when its group's COMMIT fails (sqlite/group.rs).
";

/// The foreign keys migration 9 makes deferred: those of the tables a push fills
/// with multi-row inserts. Table, the key's text as migration 1 wrote it.
const DEFERRED_KEYS: [(&str, &str); 4] = [
    ("ledger", "REFERENCES cards (card)"),
    ("ledger", "REFERENCES entries (id)"),
    ("lots", "REFERENCES cards (card)"),
    ("store_cards", "REFERENCES cards (card)"),
];

/// What a key of [`DEFERRED_KEYS`] says after migration 9.
fn deferred(key: &str) -> String {
    format!("{key} DEFERRABLE INITIALLY DEFERRED")
}

/// Migration 9: each of [`DEFERRED_KEYS`] declared `DEFERRABLE INITIALLY DEFERRED`
/// ([`rewrite_declarations`]). A key says where it is checked, not what it allows:
/// the rows are not touched, and the migration checks the keys before it commits
/// all the same.
fn deferred_keys(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let rewrites: Vec<_> = DEFERRED_KEYS
        .iter()
        .map(|&(table, key)| (table, key, deferred(key)))
        .collect();
    rewrite_declarations(tx, &rewrites)?;
    check_keys(tx)
}

/// Migration 10 is its hook, [`deferred_entry_terminal`]; this text only says why.
const V10_DEFERRED_ENTRY_TERMINAL: &str = "
-- The push inserts its entries in multi-row statements too (sqlite/terminals.rs):
-- with the entries' immediate key on their terminal, each would keep a statement
-- journal, as migration 9 says of the other tables a push fills.
";

/// The key migration 10 makes deferred, as [`DEFERRED_KEYS`].
const DEFERRED_ENTRY_TERMINAL: (&str, &str) = ("entries", "REFERENCES terminals (id)");

/// Migration 10: [`DEFERRED_ENTRY_TERMINAL`] declared deferred, as [`deferred_keys`].
fn deferred_entry_terminal(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let (table, key) = DEFERRED_ENTRY_TERMINAL;
    rewrite_declarations(tx, &[(table, key, deferred(key))])?;
    check_keys(tx)
}

/// Migration 11 is its hook, [`no_push_table_keys`]; this text only says why.
const V11_NO_PUSH_TABLE_KEYS: &str = "
-- Deferred or not, SQLite looks each key's parent up as it writes the row (a deferred
-- key only counts the misses until COMMIT): a B-tree descent on a text key per
-- ledger row (two: its card and its entry), per lot and per store membership of a
-- push. As in the PostgreSQL schema, store_cards, lots, ledger and flags carry no
-- foreign keys: they are written only by a push or the job, inside the one writer's
-- transaction that wrote the card and the entry, and `verify` reports ledger rows,
-- lots and store memberships without a card.
";

/// The foreign keys migration 11 removes: those of migration 9 (as it left them) and
/// the flags' key on their entry (as migration 1 wrote it). Table, the text removed
/// (the key with the space before it).
fn push_table_keys() -> Vec<(&'static str, String)> {
    let flags_entry = ("flags", "REFERENCES entries (id)".to_owned());
    DEFERRED_KEYS
        .iter()
        .map(|&(table, key)| (table, deferred(key)))
        .chain([flags_entry])
        .map(|(table, key)| (table, format!(" {key}")))
        .collect()
}

/// Migration 11: each of [`push_table_keys`] removed from its table's declaration
/// ([`rewrite_declarations`]; removing a foreign key is one of the changes SQLite
/// documents as safe that way). The rows are not touched.
fn no_push_table_keys(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let keys = push_table_keys();
    let rewrites: Vec<_> = keys
        .iter()
        .map(|(table, key)| (*table, key.as_str(), String::new()))
        .collect();
    rewrite_declarations(tx, &rewrites)
}

/// What a backlog's entries cost the push's indexes.
///
/// As PostgreSQL's migration 8: nearly every member's receipt is a new member-day,
/// and each paid an entry in `kpi_member_days_card` besides the key (a B-tree insert
/// on a text key per entry of a push whose cards are new). The marketing reports read
/// a period, which the key's leading `day` serves; the only statement that looked a
/// member's days up by card (one store's new members) reads the period's cards of the
/// store once instead (`analytics.rs`).
///
/// A push looked each card sale's receipt up among the terminal's reservations; a
/// sale that redeemed nothing settles only an open one, so the push now reads the
/// terminal's open reservations once (`escrow.rs`), through this partial index (an
/// entry per open reservation, gone when it is settled).
const V12_PUSH_INDEXES: &str = "
DROP INDEX kpi_member_days_card;
CREATE INDEX reservations_open_terminal ON reservations (terminal_ref) WHERE status = 'open';
";

/// Each store's feed read from its own cards' positions (docs/performance.md, *Per-store
/// feed positions*). The feed page was a range scan of `cards_change_pos`, every card
/// changed anywhere in the chain since the cursor probed for a membership of the
/// pulling store: every till read every change of the chain. Now each membership
/// carries its card's change position, and a page is a range scan of the store's own
/// positions (`store_feed`, which carries the key's `card`).
///
/// The invariant that makes the feed answer exactly what it did (the cards of the
/// store past the cursor, in position order, each at its card's position, so the
/// agents' cursors stay valid): a membership's position is its card's. The trigger
/// keeps it for every writer of a card (push, ledger job, block, reservations,
/// leases, quarantine retry), and a new membership takes its card's position (the push
/// and the retry write the card before it, `cards.rs`).
///
/// The table is rebuilt keyed `(card, store)`, so the trigger finds a card's
/// memberships by the key's prefix (keyed `(store, card)`, it would need an index on
/// `card`: three B-trees written per new membership instead of two). Memberships
/// naming no card (`verify` reports them) take position 0: in no feed until their
/// card changes. `cards_change_pos` had no other reader: dropped, a card write
/// updates one index less.
const V13_STORE_FEED_POSITIONS: &str = "
CREATE TABLE store_cards_v13 (
    store      TEXT NOT NULL,
    card       TEXT NOT NULL,
    change_pos INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (card, store)
) WITHOUT ROWID;
INSERT INTO store_cards_v13 (store, card, change_pos)
SELECT s.store, s.card, coalesce(c.change_pos, 0)
FROM store_cards s LEFT JOIN cards c ON c.card = s.card
ORDER BY s.card, s.store;
DROP TABLE store_cards;
ALTER TABLE store_cards_v13 RENAME TO store_cards;
CREATE INDEX store_feed ON store_cards (store, change_pos);

CREATE TRIGGER cards_feed_moved AFTER UPDATE OF change_pos ON cards
BEGIN
    UPDATE store_cards SET change_pos = NEW.change_pos WHERE card = NEW.card;
END;

DROP INDEX cards_change_pos;
";

/// Fails, and so rolls the migration back, if any row's foreign key matches nothing.
fn check_keys(tx: &rusqlite::Transaction<'_>) -> HookResult {
    let broken: Option<String> = tx
        .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
        .optional()?;
    match broken {
        Some(table) => Err(HookError::Hook(format!(
            "table {table} holds a row whose foreign key matches nothing"
        ))),
        None => Ok(()),
    }
}

/// Rewrites a text in table declarations, each `(table, old, new)` once, the way
/// SQLite documents for a change it cannot make with ALTER TABLE ("Making Other
/// Kinds Of Table Schema Changes", sqlite.org/lang_altertable.html):
/// `writable_schema`, the new text, then a new schema version so that every
/// connection reads the declarations again. Fails, and so rolls the migration back,
/// if a declaration lacks its old text.
fn rewrite_declarations(
    tx: &rusqlite::Transaction<'_>,
    rewrites: &[(&str, &str, String)],
) -> HookResult {
    let version: i64 = tx.pragma_query_value(None, "schema_version", |r| r.get(0))?;
    tx.pragma_update(None, "writable_schema", true)?;
    let rewritten = rewrites
        .iter()
        .map(|(table, old, new)| {
            let changed = tx.execute(
                "UPDATE sqlite_schema SET sql = replace(sql, ?2, ?3)
                 WHERE type = 'table' AND name = ?1 AND instr(sql, ?2) > 0",
                rusqlite::params![table, old, new],
            )?;
            Ok((*table, *old, changed))
        })
        .collect::<rusqlite::Result<Vec<_>>>();
    // Off again whatever happened: the flag belongs to the connection, not to the
    // transaction.
    tx.pragma_update(None, "writable_schema", false)?;
    if let Some((table, old, _)) = rewritten?.iter().find(|(_, _, changed)| *changed != 1) {
        return Err(HookError::Hook(format!(
            "the declaration of table {table} has no {old} to rewrite"
        )));
    }
    tx.pragma_update(None, "schema_version", version + 1)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_valid() {
        assert!(super::migrations().validate().is_ok());
    }

    /// Every ledger row of a push pays an entry in each ledger index: there are only
    /// the card's and the expiry rows' (which the points-expired report reads).
    #[test]
    fn ledger_rows_are_indexed_by_card_and_expiries_alone() {
        let c = migrated();
        assert_eq!(indexes(&c, "ledger"), ["ledger_card", "ledger_expiry_at"]);
        let plan: Vec<String> = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                crate::store::sqlite::analytics::POINTS_EXPIRED
            ))
            .unwrap()
            .query_map([0, 1], |r| r.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.join("\n").contains("ledger_expiry_at"), "{plan:?}");
    }

    /// Every card write of a push pays an entry in each index of `cards`: there is
    /// only its key (the feed reads the stores' own positions, migration 13), and a
    /// membership pays its key and the feed's.
    #[test]
    fn cards_are_indexed_by_their_key_alone_and_memberships_by_feed_position() {
        let c = migrated();
        assert_eq!(indexes(&c, "cards"), Vec::<String>::new());
        assert_eq!(indexes(&c, "store_cards"), ["store_feed"]);
    }

    /// A version-12 database's store memberships take their card's position (a
    /// membership naming no card, 0), and from then on every change of a card moves
    /// all its memberships, whatever writes it.
    #[test]
    fn a_version_12_database_s_memberships_take_their_card_s_position_and_follow_it() {
        let c = migrated_from(
            12,
            "UPDATE cards SET change_pos = 7;
             INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             VALUES ('4006381333931', 0, 0, 0, 1, 1, 9, 1);
             INSERT INTO store_cards (store, card)
             VALUES ('s1', '12345670'), ('s2', '12345670'), ('s1', '4006381333931'),
                    ('s2', '99999997');",
        );
        let memberships = |c: &rusqlite::Connection| -> Vec<(String, String, i64)> {
            c.prepare("SELECT store, card, change_pos FROM store_cards ORDER BY store, card")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        let row = |s: &str, card: &str, pos| (s.to_owned(), card.to_owned(), pos);
        assert_eq!(
            memberships(&c),
            [
                row("s1", "12345670", 7),
                row("s1", "4006381333931", 9),
                row("s2", "12345670", 7),
                row("s2", "99999997", 0),
            ]
        );
        c.execute_batch(
            "UPDATE cards SET balance = 3, change_pos = 10 WHERE card = '12345670';
             INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             VALUES ('4006381333931', 0, 0, 0, 1, 1, 11, 1)
             ON CONFLICT (card) DO UPDATE SET change_pos = excluded.change_pos;",
        )
        .unwrap();
        assert_eq!(
            memberships(&c),
            [
                row("s1", "12345670", 10),
                row("s1", "4006381333931", 11),
                row("s2", "12345670", 10),
                row("s2", "99999997", 0),
            ]
        );
        // A write that leaves the position alone moves no membership.
        c.execute_batch("UPDATE cards SET balance = 4 WHERE card = '12345670'")
            .unwrap();
        assert_eq!(memberships(&c)[0], row("s1", "12345670", 10));
    }

    /// No statement that checks a kind or status builds a temporary table for it (as
    /// an `IN (…)` list does at each run), and the checks still allow exactly the values
    /// they did: each one passes, anything else is refused.
    #[test]
    fn kind_and_status_checks_are_comparisons_allowing_the_same_values() {
        let c = migrated();
        assert_eq!(
            c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok"
        );
        for (table, _, column, values) in super::IN_LIST_CHECKS {
            let opcodes: Vec<String> = c
                .prepare(&format!(
                    "EXPLAIN INSERT INTO {table} ({column}) VALUES (?1)"
                ))
                .unwrap()
                .query_map([rusqlite::types::Null], |r| r.get(1))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                !opcodes.iter().any(|o| o == "OpenEphemeral"),
                "{table}: {opcodes:?}"
            );
            // The check alone, evaluated by SQLite from the table's own declaration.
            let sql: String = c
                .query_row(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                    [table],
                    |r| r.get(0),
                )
                .unwrap();
            let check = super::comparisons(column, values);
            assert!(sql.contains(&check), "{table}: {sql}");
            let allows = |v: &str| -> bool {
                let expr = check.trim_start_matches("CHECK ").replace(column, "?1");
                c.query_row(&format!("SELECT {expr}"), [v], |r| r.get(0))
                    .unwrap()
            };
            for v in values {
                assert!(allows(v), "{table}: {v}");
            }
            assert!(!allows("bogus"), "{table}");
        }
    }

    /// A database at version 7 migrates with its rows, and a wrong kind is still
    /// refused by the table itself on the same connection.
    #[test]
    fn a_version_7_database_keeps_its_rows_and_refuses_an_unknown_kind() {
        let c = migrated_from(
            7,
            "INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('12345670', 'welcome', 1, 1, 10, 10);",
        );
        let kept: i64 = c
            .query_row(
                "SELECT count(*) FROM lots WHERE kind = 'welcome'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kept, 1);
        let refused = c.execute(
            "INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('12345670', 'bogus', 1, 1, 10, 10)",
            [],
        );
        assert!(refused.is_err());
        let allowed = c.execute(
            "INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('12345670', 'restore', 1, 1, 10, 10)",
            [],
        );
        assert_eq!(allowed.unwrap(), 1);
    }

    /// The keys of the tables a push fills with multi-row inserts are checked at
    /// `COMMIT`: a row that breaks one is written, and the transaction cannot commit
    /// (no statement journal is needed to undo the statement alone). A database at
    /// version 8 keeps its rows. (Migration 11 removes these keys.)
    #[test]
    fn a_version_8_database_keeps_its_rows_and_its_push_keys_are_checked_at_commit() {
        let c = migrated_between(
            8,
            "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at)
             VALUES ('12345670', 'welcome', 10, 0, 1);",
            10,
        );
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let rows: i64 = c
            .query_row("SELECT count(*) FROM ledger", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        let broken = [
            "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at)
             VALUES ('99999997', 'welcome', 10, 0, 1)",
            "INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)
             VALUES ('12345670', 'welcome', 10, 0, 1, 'no-such-entry')",
            "INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('99999997', 'welcome', 1, 1, 10, 10)",
            "INSERT INTO store_cards (store, card) VALUES ('s1', '99999997')",
        ];
        for insert in broken {
            c.execute_batch("BEGIN").unwrap();
            c.execute(insert, []).unwrap();
            let commit = c.execute_batch("COMMIT").unwrap_err();
            assert!(
                commit.to_string().contains("FOREIGN KEY"),
                "{insert}: {commit}"
            );
            c.execute_batch("ROLLBACK").unwrap();
        }
        // The same keys still hold at once outside a transaction.
        assert!(c.execute(broken[3], []).is_err());
    }

    /// The entries' key on their terminal is checked at `COMMIT`, like the keys of
    /// migration 9 (the push inserts entries in multi-row statements); a database at
    /// version 9 keeps its entries, and the key still holds at once outside a
    /// transaction.
    #[test]
    fn a_version_9_database_keeps_its_entries_and_their_terminal_key_is_checked_at_commit() {
        let c = migrated_from(
            9,
            "INSERT INTO terminals (id, store, terminal, token_hash, created_at)
             VALUES (1, 's1', 't1', 'hash', 1);
             INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)
             VALUES ('e1', 1, 1, 1, 'sale', '12345670', 0, 1, 'h', '{}', 1);",
        );
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let rows: i64 = c
            .query_row(
                "SELECT count(*) FROM entries WHERE terminal_ref = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(rows, 1);
        let broken = "INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                           rules_version, content_hash, body, received_at)
                      VALUES ('e2', 99, 1, 1, 'sale', NULL, 0, 1, 'h', '{}', 1)";
        c.execute_batch("BEGIN").unwrap();
        c.execute(broken, []).unwrap();
        let commit = c.execute_batch("COMMIT").unwrap_err();
        assert!(commit.to_string().contains("FOREIGN KEY"), "{commit}");
        c.execute_batch("ROLLBACK").unwrap();
        assert!(c.execute(broken, []).is_err());
    }

    /// A version-10 database holding a card, its entry, ledger row, lot, store
    /// membership and flag keeps them all through migration 11, which leaves those
    /// tables without foreign keys (as PostgreSQL's; `verify` reports a row whose card
    /// is missing) and the entries' key on their terminal as it was.
    #[test]
    fn a_version_10_database_keeps_its_rows_and_the_push_tables_lose_their_keys() {
        let c = migrated_from(
            10,
            "INSERT INTO terminals (id, store, terminal, token_hash, created_at)
             VALUES (1, 's1', 't1', 'hash', 1);
             INSERT INTO entries (id, terminal_ref, seq, at, kind, card, spend_minor,
                                  rules_version, content_hash, body, received_at)
             VALUES ('e1', 1, 1, 1, 'sale', '12345670', 0, 1, 'h', '{}', 1);
             INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)
             VALUES ('12345670', 'welcome', 10, 0, 1, 'e1');
             INSERT INTO lots (card, kind, source_entry, earned_at, matured, amount, remaining)
             VALUES ('12345670', 'welcome', 'e1', 1, 1, 10, 10);
             INSERT INTO store_cards (store, card) VALUES ('s1', '12345670');
             INSERT INTO flags (entry_id, card, kind, detail)
             VALUES ('e1', '12345670', 'overdraft', 'd');",
        );
        c.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        assert_eq!(
            c.query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))
                .unwrap(),
            "ok"
        );
        for table in ["ledger", "lots", "store_cards", "flags", "entries"] {
            let rows: i64 = c
                .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 1, "{table}");
        }
        for table in ["ledger", "lots", "store_cards", "flags"] {
            assert_eq!(keys(&c, table), Vec::<String>::new(), "{table}");
        }
        assert_eq!(keys(&c, "entries"), ["terminals"]);
        assert_eq!(keys(&c, "quarantine"), ["entries"]);
        // Rows naming nothing are written and committed.
        c.execute_batch(
            "BEGIN;
             INSERT INTO ledger (card, kind, delta_balance, delta_pending, at, entry_id)
             VALUES ('99999997', 'welcome', 10, 0, 1, 'no-such-entry');
             INSERT INTO lots (card, kind, earned_at, matured, amount, remaining)
             VALUES ('99999997', 'welcome', 1, 1, 10, 10);
             INSERT INTO store_cards (store, card) VALUES ('s1', '99999997');
             INSERT INTO flags (entry_id, card, kind, detail)
             VALUES ('no-such-entry', '99999997', 'overdraft', 'd');
             COMMIT;",
        )
        .unwrap();
    }

    /// The tables `table`'s foreign keys name, in the declaration's order.
    fn keys(c: &rusqlite::Connection, table: &str) -> Vec<String> {
        c.prepare(&format!(
            "SELECT \"table\" FROM pragma_foreign_key_list('{table}')"
        ))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// A database at `version` holding card 12345670 and the rows `insert` writes,
    /// then migrated to the latest version.
    fn migrated_from(version: usize, insert: &str) -> rusqlite::Connection {
        let mut c = seeded(version, insert);
        super::migrations().to_latest(&mut c).unwrap();
        c
    }

    /// [`migrated_from`], migrated to version `to` only.
    fn migrated_between(version: usize, insert: &str, to: usize) -> rusqlite::Connection {
        let mut c = seeded(version, insert);
        super::migrations().to_version(&mut c, to).unwrap();
        c
    }

    /// A database at `version` holding card 12345670 and the rows `insert` writes.
    fn seeded(version: usize, insert: &str) -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_version(&mut c, version).unwrap();
        c.execute_batch(
            "INSERT INTO cards (card, balance, pending, spend_12m, welcome_given, seen,
                                change_pos, updated_at)
             VALUES ('12345670', 10, 0, 0, 1, 1, 1, 1);",
        )
        .unwrap();
        c.execute_batch(insert).unwrap();
        c
    }

    /// A database at the latest version.
    fn migrated() -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::migrations().to_latest(&mut c).unwrap();
        c
    }

    /// The declared indexes of `table` (not the key's), by name.
    fn indexes(c: &rusqlite::Connection, table: &str) -> Vec<String> {
        c.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = ?1
             AND sql IS NOT NULL ORDER BY 1",
        )
        .unwrap()
        .query_map([table], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}
