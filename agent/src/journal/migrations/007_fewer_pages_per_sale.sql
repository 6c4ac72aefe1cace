-- Two indexes that cost a page in the WAL of every till sale and that the reads do
-- not need (README, *Till sales*):
-- - `entries_by_card` repeats the key of `card_running` (card, seq), which has a row
--   for every entry of a card: a card's newest entries are found there, then read by seq.
-- - `sales_holds_by_card`: open holds are the few sales not yet committed or
--   cancelled, all in `sales_open_holds`; a card's open holds are read from that.
-- The offline caps' reads of entries now use `entries_offline_redemptions` (the day's
-- or the offline period's redemptions) instead of a card's whole history.
DROP INDEX entries_by_card;
DROP INDEX sales_holds_by_card;
