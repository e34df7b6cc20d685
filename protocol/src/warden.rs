//! The server → warden channel: how a server tells its warden which
//! process groups to kill if the server dies.
//!
//! The warden is the exec wrapper started as `WRAPPER --warden FD
//! [CGROUP-DIR]` with the read end of a pipe at `FD`. The server holds the
//! write end and nothing else does, so the warden reads end of file exactly
//! when the server has gone, however it went. Each record is
//! [`WARDEN_RECORD_LEN`] bytes: an opcode (`+` track, `-` untrack) and a
//! little-endian `i32` process group id. Records are shorter than
//! `PIPE_BUF`, so concurrent writers never interleave them.

/// The wrapper's first argument that makes it the warden.
pub const WARDEN_FLAG: &str = "--warden";

/// The length of one record on the warden's pipe.
pub const WARDEN_RECORD_LEN: usize = 5;

/// One instruction to the warden.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WardenRecord {
    /// Kill this process group if the server dies.
    Track(i32),
    /// The group's leader is about to be reaped: forget it, so that its
    /// number, once free, is never signalled.
    Untrack(i32),
}

impl WardenRecord {
    pub fn encode(self) -> [u8; WARDEN_RECORD_LEN] {
        let (op, pgid) = match self {
            WardenRecord::Track(pgid) => (b'+', pgid),
            WardenRecord::Untrack(pgid) => (b'-', pgid),
        };
        let mut record = [0; WARDEN_RECORD_LEN];
        record[0] = op;
        record[1..].copy_from_slice(&pgid.to_le_bytes());
        record
    }

    /// `None` for an unknown opcode or a group id that could never be one
    /// (0, negative or 1: signalling those would reach far more than a
    /// session's children).
    pub fn decode(record: &[u8; WARDEN_RECORD_LEN]) -> Option<WardenRecord> {
        let pgid = i32::from_le_bytes([record[1], record[2], record[3], record[4]]);
        if pgid <= 1 {
            return None;
        }
        match record[0] {
            b'+' => Some(WardenRecord::Track(pgid)),
            b'-' => Some(WardenRecord::Untrack(pgid)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_dangerous_groups_are_refused() {
        for record in [WardenRecord::Track(4242), WardenRecord::Untrack(i32::MAX)] {
            assert_eq!(WardenRecord::decode(&record.encode()), Some(record));
        }
        for pgid in [0, 1, -1, i32::MIN] {
            assert_eq!(
                WardenRecord::decode(&WardenRecord::Track(pgid).encode()),
                None
            );
        }
        let mut unknown = WardenRecord::Track(7).encode();
        unknown[0] = b'?';
        assert_eq!(WardenRecord::decode(&unknown), None);
    }
}
