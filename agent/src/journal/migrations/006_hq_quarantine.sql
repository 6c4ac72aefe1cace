-- Entries of this terminal HQ stored but could not apply (its quarantine, from the
-- push answers): how many, and the highest seq, which also keeps an answer repeated
-- after a lost one from counting an entry twice.
ALTER TABLE sync_state ADD COLUMN hq_quarantined INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN hq_quarantined_last_seq INTEGER;
