//! The push's statements on PostgreSQL, one pipelined flight per group.

use super::session::PgSession;
use crate::store::statements::PushRows;

impl PushRows for PgSession<'_> {}
