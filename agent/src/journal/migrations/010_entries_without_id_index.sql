-- `entries` without the index of its `id` (the UNIQUE constraint's): no read here
-- looks an entry up by id (the sync sends entries by `seq`; HQ, which keys entries by
-- id, checks ids there), and ids are UUIDv7 made by this process. The index was a WAL
-- page of every committed sale, a ninth of a till sale's pages (docs/performance.md,
-- *Till sales*). A constraint goes only with a rebuild of its table, SQLite's procedure
-- ("Making Other Kinds Of Table Schema Changes", sqlite.org/lang_altertable.html): a
-- new table, the rows copied as they are, the old one dropped, the new one renamed,
-- its indexes and triggers created again. It runs with foreign keys off
-- (`schema::open`; `card_running`, `sales` and `returns` refer to `entries (seq)`,
-- whose values are kept) and checks them before it commits. Every entry is kept,
-- synced or not; the copy costs once what the journal's entries weigh.

CREATE TABLE entries_rebuilt (
    seq             INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL,
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

INSERT INTO entries_rebuilt (seq, id, kind, card, at_unix, offline, redeemed, delta_balance,
                             delta_pending, matures_at_unix, body)
SELECT seq, id, kind, card, at_unix, offline, redeemed, delta_balance,
       delta_pending, matures_at_unix, body
FROM entries ORDER BY seq;

DROP TABLE entries;
ALTER TABLE entries_rebuilt RENAME TO entries;

CREATE INDEX entries_offline_redemptions ON entries (at_unix) WHERE offline = 1 AND redeemed > 0;
CREATE INDEX entries_pending_by_card ON entries (card, matures_at_unix)
    WHERE matures_at_unix IS NOT NULL;

-- Entries are facts: corrections are new entries, never edits.
CREATE TRIGGER entries_are_immutable BEFORE UPDATE ON entries
BEGIN
    SELECT RAISE(ABORT, 'journal entries are immutable');
END;
CREATE TRIGGER entries_are_never_deleted BEFORE DELETE ON entries
BEGIN
    SELECT RAISE(ABORT, 'journal entries are never deleted');
END;
