//! Codec errors: each says what was wrong and, when decoding, at which byte offset.

use std::fmt;

/// Why an input could not be decoded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte offset {offset}")]
pub struct DecodeError {
    /// Offset of the first byte of the offending item in the input.
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// Which reference table a reference indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// The AMF3 string table.
    Strings,
    /// The AMF3 trait table.
    Traits,
    /// The AMF3 or AMF0 object table.
    Objects,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Strings => "string",
            Table::Traits => "trait",
            Table::Objects => "object",
        })
    }
}

/// What was wrong with a decoded input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ended inside an item of fixed size.
    #[error("input ends inside {what}: {needed} bytes needed, {available} left")]
    UnexpectedEnd {
        /// What was being read.
        what: &'static str,
        /// Bytes the item needs.
        needed: usize,
        /// Bytes left in the input.
        available: usize,
    },
    /// A declared length or count cannot fit in what is left of the input.
    #[error("{what} declares {declared}, but only {available} bytes are left")]
    LengthPastEnd {
        /// What declared it (e.g. "string length", "array count").
        what: &'static str,
        /// The declared length or count.
        declared: u64,
        /// Bytes left in the input.
        available: usize,
    },
    /// A type marker that is not part of the format.
    #[error("invalid {format} type marker 0x{marker:02x}")]
    InvalidMarker {
        /// "AMF0" or "AMF3".
        format: &'static str,
        /// The marker byte.
        marker: u8,
    },
    /// A marker the format reserves but that no peer may send (AMF0 movieclip, recordset, object-end).
    #[error("AMF0 marker 0x{marker:02x} ({name}) is not allowed here")]
    UnsupportedMarker {
        /// The marker byte.
        marker: u8,
        /// Its name in the specification.
        name: &'static str,
    },
    /// Text that is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// What the text was (string, member name, class name...).
        what: &'static str,
    },
    /// A reference to a table entry that does not exist.
    #[error("{table} reference {index} is out of range: the table holds {len}")]
    ReferenceOutOfRange {
        /// The table.
        table: Table,
        /// The index sent.
        index: u32,
        /// How many entries the table holds.
        len: usize,
    },
    /// Containers nested deeper than the configured limit.
    #[error("nesting deeper than the limit of {limit}")]
    TooDeep {
        /// The configured depth limit.
        limit: usize,
    },
    /// An externalizable class whose external format is not registered.
    #[error(
        "unknown externalizable class \"{class_name}\": its format is not known; {remaining} bytes remain undecoded: {remainder_hex}"
    )]
    UnknownExternalizable {
        /// The class alias.
        class_name: String,
        /// How many bytes were left undecoded.
        remaining: usize,
        /// Hex of the first undecoded bytes (at most 64).
        remainder_hex: String,
    },
    /// AMF0 object members that do not end with 00 00 09.
    #[error("AMF0 object end marker expected after an empty member name, found 0x{found:02x}")]
    MissingObjectEnd {
        /// The byte found instead of 0x09.
        found: u8,
    },
    /// Bytes after a complete value, where the input should end.
    #[error("{count} bytes follow the value")]
    TrailingBytes {
        /// How many bytes are left over.
        count: usize,
    },
}

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A `Value::Reference` to an object-table entry that has not been written yet.
    #[error("reference {index} points past the {written} objects written so far")]
    DanglingReference {
        /// The reference index.
        index: u32,
        /// Objects written before it.
        written: usize,
    },
    /// A dynamic member or associative key with an empty name, which would end the list on the wire.
    #[error("a dynamic member or associative key has an empty name")]
    EmptyKey,
    /// An object declares more sealed members than it has.
    #[error(
        "object of class \"{class_name}\" declares {sealed_count} sealed members but has {members}"
    )]
    SealedCountTooLarge {
        /// The class alias.
        class_name: String,
        /// The declared count.
        sealed_count: usize,
        /// Members present.
        members: usize,
    },
    /// A length that the format cannot express (e.g. an AMF3 string of 2^28 bytes or more).
    #[error("{what} of {len} is longer than the format allows")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// Containers nested deeper than the configured limit.
    #[error("nesting deeper than the limit of {limit}")]
    TooDeep {
        /// The configured depth limit.
        limit: usize,
    },
}

/// Why a value could not be rendered (canonical JSON or readable text) or detached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A reference to an object-table entry that does not exist in its scope.
    #[error("reference {index} is out of range: the object table holds {len}")]
    ReferenceOutOfRange {
        /// The reference index.
        index: u32,
        /// Entries in the scope's table.
        len: usize,
    },
    /// Resolving references would produce more than the work budget allows.
    #[error("resolving references exceeds the work budget of {budget} (value of {size} nodes)")]
    ExpansionBudget {
        /// The budget.
        budget: usize,
        /// Nodes in the value as decoded.
        size: usize,
    },
    /// Resolving references nests deeper than the depth limit.
    #[error("resolving references nests deeper than the limit of {limit}")]
    TooDeep {
        /// The configured depth limit.
        limit: usize,
    },
}
