//! Identifiers handed to users.

use std::fmt;

use rand::Rng;

/// A sandbox identifier, `sb-` followed by 12 lowercase hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxId(String);

impl SandboxId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let n: u64 = rand::thread_rng().gen();
        Self(format!("sb-{:012x}", n & 0xffff_ffff_ffff))
    }

    /// Parses a user-supplied id; `None` when it is not of the `sb-<hex>` form.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("sb-")?;
        let ok = !hex.is_empty()
            && hex.len() <= 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| Self(s.to_owned()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse() {
        let id = SandboxId::generate();
        assert_eq!(SandboxId::parse(id.as_str()), Some(id));
    }

    #[test]
    fn rejects_foreign_ids() {
        for bad in ["", "sb-", "ctx-12", "sb-XYZ", "sb-../../etc", "sb-12 34"] {
            assert_eq!(SandboxId::parse(bad), None, "{bad}");
        }
    }
}
