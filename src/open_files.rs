//! The limit on open files: every connection is one, and the usual default soft limit (1,024)
//! is below what `run`, `serve` and `proxy` are for. The binary raises the soft limit to the hard
//! one at start-up (as Go programs do); `run` checks that its clients fit before opening any, and
//! the servers warn when their `--max-connections` cannot all be open.

use std::io;

/// Files a process keeps open besides its connections (standard streams, the runtime's event
/// descriptors, the results being written), with room to spare.
pub const RESERVED: u64 = 64;

/// Files `connections` need at once, at `per_connection` each, with the reserve.
pub fn needed(connections: u64, per_connection: u64) -> u64 {
    connections
        .saturating_mul(per_connection)
        .saturating_add(RESERVED)
}

/// Raises this process's soft limit on open files to its hard limit and returns the limit now
/// in force (unchanged where the platform has no such limit).
pub fn raise_to_hard_limit() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// This process's soft limit on open files, or `None` where there is none to read.
pub fn current_limit() -> Option<u64> {
    if !rlimit::Resource::NOFILE.is_supported() {
        return None;
    }
    rlimit::Resource::NOFILE
        .get()
        .ok()
        .map(|(soft, _hard)| soft)
}

/// Warns at start-up when `connections` at `per_connection` files each would not fit under the
/// limit: past it, accepts fail one by one while the server runs.
pub fn warn_if_short(connections: u64, per_connection: u64) {
    let Some(limit) = current_limit() else {
        return;
    };
    let needed = needed(connections, per_connection);
    if needed > limit {
        tracing::warn!(
            "--max-connections {connections} needs {needed} open files ({per_connection} per \
             connection, and {RESERVED} more), but this process may open {limit}; accepts past \
             that will fail: raise the hard limit (`ulimit -Hn`) or lower --max-connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raised_limit_is_the_one_in_force() {
        let raised = raise_to_hard_limit().expect("reads and sets the limit");
        assert_eq!(current_limit(), Some(raised));
        let (_, hard) = rlimit::Resource::NOFILE.get().expect("reads the limit");
        assert_eq!(raised, hard);
    }
}
