//! The limit on open files: every connection is one, and the usual default soft limit (1,024)
//! is below what `run`, `serve` and `proxy` are for. The binary raises the soft limit to the hard
//! one at start-up (as Go programs do); `run` checks that its clients fit before opening any; the
//! servers hold as many connections as the limit allows by default, and warn when a
//! `--max-connections` given on the command line cannot all be open.

use std::io;

/// Files a process keeps open besides its connections (standard streams, the runtime's event
/// descriptors, the results being written), with room to spare.
pub const RESERVED: u64 = 64;

/// Connections a server holds at once when `--max-connections` is not given, where the open-file
/// limit allows that many.
pub const DEFAULT_CONNECTIONS: u32 = 10_000;

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
fn warn_if_short(connections: u64, per_connection: u64) {
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

/// The connections a server holds at once, at `per_connection` files each: `explicit` when the
/// command line gives it, otherwise `DEFAULT_CONNECTIONS` lowered to what the open-file limit
/// allows.
pub fn max_connections(explicit: Option<u32>, per_connection: u64) -> usize {
    match explicit {
        Some(connections) => connections as usize,
        None => default_connections(current_limit(), per_connection),
    }
}

/// Says what bounds the server's connections when the open-file limit matters: a warning when an
/// `explicit` bound cannot all be open, a note when the default was lowered to fit. Called once
/// the server listens, so that a start-up error is the only thing a failed start prints.
pub fn explain_bound(explicit: Option<u32>, per_connection: u64) {
    match explicit {
        Some(connections) => warn_if_short(u64::from(connections), per_connection),
        None => {
            let limit = current_limit();
            let connections = default_connections(limit, per_connection);
            if connections < DEFAULT_CONNECTIONS as usize {
                tracing::info!(
                    "holding at most {connections} connections at once: the open-file limit \
                     ({} files) allows that many at {per_connection} per connection; \
                     --max-connections sets another bound",
                    limit.unwrap_or_default()
                );
            }
        }
    }
}

/// `DEFAULT_CONNECTIONS`, or fewer where `limit` cannot hold them (at least one).
fn default_connections(limit: Option<u64>, per_connection: u64) -> usize {
    let fit = limit.map_or(u64::MAX, |limit| {
        limit.saturating_sub(RESERVED) / per_connection.max(1)
    });
    fit.clamp(1, u64::from(DEFAULT_CONNECTIONS)) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_bound_fits_under_the_limit() {
        assert_eq!(default_connections(None, 2), 10_000);
        assert_eq!(default_connections(Some(1_048_576), 2), 10_000);
        // This machine's kind: a hard limit of 20,000 cannot hold 10,000 proxied connections.
        assert_eq!(default_connections(Some(20_000), 2), 9_968);
        assert_eq!(default_connections(Some(20_000), 1), 10_000);
        assert!(needed(9_968, 2) <= 20_000);
        assert_eq!(default_connections(Some(1_024), 1), 960);
        assert_eq!(default_connections(Some(10), 2), 1);
    }

    #[test]
    fn the_raised_limit_is_the_one_in_force() {
        let raised = raise_to_hard_limit().expect("reads and sets the limit");
        assert_eq!(current_limit(), Some(raised));
        let (_, hard) = rlimit::Resource::NOFILE.get().expect("reads the limit");
        assert_eq!(raised, hard);
    }
}
