-- The cards seen at this till recently (who gets a lease) are no longer an index of
-- `sales` written with every hold, a WAL page of every till sale (README, *Till
-- sales*), for a question asked once per lease sync (every `lease_sync_secs`, 300 s
-- by default). The lease sync folds the sales committed since its last run into
-- `recent_cards` (their entries follow `recent_cards_through_seq`, the entries'
-- own key) and adds the cards of the holds still open (`sales_open_holds`): a
-- fold reads only what is new, and a hold writes nothing for it.
--
-- Seeded with what the dropped index answered: every sale's card and its latest hold.

CREATE TABLE recent_cards (
    card           TEXT    PRIMARY KEY,
    last_seen_unix INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO recent_cards (card, last_seen_unix)
SELECT card, MAX(held_at_unix) FROM sales WHERE card IS NOT NULL GROUP BY card;

ALTER TABLE sync_state ADD COLUMN recent_cards_through_seq INTEGER NOT NULL DEFAULT 0;
UPDATE sync_state SET recent_cards_through_seq = (SELECT COALESCE(MAX(seq), 0) FROM entries);

DROP INDEX sales_cards_by_time;
