//! Refs an agent can trust. Playwright's AI-mode aria snapshot names elements `e5` (or `f1e3` in
//! a frame), but those names restart with every document and only resolve against the latest
//! snapshot. So each element also gets a key, stored on the element itself, and the agent sees
//! `ref_N` for the key: the same element keeps its ref for as long as it exists, a ref is never
//! handed to another element, and resolving a ref checks the key, so a stale ref fails at once.

use std::collections::HashMap;

use playwright_rs::protocol::{Locator, Page};

use super::error::{BrowserError, Result};
use super::js;

/// How long a CSS selector may take to match before the call fails.
const SELECTOR_WAIT_MS: u64 = 5_000;

/// Where an agent's ref points.
#[derive(Debug, Clone)]
struct Entry {
    /// The key stored on the element.
    key: String,
    /// Its aria ref in the snapshot that last saw it.
    aria: String,
}

/// All refs handed out in this sandbox's browser; survives browser restarts so no ref is reused.
#[derive(Debug, Default)]
pub struct Refs {
    next_ref: u64,
    next_key: u64,
    by_key: HashMap<String, String>,
    entries: HashMap<String, Entry>,
}

impl Refs {
    /// A fresh key to offer an element that has none.
    pub fn propose_key(&mut self) -> String {
        self.next_key += 1;
        format!("k{}", self.next_key)
    }

    /// The agent's ref for the element with `key`, now seen as `aria`.
    pub fn ref_for(&mut self, key: &str, aria: &str) -> String {
        let id = match self.by_key.get(key) {
            Some(id) => id.clone(),
            None => {
                self.next_ref += 1;
                let id = format!("ref_{}", self.next_ref);
                self.by_key.insert(key.to_string(), id.clone());
                id
            }
        };
        self.entries.insert(
            id.clone(),
            Entry {
                key: key.to_string(),
                aria: aria.to_string(),
            },
        );
        id
    }

    /// Forgets where elements are (a new browser): refs stay used, none resolves.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.by_key.clear();
    }

    fn entry(&self, id: &str) -> Result<Entry> {
        self.entries
            .get(normalize(id).as_str())
            .cloned()
            .ok_or_else(|| BrowserError::UnknownRef(id.to_string()))
    }
}

/// Accepts `ref_3`, `3` and `[ref_3]` for the same ref.
fn normalize(id: &str) -> String {
    let id = id.trim().trim_start_matches('[').trim_end_matches(']');
    let id = id.strip_prefix("ref=").unwrap_or(id);
    if id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty() {
        format!("ref_{id}")
    } else {
        id.to_string()
    }
}

/// What an action is aimed at: a selector or a ref, exactly one.
pub enum Target {
    /// A CSS (or Playwright) selector.
    Selector(String),
    /// A ref from a snapshot.
    Ref(String),
}

impl Target {
    /// From the two request fields; exactly one must be set.
    pub fn from_fields(selector: &str, ref_id: &str) -> Result<Self> {
        match (selector.trim().is_empty(), ref_id.trim().is_empty()) {
            (false, true) => Ok(Self::Selector(selector.to_string())),
            (true, false) => Ok(Self::Ref(ref_id.trim().to_string())),
            (true, true) => Err(BrowserError::invalid(
                "give a ref_id from browser_snapshot (e.g. \"ref_3\") or a CSS selector",
            )),
            (false, false) => Err(BrowserError::invalid(
                "give either ref_id or selector, not both",
            )),
        }
    }

    /// From an optional proto target; `None` when it names nothing.
    pub fn optional(
        target: Option<&agent_runtime_proto::v1::BrowserTarget>,
    ) -> Result<Option<Self>> {
        match target {
            None => Ok(None),
            Some(t) if t.selector.trim().is_empty() && t.ref_id.trim().is_empty() => Ok(None),
            Some(t) => Self::from_fields(&t.selector, &t.ref_id).map(Some),
        }
    }

    /// From a proto target that must name an element.
    pub fn required(target: Option<&agent_runtime_proto::v1::BrowserTarget>) -> Result<Self> {
        Self::optional(target)?.ok_or_else(|| {
            BrowserError::invalid(
                "give a target: ref_id from browser_snapshot (e.g. \"ref_3\") or a CSS selector",
            )
        })
    }

    /// The element on `page`, checked to exist now: an unknown or stale ref, or a selector that
    /// matches nothing within a few seconds, fails here instead of after an action timeout.
    pub async fn resolve(&self, page: &Page, refs: &Refs) -> Result<Locator> {
        match self {
            Self::Selector(selector) => {
                let locator = page.locator(selector.clone());
                let waited = std::time::Instant::now();
                let deadline = waited + std::time::Duration::from_millis(SELECTOR_WAIT_MS);
                loop {
                    let count = locator.count().await?;
                    if count == 1 {
                        return Ok(locator);
                    }
                    if count > 1 {
                        return Err(BrowserError::invalid(format!(
                            "selector {selector:?} matches {count} elements; make it match one \
                             (e.g. add :nth-match, or use a ref from browser_snapshot)"
                        )));
                    }
                    if std::time::Instant::now() >= deadline {
                        return Err(BrowserError::NoMatch {
                            selector: selector.clone(),
                            waited_ms: SELECTOR_WAIT_MS,
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
            Self::Ref(id) => {
                let entry = refs.entry(id)?;
                let locator = page.get_by_ref(&entry.aria);
                let key: Option<String> = locator
                    .evaluate(js::KEY_OF, None::<()>)
                    .await
                    .map_err(|_| BrowserError::StaleRef(normalize(id)))?;
                if key.as_deref() != Some(entry.key.as_str()) {
                    return Err(BrowserError::StaleRef(normalize(id)));
                }
                Ok(locator)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_element_keeps_its_ref_and_refs_are_never_reused() {
        let mut refs = Refs::default();
        let a = refs.ref_for("k1", "e1");
        let b = refs.ref_for("k2", "e2");
        assert_eq!((a.as_str(), b.as_str()), ("ref_1", "ref_2"));
        // The same element seen again under another aria name keeps its ref.
        assert_eq!(refs.ref_for("k1", "e7"), "ref_1");
        assert_eq!(refs.entry("ref_1").expect("known").aria, "e7");
        // After a browser restart, a new element gets a new ref even if the key repeats.
        refs.clear();
        assert!(matches!(
            refs.entry("ref_1"),
            Err(BrowserError::UnknownRef(_))
        ));
        assert_eq!(refs.ref_for("k1", "e1"), "ref_3");
    }

    #[test]
    fn refs_are_accepted_in_the_forms_agents_write() {
        assert_eq!(normalize("ref_3"), "ref_3");
        assert_eq!(normalize("[ref_3]"), "ref_3");
        assert_eq!(normalize("3"), "ref_3");
        assert_eq!(normalize("ref=ref_3"), "ref_3");
    }

    #[test]
    fn a_target_is_a_selector_or_a_ref() {
        assert!(matches!(
            Target::from_fields("#a", ""),
            Ok(Target::Selector(_))
        ));
        assert!(matches!(
            Target::from_fields("", "ref_1"),
            Ok(Target::Ref(_))
        ));
        assert!(Target::from_fields("", "").is_err());
        assert!(Target::from_fields("#a", "ref_1").is_err());
    }
}
