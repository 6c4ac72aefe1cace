-- Running total of each card's points effects, per entry: the points this terminal
-- added to a card after seq N are two indexed lookups instead of a scan over the
-- card's whole history (a loyal customer's thousandth visit costs the same as the first).

CREATE TABLE card_running (
    card    TEXT    NOT NULL,
    seq     INTEGER NOT NULL REFERENCES entries (seq),
    running INTEGER NOT NULL,
    PRIMARY KEY (card, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO card_running (card, seq, running)
SELECT card, seq, SUM(delta_balance) OVER (PARTITION BY card ORDER BY seq)
FROM entries
WHERE card IS NOT NULL;

-- Points still pending for a card: only entries maturing in the future are read.
CREATE INDEX entries_pending_by_card ON entries (card, matures_at_unix)
    WHERE matures_at_unix IS NOT NULL;
