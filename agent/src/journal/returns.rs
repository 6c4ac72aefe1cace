//! The `returns` table: one row per return the till recorded, with its answer (kept
//! so that a repeated request gets the very same answer).

use super::sales::StoredRequest;
use super::{JournalError, Tx};
use protocol::{ReceiptId, ReturnId, Seq};
use rusqlite::{OptionalExtension, params};

/// A new return to record.
#[derive(Debug, Clone, Copy)]
pub struct NewReturn<'a> {
    /// Return number.
    pub return_id: &'a ReturnId,
    /// The sale returned.
    pub receipt_id: &'a ReceiptId,
    /// Hash of the request body.
    pub request_hash: &'a str,
    /// The return's journal entry.
    pub entry_seq: Seq,
    /// The JSON answer the till gets.
    pub answer: &'a str,
}

impl Tx<'_> {
    /// The request recorded as `return_id` and the answer it got, if any.
    pub fn return_request(
        &self,
        return_id: &ReturnId,
    ) -> Result<Option<StoredRequest>, JournalError> {
        Ok(self
            .inner
            .prepare_cached("SELECT request_hash, response FROM returns WHERE return_id = ?1")?
            .query_row([return_id.as_str()], |r| {
                Ok(StoredRequest {
                    request_hash: r.get(0)?,
                    answer: r.get(1)?,
                })
            })
            .optional()?)
    }

    /// Records a return.
    pub fn insert_return(&self, ret: &NewReturn<'_>) -> Result<(), JournalError> {
        self.inner
            .prepare_cached(
                "INSERT INTO returns (return_id, receipt_id, request_hash, entry_seq, response) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                ret.return_id.as_str(),
                ret.receipt_id.as_str(),
                ret.request_hash,
                ret.entry_seq.get(),
                ret.answer
            ])?;
        Ok(())
    }
}
