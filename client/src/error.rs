//! The errors of the client layer: input that does not fit the protocol.

/// Why a value given by a caller was refused before any call was made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// An id that is not of its kind's form (`sb-<hex>`, `ctx-<hex>`, `run-<hex>`).
    #[error(
        "{kind} id {value:?} is not valid: expected {prefix}- followed by lowercase hex digits"
    )]
    InvalidId {
        /// "sandbox", "context" or "run".
        kind: &'static str,
        /// The prefix ids of that kind carry.
        prefix: &'static str,
        /// What was given.
        value: String,
    },
    /// A run timeout outside 0 (the default) to the maximum.
    #[error(transparent)]
    Timeout(#[from] agent_runtime_proto::limits::BadRunTimeout),
    /// A value outside one of the protocol's closed sets.
    #[error(transparent)]
    UnknownValue(#[from] agent_runtime_proto::sets::UnknownValue),
}
