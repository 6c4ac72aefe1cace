-- Points never spent twice (escrow): leases HQ granted this till, what each sale
-- reserved at HQ and drew from a lease, the lease sync epoch, and HQ's figures of
-- what other terminals hold of a card. Existing rows read as "nothing reserved,
-- nothing leased", which is what they were.

-- Points of a card HQ moved into this till's escrow. `closed_seq`: the LeaseClosed
-- entry that ended it (NULL while open). What the lease has paid for is read from
-- the sales that drew on it, never stored twice.
CREATE TABLE leases (
    lease_id        TEXT    PRIMARY KEY,
    card            TEXT    NOT NULL,
    points          INTEGER NOT NULL CHECK (points >= 0),
    expires_at_unix INTEGER NOT NULL,
    closed_seq      INTEGER REFERENCES entries (seq)
) STRICT;

CREATE INDEX leases_open_by_card ON leases (card) WHERE closed_seq IS NULL;

-- A sale's points split: reserved at HQ, and drawn from one of this till's leases.
ALTER TABLE sales ADD COLUMN reserved_points INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sales ADD COLUMN lease_id TEXT REFERENCES leases (lease_id);
ALTER TABLE sales ADD COLUMN lease_points INTEGER NOT NULL DEFAULT 0;

CREATE INDEX sales_by_lease ON sales (lease_id) WHERE lease_id IS NOT NULL;
-- Cards seen at this till recently (who gets a lease).
CREATE INDEX sales_cards_by_time ON sales (held_at_unix, card) WHERE card IS NOT NULL;

-- What other terminals hold of the card at HQ (reservations, open leases).
ALTER TABLE cards ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE cards ADD COLUMN leased INTEGER NOT NULL DEFAULT 0;

-- Lease syncs carry an epoch higher than every earlier one (HQ refuses older).
ALTER TABLE sync_state ADD COLUMN lease_epoch INTEGER NOT NULL DEFAULT 0;
