-- What the agent learns from HQ: balances, rules, blocked cards, signing keys, the pull cursor.

-- Last HQ-known figures of a card. `included_seq`: HQ's figures include exactly this
-- terminal's entries up to this seq; later local entries are added on top.
CREATE TABLE cards (
    card         TEXT PRIMARY KEY,
    balance      INTEGER NOT NULL,
    pending      INTEGER NOT NULL,
    tier         TEXT,
    as_of        TEXT    NOT NULL,
    as_of_us     INTEGER NOT NULL,
    included_seq INTEGER NOT NULL
) STRICT;

CREATE TABLE blocked_cards (
    card       TEXT PRIMARY KEY,
    since_unix INTEGER NOT NULL
) STRICT;

CREATE TABLE rules (
    version       INTEGER PRIMARY KEY,
    body          TEXT    NOT NULL,
    received_unix INTEGER NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    key_id      INTEGER PRIMARY KEY,
    public_key  TEXT NOT NULL,
    valid_until TEXT
) STRICT;

ALTER TABLE sync_state ADD COLUMN pull_cursor TEXT NOT NULL DEFAULT '';
ALTER TABLE sync_state ADD COLUMN halted_reason TEXT;
