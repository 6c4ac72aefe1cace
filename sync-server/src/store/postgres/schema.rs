//! The PostgreSQL schema as numbered migrations, applied at start.
//!
//! Several instances may start at once on a fresh database: every start takes the
//! same transaction-level advisory lock before it even creates `schema_migrations`,
//! so one instance migrates and the others wait, then find nothing to do. DDL is
//! transactional in PostgreSQL, so a failed migration leaves no half-built schema, and
//! the lock is released by the commit or rollback (never left behind on a pooled
//! connection).
//!
//! The tables mirror the SQLite schema (`store/sqlite/schema.rs`): times are
//! microseconds since the epoch, points and money are minor units in BIGINT. Entry ids
//! are native UUIDs; card ids use the "C" collation, so that SQL and Rust sort them the
//! same way (row locks are taken in that order).

use super::sql;
use crate::store::Result;
use crate::store::StoreError;
use deadpool_postgres::{Client, GenericClient};

/// Key of the advisory lock that serializes migrations (any constant that no other
/// application on the database uses; this one spells "loyalty" in ASCII).
const MIGRATION_LOCK: i64 = 0x006c_6f79_616c_7479;

/// A numbered schema change. Never edit a released one: add the next.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "ledger schema",
        sql: V1,
    },
    Migration {
        version: 2,
        name: "reservations, leases and app-token uses",
        sql: V2,
    },
    Migration {
        version: 3,
        name: "quarantine",
        sql: V3_QUARANTINE,
    },
    Migration {
        version: 4,
        name: "kpi aggregates",
        sql: V4,
    },
    Migration {
        version: 5,
        name: "promotion revenue and tier moves",
        sql: V5_PROMOTIONS_TIERS,
    },
    Migration {
        version: 6,
        name: "expiry-only ledger index",
        sql: V6_LEDGER_EXPIRY,
    },
    Migration {
        version: 7,
        name: "no spend-drop index on cards",
        sql: V7_NO_SPEND_DROPS_INDEX,
    },
    Migration {
        version: 8,
        name: "member days indexed by their key alone",
        sql: V8_MEMBER_DAYS_KEY_ONLY,
    },
    Migration {
        version: 9,
        name: "per-store feed positions",
        sql: V9_STORE_FEED,
    },
];

/// Entries HQ stored without effect (`ledger::quarantine`): one record per entry,
/// released when a retry applied it.
const V3_QUARANTINE: &str = r#"
CREATE TABLE quarantine (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id       UUID NOT NULL UNIQUE REFERENCES entries (id),
    card           TEXT COLLATE "C",
    kind           TEXT NOT NULL CHECK (kind IN ('overflow', 'out_of_limits', 'internal')),
    reason         TEXT NOT NULL,
    quarantined_at BIGINT NOT NULL,
    released_at    BIGINT
);
"#;

/// The version the newest migration brings a database to.
pub fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database's schema up to date; safe to run from many instances at once.
pub async fn migrate(client: &mut Client) -> Result<()> {
    migrate_to(client, latest()).await
}

/// Brings the database's schema up to version `target` (tests make a database of an
/// earlier version with it, to upgrade it).
pub(super) async fn migrate_to(client: &mut Client, target: i32) -> Result<()> {
    let tx = client.transaction().await?;
    sql::execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied = version(&tx).await?;
    let known = latest();
    if applied > known {
        return Err(StoreError::corrupt(format!(
            "the database schema is at version {applied}, newer than this server knows \
             ({known}); run a newer sync-server"
        )));
    }
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > applied && m.version <= target)
    {
        tracing::info!(
            version = m.version,
            name = m.name,
            "applying database migration"
        );
        tx.batch_execute(m.sql).await?;
        sql::execute(
            &tx,
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&m.version, &m.name],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The schema version a database is at (0: none), for tests and diagnostics.
pub async fn version(client: &impl GenericClient) -> Result<i32> {
    sql::one(
        client,
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        &[],
        |r| Ok(r.try_get(0)?),
    )
    .await
}

const V1: &str = r#"
-- The change feed's position of the writing transaction: its full 64-bit transaction
-- id (xid8, epoch included, so it never wraps), as a BIGINT. See store/postgres/feed.rs
-- for why the feed is ordered by transaction id and bounded by a snapshot's xmin.
CREATE FUNCTION loyalty_xid() RETURNS BIGINT LANGUAGE sql VOLATILE
    AS $$ SELECT pg_current_xact_id()::text::bigint $$;

-- Terminals and their bearer tokens (SHA-256 hex only). acked_through is the highest
-- contiguous seq HQ holds for the terminal; a push locks this row first, so pushes of
-- one terminal are serialized across every server instance.
CREATE TABLE terminals (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    store         TEXT NOT NULL,
    terminal      TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    acked_through BIGINT NOT NULL DEFAULT 0 CHECK (acked_through >= 0),
    last_push_at  BIGINT,
    UNIQUE (store, terminal)
);

-- Every journal entry HQ applied, exactly once: (terminal, seq) and id are unique,
-- whatever the code above does. body is the canonical JSON as text (not jsonb, which
-- would reorder keys): content_hash is SHA-256 of exactly these bytes.
CREATE TABLE entries (
    id            UUID PRIMARY KEY,
    terminal_ref  BIGINT NOT NULL REFERENCES terminals (id),
    seq           BIGINT NOT NULL CHECK (seq >= 1),
    at            BIGINT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('sale', 'return', 'welcome')),
    card          TEXT COLLATE "C",
    spend_minor   BIGINT NOT NULL,
    rules_version BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    body          TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    CONSTRAINT entries_terminal_seq UNIQUE (terminal_ref, seq)
);
-- Covering: the tier spend of a card is read from the index alone.
CREATE INDEX entries_card_at ON entries (card, at) INCLUDE (spend_minor)
    WHERE card IS NOT NULL;

-- Cached card totals; the ledger is the truth, `verify` compares. change_xid is the
-- feed position (loyalty_xid()) of the last transaction that changed the row.
CREATE TABLE cards (
    card           TEXT COLLATE "C" PRIMARY KEY,
    balance        BIGINT NOT NULL,
    pending        BIGINT NOT NULL,
    tier           TEXT,
    spend_12m      BIGINT NOT NULL,
    -- When the oldest entry counted in spend_12m leaves the 365-day window.
    spend_drops_at BIGINT,
    welcome_given  BOOLEAN NOT NULL,
    seen           BOOLEAN NOT NULL,
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    block_reason   TEXT,
    flags          BIGINT NOT NULL DEFAULT 0,
    change_xid     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX cards_change ON cards (change_xid, card);
CREATE INDEX cards_spend_drops ON cards (spend_drops_at) WHERE spend_drops_at IS NOT NULL;

-- store_cards, lots, ledger and flags carry no foreign keys: they are written only
-- by a push or the job, in the transaction that holds the card's row lock, and a
-- per-row foreign-key check costs about as much as the row itself on the push path.
-- `verify` reports ledger rows or lots without a card.

-- Which store's entries mentioned which card: the balance feed of a store.
CREATE TABLE store_cards (
    store TEXT NOT NULL,
    card  TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (store, card)
);

-- Parcels of points, for pending points and oldest-first expiry.
CREATE TABLE lots (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    card         TEXT COLLATE "C" NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('accrual', 'welcome', 'restore')),
    source_entry UUID,
    earned_at    BIGINT NOT NULL,
    matures_at   BIGINT,
    matured      BOOLEAN NOT NULL,
    expires_at   BIGINT,
    amount       BIGINT NOT NULL CHECK (amount > 0),
    remaining    BIGINT NOT NULL CHECK (remaining >= 0 AND remaining <= amount)
);
CREATE INDEX lots_open ON lots (card) WHERE remaining > 0;
CREATE INDEX lots_maturing ON lots (matures_at) WHERE NOT matured;
CREATE INDEX lots_expiring ON lots (expires_at) WHERE remaining > 0 AND expires_at IS NOT NULL;

-- The append-only points ledger. The key (card, id) is also the order `card show`
-- reads a card's rows in: one index to maintain per row instead of two.
CREATE TABLE ledger (
    card          TEXT COLLATE "C" NOT NULL,
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    kind          TEXT NOT NULL CHECK (kind IN ('accrual', 'redemption', 'return_restore',
                      'return_reversal', 'welcome', 'maturation', 'expiry')),
    delta_balance BIGINT NOT NULL,
    delta_pending BIGINT NOT NULL,
    at            BIGINT NOT NULL,
    entry_id      UUID,
    PRIMARY KEY (card, id)
);

-- Entries applied although they broke a rule.
CREATE TABLE flags (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id UUID NOT NULL,
    card     TEXT COLLATE "C" NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX flags_card ON flags (card);

-- Refused pushes and other protocol anomalies.
CREATE TABLE anomalies (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,
    store    TEXT NOT NULL,
    terminal TEXT NOT NULL,
    kind     TEXT NOT NULL,
    detail   TEXT NOT NULL
);

-- Block and unblock events, at their transaction's feed position. id is drawn after
-- the card row is locked, so it orders the events of one card.
CREATE TABLE block_events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid     BIGINT NOT NULL,
    card    TEXT COLLATE "C" NOT NULL,
    blocked BOOLEAN NOT NULL,
    reason  TEXT,
    at      BIGINT NOT NULL
);
CREATE INDEX block_events_xid ON block_events (xid, id);

-- Every rules version ever set (entries name the version they were made under).
CREATE TABLE rules (
    version BIGINT PRIMARY KEY CHECK (version >= 1),
    body    TEXT NOT NULL,
    set_at  BIGINT NOT NULL
);

-- App-token signing keys; valid_until NULL marks the current one.
CREATE TABLE signing_keys (
    key_id      BIGINT PRIMARY KEY,
    secret_hex  TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    valid_until BIGINT
);

-- What the ledger job last did: tiers follow the rules version they were computed
-- with, so a new rules version makes the next run recompute every tier once.
CREATE TABLE job_state (
    id                  INTEGER PRIMARY KEY CHECK (id = 1),
    tiers_rules_version BIGINT NOT NULL
);
INSERT INTO job_state (id, tiers_rules_version) VALUES (1, 0);
"#;

/// Points never spent twice (issue 12); mirrors the SQLite migration V2.
const V2: &str = r#"
ALTER TABLE entries DROP CONSTRAINT entries_kind_check;
ALTER TABLE entries ADD CONSTRAINT entries_kind_check
    CHECK (kind IN ('sale', 'return', 'welcome', 'release', 'lease_closed'));

-- Cached sums of the open reservations and leases (points - charged) of the card,
-- changed only under the card's row lock; `verify` compares them with the rows.
ALTER TABLE cards ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0);
ALTER TABLE cards ADD COLUMN leased BIGINT NOT NULL DEFAULT 0 CHECK (leased >= 0);

-- The last lease-sync epoch HQ answered for the terminal (under its row lock).
ALTER TABLE terminals ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0;

-- Points held at HQ for one receipt of one terminal. Settled rows stay: a late ask
-- for a settled receipt is refused instead of holding points again.
CREATE TABLE reservations (
    terminal_ref BIGINT NOT NULL REFERENCES terminals (id),
    receipt_id   TEXT NOT NULL,
    card         TEXT COLLATE "C" NOT NULL,
    points       BIGINT NOT NULL CHECK (points >= 0),
    status       TEXT NOT NULL CHECK (status IN ('open', 'captured', 'released')),
    expires_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (terminal_ref, receipt_id)
);
CREATE INDEX reservations_open_card ON reservations (card, terminal_ref) WHERE status = 'open';
CREATE INDEX reservations_open_expiry ON reservations (expires_at) WHERE status = 'open';

-- Points of a card moved into one terminal's escrow, for offline redemption.
CREATE TABLE leases (
    id           UUID PRIMARY KEY,
    terminal_ref BIGINT NOT NULL REFERENCES terminals (id),
    card         TEXT COLLATE "C" NOT NULL,
    points       BIGINT NOT NULL CHECK (points > 0),
    charged      BIGINT NOT NULL CHECK (charged >= 0 AND charged <= points),
    status       TEXT NOT NULL CHECK (status IN ('open', 'closed', 'reclaimed')),
    expires_at   BIGINT NOT NULL,
    granted_at   BIGINT NOT NULL
);
CREATE INDEX leases_open_terminal ON leases (terminal_ref, card) WHERE status = 'open';
CREATE INDEX leases_open_card ON leases (card) WHERE status = 'open';
CREATE INDEX leases_open_expiry ON leases (expires_at) WHERE status = 'open';

-- App-token uses (the token's id is a hash, never the token), forgotten a day after
-- the token expired.
CREATE TABLE token_uses (
    token_id     TEXT PRIMARY KEY,
    terminal_ref BIGINT NOT NULL REFERENCES terminals (id),
    scan_id      UUID NOT NULL,
    card         TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT NOT NULL
);
CREATE INDEX token_uses_expiry ON token_uses (expires_at);
"#;

/// The KPI aggregates (see the SQLite schema's V4), kept current by each push.
const V4: &str = r#"
CREATE TABLE kpi_daily (
    day             INTEGER NOT NULL,
    store           TEXT NOT NULL,
    member          BOOLEAN NOT NULL,
    receipts        BIGINT NOT NULL,
    revenue_minor   BIGINT NOT NULL,
    items           BIGINT NOT NULL,
    discount_minor  BIGINT NOT NULL,
    points_accrued  BIGINT NOT NULL,
    points_redeemed BIGINT NOT NULL,
    PRIMARY KEY (day, store, member)
);

CREATE TABLE kpi_member_days (
    day   INTEGER NOT NULL,
    card  TEXT COLLATE "C" NOT NULL,
    store TEXT NOT NULL,
    PRIMARY KEY (day, card, store)
);
CREATE INDEX kpi_member_days_card ON kpi_member_days (card, day);

CREATE TABLE kpi_members (
    card      TEXT COLLATE "C" PRIMARY KEY,
    first_day INTEGER NOT NULL
);
CREATE INDEX kpi_members_first ON kpi_members (first_day);

CREATE INDEX ledger_kind_at ON ledger (kind, at);
"#;

/// Promotion revenue per category and tier moves (see the SQLite schema's V5): the
/// moves are recorded by a trigger on `cards`, whoever writes the tier.
const V5_PROMOTIONS_TIERS: &str = r#"
CREATE TABLE kpi_category_daily (
    day           INTEGER NOT NULL,
    store         TEXT NOT NULL,
    member        BOOLEAN NOT NULL,
    category      TEXT NOT NULL,
    revenue_minor BIGINT NOT NULL,
    items         BIGINT NOT NULL,
    PRIMARY KEY (day, store, member, category)
);

CREATE TABLE kpi_tier_moves (
    id        BIGSERIAL PRIMARY KEY,
    day       INTEGER NOT NULL,
    card      TEXT COLLATE "C" NOT NULL,
    from_tier TEXT,
    to_tier   TEXT
);
CREATE INDEX kpi_tier_moves_day ON kpi_tier_moves (day);

CREATE FUNCTION kpi_record_tier_move() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO kpi_tier_moves (day, card, from_tier, to_tier)
    VALUES ((2440588 + NEW.updated_at / 86400000000)::int, NEW.card,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.tier END, NEW.tier);
    RETURN NULL;
END
$$;

CREATE TRIGGER cards_tier_moved AFTER UPDATE OF tier ON cards
FOR EACH ROW WHEN (OLD.tier IS DISTINCT FROM NEW.tier)
EXECUTE FUNCTION kpi_record_tier_move();

CREATE TRIGGER cards_tier_set AFTER INSERT ON cards
FOR EACH ROW WHEN (NEW.tier IS NOT NULL)
EXECUTE FUNCTION kpi_record_tier_move();
"#;

/// The only reader of `ledger_kind_at` is the points-expired report, which asks for
/// expiry rows alone; yet every ledger row of every push paid an entry in it (one
/// index insert in about twenty per entry). Expiry rows are written by the ledger job
/// only, so the push writes none into the partial index that replaces it.
const V6_LEDGER_EXPIRY: &str = r#"
CREATE INDEX ledger_expiry_at ON ledger (at) WHERE kind = 'expiry';
DROP INDEX ledger_kind_at;
"#;

/// The only reader of `cards_spend_drops` is the ledger job (every few minutes), yet
/// every card write of every push paid an entry in it (PostgreSQL writes a new entry
/// in every index of a row on each non-HOT update, whatever changed). Without it the
/// job's `spend_drops_at <= now` reads the whole table: about 11 ms at 100,000
/// cards (`EXPLAIN ANALYZE`, 1,641 pages), once per run.
/// (`change_xid` still changes on every write, so a card's update stays non-HOT
/// and fillfactor would not help: see docs/performance.md, *Backlogs*.)
const V7_NO_SPEND_DROPS_INDEX: &str = "DROP INDEX cards_spend_drops;";

/// Nearly every member's receipt is a new (day, card, store) row, and each paid an
/// entry in `kpi_member_days_card` besides the key: about 0.87 index entries per
/// entry of a push (`pg_waldump` of the `pg_cost` harness), as many as the cards'
/// `cards_change`. No plan of its readers, the marketing reports, used it (`EXPLAIN
/// ANALYZE` at 1,000,000 member-days, custom and generic plans): they read a
/// period, which the key's leading `day` serves (see `analytics.rs`).
const V8_MEMBER_DAYS_KEY_ONLY: &str = "DROP INDEX kpi_member_days_card;";

/// Each store's feed read from its own positions (`feed.rs`): a pull used to walk the
/// chain-wide `cards_change` from its cursor and keep its store's cards, so every
/// change anywhere in the chain was read once by every till. A membership now carries
/// its card's feed position (never below it), kept by two statement triggers on
/// `cards`, so that every writer of a card (a push, the ledger job, an admin's block,
/// reservations and leases, a quarantine retry) is covered by one rule: the
/// memberships of the cards a statement inserted or updated take the card's position
/// where theirs is lower. Every writer sets a card's `change_xid` to its own
/// `loyalty_xid()`, so a membership's position is the id of the transaction that
/// wrote it (or, for the copy below, of a transaction committed before any pull),
/// and the feed's snapshot bound (`bound.rs`) holds for memberships as it did for
/// cards. A new membership defaults to its transaction's position: at or above its
/// card's (the store gets the card once more at worst).
///
/// The triggers' update may only probe the memberships by card: a plan made on a
/// large transition table (the job's chunk) would otherwise hash-join it with the
/// whole table, and PL/pgSQL keeps that plan for the connection's life, every push
/// included. Transition tables forbid a column list and more than one event per
/// trigger, hence two triggers, fired also by a statement that changed no row.
///
/// `store_cards` is rebuilt rather than updated in place (one bulk write, indexes
/// built once, no dead version per row); a membership whose card has no row (which
/// `verify` reports) gets position 0, raised if the card is ever inserted. Its key
/// becomes `(card, store)` for the triggers' probe (a push's probe of a pair serves
/// either way), and `store_cards_feed` orders a store's positions. `cards_change` had
/// no other reader: a card's write now updates one index less (and can be HOT when
/// its page has room).
const V9_STORE_FEED: &str = r#"
CREATE TABLE store_cards_v9 (
    store      TEXT NOT NULL,
    card       TEXT COLLATE "C" NOT NULL,
    change_xid BIGINT NOT NULL DEFAULT loyalty_xid()
);
INSERT INTO store_cards_v9 (store, card, change_xid)
SELECT s.store, s.card, COALESCE(c.change_xid, 0)
FROM store_cards s LEFT JOIN cards c ON c.card = s.card;
DROP TABLE store_cards;
ALTER TABLE store_cards_v9 RENAME TO store_cards;
ALTER TABLE store_cards ADD CONSTRAINT store_cards_pkey PRIMARY KEY (card, store);
CREATE INDEX store_cards_feed ON store_cards (store, change_xid, card);

CREATE FUNCTION store_cards_follow() RETURNS trigger LANGUAGE plpgsql
SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
AS $$
BEGIN
    UPDATE store_cards s SET change_xid = n.change_xid
    FROM changed n
    WHERE s.card = n.card AND s.change_xid < n.change_xid;
    RETURN NULL;
END
$$;

CREATE TRIGGER cards_updated_feed AFTER UPDATE ON cards
REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION store_cards_follow();

CREATE TRIGGER cards_inserted_feed AFTER INSERT ON cards
REFERENCING NEW TABLE AS changed
FOR EACH STATEMENT EXECUTE FUNCTION store_cards_follow();

DROP INDEX cards_change;
"#;
