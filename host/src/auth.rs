//! Bearer tokens on the host's gRPC API, and who a call comes from.
//!
//! `serve --token-file FILE` turns authentication on: each non-empty line that is not a `#`
//! comment is `NAME:TOKEN`. Every `Sandboxes` call and every forwarded `Sandbox` call must then
//! carry `authorization: Bearer TOKEN`; health and reflection stay open (they reveal nothing).
//! A sandbox belongs to the token (name) that created it and is invisible to every other. Without
//! a token file every caller is [`ANONYMOUS`] and the host refuses to listen beyond loopback.
//! Tokens are never logged; only their names are.

use std::collections::HashMap;
use std::path::Path;

use sha2::{Digest, Sha256};
use tonic::Status;

pub use crate::sandboxes::ANONYMOUS;

/// Shortest token accepted, so that a guessable one is refused at start.
const MIN_TOKEN_LEN: usize = 16;

/// The caller of one request, as authentication established it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    /// The caller when the host has no tokens.
    pub fn anonymous() -> Self {
        Self(ANONYMOUS.to_owned())
    }
}

/// The tokens a host accepts, by the SHA-256 of the token (the lookup then reveals nothing of
/// a token through timing).
#[derive(Clone, Debug, Default)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], String>,
}

impl Tokens {
    /// Reads a token file (see the module doc).
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("token file {}: {e}", path.display()))
    }

    /// Parses token-file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut by_hash = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, token)) = line.split_once(':') else {
                return Err(format!("line {}: write NAME:TOKEN", n + 1));
            };
            let (name, token) = (name.trim(), token.trim());
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !name_ok || name == ANONYMOUS {
                return Err(format!(
                    "line {}: a name uses letters, digits, '-', '_' and '.' (at most 64) and is not {ANONYMOUS:?}",
                    n + 1
                ));
            }
            if token.len() < MIN_TOKEN_LEN || token.contains(char::is_whitespace) {
                return Err(format!(
                    "line {}: the token of {name:?} must be at least {MIN_TOKEN_LEN} characters without spaces",
                    n + 1
                ));
            }
            if by_hash.insert(hash(token), name.to_owned()).is_some() {
                return Err(format!("line {}: this token is already listed", n + 1));
            }
        }
        if by_hash.is_empty() {
            return Err("no tokens in it".into());
        }
        Ok(Self { by_hash })
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Decides who a call comes from.
#[derive(Clone, Debug, Default)]
pub struct Gate {
    tokens: Option<std::sync::Arc<Tokens>>,
}

impl Gate {
    /// A gate requiring one of `tokens`, or letting everyone in as anonymous when `None`.
    pub fn new(tokens: Option<Tokens>) -> Self {
        Self {
            tokens: tokens.map(std::sync::Arc::new),
        }
    }

    /// Whether tokens are required (and sandboxes therefore owned per token).
    pub fn enforced(&self) -> bool {
        self.tokens.is_some()
    }

    /// The caller named by an `authorization` header value.
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Caller, Status> {
        let Some(tokens) = &self.tokens else {
            return Ok(Caller::anonymous());
        };
        let Some(value) = authorization else {
            return Err(Status::unauthenticated(
                "this host requires a token: send `authorization: Bearer <token>` \
                 (AGENT_RUNTIME_TOKEN for agent-runtime and mcp-bridge)",
            ));
        };
        let value = std::str::from_utf8(value).unwrap_or_default().trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .unwrap_or_default();
        match tokens.by_hash.get(&hash(token)) {
            Some(name) if !token.is_empty() => Ok(Caller(name.clone())),
            _ => Err(Status::unauthenticated(
                "the bearer token is not valid for this host",
            )),
        }
    }

    /// Whether `caller` may see and use a sandbox owned by `owner`.
    pub fn may_use(&self, caller: &Caller, owner: &str) -> bool {
        !self.enforced() || caller.0 == owner
    }

    /// A tonic interceptor that authenticates and stores the [`Caller`] in the request.
    pub fn interceptor(
        &self,
    ) -> impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, Status> + Clone {
        let gate = self.clone();
        move |mut req: tonic::Request<()>| {
            let caller = gate.check(
                req.metadata()
                    .get("authorization")
                    .map(|v| v.as_encoded_bytes()),
            )?;
            req.extensions_mut().insert(caller);
            Ok(req)
        }
    }
}

/// The caller a request was authenticated as (anonymous when the gate did not run).
pub fn caller_of<T>(req: &tonic::Request<T>) -> Caller {
    req.extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or_else(Caller::anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_parse_and_bad_lines_are_named() {
        let t = Tokens::parse("# ops\nalice:0123456789abcdef0\n\nbob : fedcba9876543210x\n")
            .expect("valid");
        assert_eq!(t.len(), 2);
        assert!(Tokens::parse("alice:short")
            .expect_err("refused")
            .contains("line 1"));
        assert!(Tokens::parse("novalue")
            .expect_err("refused")
            .contains("NAME:TOKEN"));
        assert!(Tokens::parse("anonymous:0123456789abcdef0").is_err());
        assert!(Tokens::parse("# nothing\n").is_err());
    }

    #[test]
    fn the_gate_names_callers_and_refuses_strangers() {
        let gate = Gate::new(Some(
            Tokens::parse("alice:0123456789abcdef0").expect("valid"),
        ));
        assert_eq!(
            gate.check(Some(b"Bearer 0123456789abcdef0")).expect("ok"),
            Caller("alice".into())
        );
        assert_eq!(
            gate.check(Some(b"Bearer nope"))
                .expect_err("refused")
                .code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            gate.check(None).expect_err("refused").code(),
            tonic::Code::Unauthenticated
        );
        assert!(!gate.may_use(&Caller("bob".into()), "alice"));
        let open = Gate::new(None);
        assert_eq!(open.check(None).expect("open"), Caller::anonymous());
        assert!(open.may_use(&Caller::anonymous(), "alice"));
    }
}
