//! Decoding and rendering limits: every one has a default and can be set by the caller.

/// Bounds that keep hostile input from costing more than O(input) time, memory and stack.
///
/// Declared lengths and counts are always checked against the bytes left before anything is
/// allocated; these are the limits a caller may tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deepest container nesting accepted, when decoding, encoding or resolving references.
    /// Each level costs up to about 5.5 KiB of stack in a debug build (less in release), so the
    /// default fits a 2 MiB thread with room to spare; beyond `MAX_SAFE_DEPTH`, only with a
    /// bigger stack.
    pub max_depth: usize,
    /// Resolving references (canonical JSON, readable text) may produce at most this many times
    /// the nodes and string bytes of the value as decoded...
    pub expansion_factor: usize,
    /// ...or this many, whichever is larger.
    pub expansion_floor: usize,
}

impl Limits {
    /// The default depth limit: far above any real RPC payload, far below any stack limit.
    pub const DEFAULT_MAX_DEPTH: usize = 128;

    /// The deepest limit the command line accepts: a value this deep decodes, encodes, renders and
    /// drops on a 2 MiB thread (a server's worker) with room to spare. In optimized builds nested
    /// objects, the costliest, overflow such a stack between 1,200 and 1,500 levels; a debug
    /// build's larger frames overflow it between 256 and 320, so there the bound is the default.
    pub const MAX_SAFE_DEPTH: usize = if cfg!(debug_assertions) {
        Self::DEFAULT_MAX_DEPTH
    } else {
        512
    };

    /// The work budget for resolving references in a value of `size` nodes.
    pub fn expansion_budget(&self, size: usize) -> usize {
        size.saturating_mul(self.expansion_factor)
            .max(self.expansion_floor)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            expansion_factor: 16,
            expansion_floor: 1 << 20,
        }
    }
}
