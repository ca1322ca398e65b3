//! Identifiers handed to users: `sb-…` sandboxes, `ctx-…` contexts, `run-…` runs. Each is its
//! prefix, a dash and 1 to 32 lowercase hex digits; fresh ones carry 12.

use std::fmt;
use std::str::FromStr;

use crate::error::ClientError;

/// Hex digits in a freshly generated id.
const GENERATED_HEX: usize = 12;
/// Most hex digits an id may carry.
const MAX_HEX: usize = 32;

/// Whether `s` is `prefix-` followed by 1..=32 lowercase hex digits.
fn well_formed(s: &str, prefix: &str) -> bool {
    let Some(hex) = s
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    !hex.is_empty()
        && hex.len() <= MAX_HEX
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `prefix-` and 12 random lowercase hex digits.
fn fresh(prefix: &str) -> String {
    let n = random_u64() & ((1u64 << (4 * GENERATED_HEX)) - 1);
    format!("{prefix}-{n:0width$x}", width = GENERATED_HEX)
}

/// 64 random bits from the operating system; should it fail, from std's randomly keyed hasher
/// (ids name things, they are not secrets: ownership is checked separately).
fn random_u64() -> u64 {
    if let Ok(bytes) = agent_runtime_proto::auth::random::<8>() {
        return u64::from_le_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with (before the dash).
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random id.
            pub fn generate() -> Self {
                Self(fresh($prefix))
            }

            /// Parses a user-supplied id (surrounding whitespace ignored); `None` when it is not
            /// of this kind's form.
            pub fn parse(s: &str) -> Option<Self> {
                let s = s.trim();
                well_formed(s, $prefix).then(|| Self(s.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ClientError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s).ok_or_else(|| ClientError::InvalidId {
                    kind: $kind,
                    prefix: $prefix,
                    value: s.to_owned(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

id_type!(
    /// A sandbox identifier, `sb-` and hex digits, as the host hands it out.
    SandboxId,
    "sb",
    "sandbox"
);
id_type!(
    /// A context identifier, `ctx-` and hex digits, as sandboxd hands it out.
    ContextId,
    "ctx",
    "context"
);
id_type!(
    /// A run identifier, `run-` and hex digits, carried by every event of one Exec/RunCode call.
    RunId,
    "run",
    "run"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        let id = SandboxId::generate();
        assert_eq!(id.as_str().len(), 3 + GENERATED_HEX);
        assert_eq!(SandboxId::parse(id.as_str()), Some(id.clone()));
        assert_ne!(SandboxId::generate(), id);
        let ctx = ContextId::generate();
        assert!(ctx.as_str().starts_with("ctx-"), "{ctx}");
        assert_eq!(ctx.as_str().parse::<ContextId>().ok(), Some(ctx));
        assert!(RunId::generate().to_string().starts_with("run-"));
    }

    #[test]
    fn rejects_foreign_ids() {
        for bad in [
            "",
            "sb-",
            "sb",
            "ctx-12",
            "sb-XYZ",
            "sb-ABC",
            "sb-../../etc",
            "sb-12 34",
            "sb-000000000000000000000000000000000",
        ] {
            assert_eq!(SandboxId::parse(bad), None, "{bad}");
        }
        assert_eq!(ContextId::parse("sb-12"), None);
        assert_eq!(RunId::parse("run-xyz"), None);
    }

    #[test]
    fn trims_and_reports() {
        assert_eq!(
            SandboxId::parse(" sb-3f2\n").map(String::from),
            Some("sb-3f2".to_owned())
        );
        let err = "ctx-nope".parse::<ContextId>().err();
        assert_eq!(
            err.map(|e| e.to_string()),
            Some(
                "context id \"ctx-nope\" is not valid: expected ctx- followed by lowercase hex \
                 digits"
                    .to_owned()
            )
        );
    }

    #[test]
    fn serializes_as_a_string() {
        let id = SandboxId::parse("sb-1").map(|i| serde_json::to_string(&i).ok());
        assert_eq!(id, Some(Some("\"sb-1\"".to_owned())));
    }
}
