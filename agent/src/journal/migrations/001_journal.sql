-- The journal proper: identity, append-only entries, sales and returns, sync position.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- One row per operation HQ must apply. `seq` is the terminal's sequence number:
-- 1, 2, 3, ... with no gaps (the writer takes max(seq) + 1 inside the transaction).
CREATE TABLE entries (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    kind            TEXT    NOT NULL,
    card            TEXT,
    at_unix         INTEGER NOT NULL,
    offline         INTEGER NOT NULL DEFAULT 0,
    redeemed        INTEGER NOT NULL DEFAULT 0,
    delta_balance   INTEGER NOT NULL DEFAULT 0,
    delta_pending   INTEGER NOT NULL DEFAULT 0,
    matures_at_unix INTEGER,
    body            TEXT    NOT NULL
) STRICT;

CREATE INDEX entries_by_card ON entries (card, seq) WHERE card IS NOT NULL;
CREATE INDEX entries_offline_redemptions ON entries (at_unix) WHERE offline = 1 AND redeemed > 0;

-- Entries are facts: corrections are new entries, never edits.
CREATE TRIGGER entries_are_immutable BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'journal entries are immutable');
END;
CREATE TRIGGER entries_are_never_deleted BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'journal entries are never deleted');
END;

CREATE TABLE sales (
    receipt_id      TEXT PRIMARY KEY,
    request_hash    TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('held', 'committed', 'cancelled', 'returned')),
    cancel_reason   TEXT,
    card            TEXT,
    redeem_points   INTEGER NOT NULL,
    offline         INTEGER NOT NULL,
    held_at_unix    INTEGER NOT NULL,
    rules_version   INTEGER NOT NULL,
    matures_at_unix INTEGER,
    priced          TEXT    NOT NULL,
    returned_qty    TEXT    NOT NULL DEFAULT '[]',
    entry_seq       INTEGER REFERENCES entries (seq),
    hold_response   TEXT    NOT NULL,
    commit_response TEXT
) STRICT;

CREATE INDEX sales_open_holds ON sales (held_at_unix) WHERE state = 'held';
CREATE INDEX sales_holds_by_card ON sales (card) WHERE state = 'held';

CREATE TABLE returns (
    return_id    TEXT PRIMARY KEY,
    receipt_id   TEXT    NOT NULL REFERENCES sales (receipt_id),
    request_hash TEXT    NOT NULL,
    entry_seq    INTEGER NOT NULL REFERENCES entries (seq),
    response     TEXT    NOT NULL
) STRICT;

-- Single row: how far HQ has acknowledged this terminal's entries.
CREATE TABLE sync_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    acked_through     INTEGER NOT NULL DEFAULT 0,
    last_contact_unix INTEGER
) STRICT;
INSERT INTO sync_state (id) VALUES (1);
