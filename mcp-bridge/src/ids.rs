//! Identifiers that cross the bridge: sandbox and context ids.

use std::fmt;

/// A sandbox id ("sb-…"), as the host hands it out.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SandboxId(String);

impl SandboxId {
    /// Wraps an id the caller or the host gave.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into().trim().to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A context id ("ctx-…").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ContextId(String);

impl ContextId {
    /// Wraps an id the caller or a sandbox gave.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into().trim().to_owned())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContextId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
