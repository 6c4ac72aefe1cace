-- Open holds are found from the newest sale instead of an index of them. The index
-- `sales_open_holds` gained an entry with every hold and lost it with the commit: a
-- WAL page of each of a till sale's two transactions, a quarter of the pages a sale
-- writes (docs/performance.md, *Till sales*). Sales are rows of one table in the
-- order they were opened (rowids only grow, and no sale is ever deleted), and a
-- sale's state never returns to `held`, so every hold still open is at most
-- `open_back` rows before the newest sale, which records that distance when it is
-- opened (`sales::insert_hold`): the reads of open holds scan the rows from there,
-- the last one or two at a till that commits what it holds. A distance, not a
-- rowid, so that a VACUUM that renumbers the rows can only make the scan longer.
-- A NULL distance reads as "from the first sale".
--
-- Seeded on the newest sale with the distance to the oldest hold still open.

ALTER TABLE sales ADD COLUMN open_back INTEGER;

UPDATE sales
SET open_back = rowid - COALESCE((SELECT MIN(rowid) FROM sales WHERE state = 'held'), rowid)
WHERE rowid = (SELECT MAX(rowid) FROM sales);

DROP INDEX sales_open_holds;
