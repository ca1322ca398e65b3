//! A sandbox's egress policy: which host names may be reached. The name check comes first; the
//! address the name resolves to is checked after (`addr.rs`), whatever the policy.

use agent_runtime_client::NetworkMode;
use agent_runtime_proto::v1::EgressPolicy;
use serde::{Deserialize, Serialize};

use crate::error::HostError;

/// Most entries in `allow_domains` or `deny_domains`.
pub const MAX_ENTRIES: usize = 256;
/// Longest host name (RFC 1035).
const MAX_NAME: usize = 253;

/// A checked policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// none, allowlist or open.
    pub network: NetworkMode,
    /// Names or `*.` wildcards, lower-case, without a trailing dot.
    pub allow: Vec<String>,
    /// Same forms; wins over `allow` and over `open`.
    pub deny: Vec<String>,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            network: NetworkMode::None,
            allow: Vec::new(),
            deny: Vec::new(),
        }
    }
}

/// What the name check decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule (`"open"`, or the allow entry that matched).
    Allowed(String),
    /// Refused, with the line the caller sees.
    Denied(String),
}

impl Policy {
    /// Checks and normalises a policy from the wire (`None`: the default, `none`).
    pub fn from_proto(p: Option<&EgressPolicy>) -> Result<Self, HostError> {
        let Some(p) = p else {
            return Ok(Self::default());
        };
        Self::from_parts(&p.network, &p.allow_domains, &p.deny_domains)
    }

    /// Checks and normalises a policy given as its three fields (`network` empty: `allowlist`
    /// when `allow` has entries, else `none`).
    pub fn from_parts(network: &str, allow: &[String], deny: &[String]) -> Result<Self, HostError> {
        let allow = entries("allow_domains", allow)?;
        let deny = entries("deny_domains", deny)?;
        let network = match network.trim() {
            "" if allow.is_empty() => NetworkMode::None,
            "" => NetworkMode::Allowlist,
            other => other.parse::<NetworkMode>().map_err(|_| {
                HostError::InvalidArgument(format!(
                    "network {other:?}: use \"none\", \"allowlist\" or \"open\""
                ))
            })?,
        };
        if network == NetworkMode::None && !allow.is_empty() {
            return Err(HostError::InvalidArgument(
                "network \"none\" lets nothing out, so allow_domains cannot be set with it; \
                 use network \"allowlist\" (or leave network out)"
                    .into(),
            ));
        }
        if network == NetworkMode::Allowlist && allow.is_empty() {
            return Err(HostError::InvalidArgument(
                "network \"allowlist\" needs at least one allow_domains entry (e.g. \
                 \"github.com\" or \"*.github.com\")"
                    .into(),
            ));
        }
        Ok(Self {
            network,
            allow,
            deny,
        })
    }

    /// The wire form.
    pub fn to_proto(&self) -> EgressPolicy {
        EgressPolicy {
            network: self.network.as_str().to_owned(),
            allow_domains: self.allow.clone(),
            deny_domains: self.deny.clone(),
        }
    }

    /// Whether processes in the sandbox get proxy variables (everything but `none`).
    pub fn proxy_env(&self) -> bool {
        self.network != NetworkMode::None
    }

    /// Decides on a host name (or IP literal) as the client wrote it.
    pub fn decide(&self, host: &str) -> Verdict {
        let name = normalize(host);
        const PREFIX: &str = "blocked by the sandbox's egress policy";
        if let Some(rule) = self.deny.iter().find(|rule| matches(rule, &name)) {
            return Verdict::Denied(format!(
                "{PREFIX}: {name} matches deny_domains entry {rule}"
            ));
        }
        match self.network {
            NetworkMode::None => Verdict::Denied(format!(
                "{PREFIX}: network is \"none\", so nothing leaves this sandbox ({name} included); \
                 create it with allow_domains or change its policy"
            )),
            NetworkMode::Open => Verdict::Allowed("open".into()),
            NetworkMode::Allowlist => match self.allow.iter().find(|rule| matches(rule, &name)) {
                Some(rule) => Verdict::Allowed(rule.clone()),
                None => Verdict::Denied(format!(
                    "{PREFIX}: {name} is not in allow_domains [{}]",
                    self.allow.join(", ")
                )),
            },
        }
    }
}

/// Lower-case, no trailing dot, no IPv6 brackets.
pub fn normalize(host: &str) -> String {
    let h = host.trim().trim_end_matches('.').to_ascii_lowercase();
    match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(inner) => inner.to_owned(),
        None => h,
    }
}

/// Whether `rule` (a name or `*.suffix`) covers `name`. A wildcard covers names strictly under
/// its suffix, at a label boundary: `*.wild.test` covers `a.wild.test` and `a.b.wild.test`, not
/// `wild.test`, `evilwild.test` or `wild.test.evil.test`.
fn matches(rule: &str, name: &str) -> bool {
    match rule.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => rule == name,
    }
}

fn entries(field: &str, raw: &[String]) -> Result<Vec<String>, HostError> {
    if raw.len() > MAX_ENTRIES {
        return Err(HostError::InvalidArgument(format!(
            "{field}: at most {MAX_ENTRIES} entries"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(raw.len());
    for entry in raw {
        let e = normalize(entry);
        let name = e.strip_prefix("*.").unwrap_or(&e);
        let valid = !name.is_empty()
            && e.len() <= MAX_NAME
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(HostError::InvalidArgument(format!(
                "{field} entry {entry:?}: use a host name (\"github.com\") or a wildcard \
                 (\"*.github.com\"); no schemes, ports, paths or other wildcards"
            )));
        }
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(list: &[&str]) -> Policy {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        Policy::from_parts("", &list, &[]).expect("test setup")
    }

    fn allowed(p: &Policy, host: &str) -> bool {
        matches!(p.decide(host), Verdict::Allowed(_))
    }

    #[test]
    fn allowlist_matches_names_and_wildcards_at_label_boundaries() {
        let p = allow(&["allowed.test", "*.wild.test"]);
        assert_eq!(p.network, NetworkMode::Allowlist);
        for ok in [
            "allowed.test",
            "ALLOWED.test.",
            "a.wild.test",
            "x.y.wild.test",
        ] {
            assert!(allowed(&p, ok), "{ok}");
        }
        for bad in [
            "other.test",
            "evil-allowed.test",
            "allowed.test.evil.test",
            "wild.test",
            "evilwild.test",
            "wild.test.evil.test",
            "127.0.0.1",
            "2130706433",
        ] {
            assert!(!allowed(&p, bad), "{bad}");
        }
        let Verdict::Denied(why) = p.decide("evil.test") else {
            panic!()
        };
        assert_eq!(
            why,
            "blocked by the sandbox's egress policy: evil.test is not in allow_domains \
             [allowed.test, *.wild.test]"
        );
    }

    #[test]
    fn deny_wins_and_none_denies_everything() {
        let deny = vec!["*.bad.test".to_string()];
        let p = Policy::from_parts("open", &[], &deny).expect("test setup");
        assert!(allowed(&p, "good.test"));
        assert!(!allowed(&p, "x.bad.test"));
        let none = Policy::default();
        assert!(!none.proxy_env());
        assert!(!allowed(&none, "allowed.test"));
    }

    #[test]
    fn bad_policies_are_refused_with_a_reason() {
        for (net, allow) in [
            ("sometimes", vec![]),
            ("allowlist", vec![]),
            ("none", vec!["a.test".to_string()]),
            ("", vec!["https://a.test".to_string()]),
            ("", vec!["a.test:443".to_string()]),
            ("", vec!["*".to_string()]),
            ("", vec!["a.*.test".to_string()]),
            ("", vec!["".to_string()]),
        ] {
            assert!(
                Policy::from_parts(net, &allow, &[]).is_err(),
                "{net} {allow:?}"
            );
        }
    }
}
