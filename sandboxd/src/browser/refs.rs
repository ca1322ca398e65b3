//! Refs an agent can trust. Playwright's AI-mode aria snapshot names elements `e5` (or `f1e3`
//! inside a frame) and keeps a name for an element as long as its role and accessible name stay
//! the same; but the names restart with every document and resolve only against the latest
//! snapshot. So the agent sees `ref_N` for (document, aria name): the same element keeps its ref
//! across snapshots, a ref is never handed to another element, and resolving a ref checks the
//! document and the element, so a stale ref fails at once instead of after an action timeout.

use std::collections::{HashMap, VecDeque};

use playwright_rs::protocol::{Locator, Page};

use super::error::{BrowserError, Result};
use super::js;

/// How long a CSS selector may take to match before the call fails.
const SELECTOR_WAIT_MS: u64 = 5_000;
/// Documents whose refs are remembered (as stale) before they are forgotten (as unknown).
const DOCUMENTS_KEPT: usize = 16;

/// Where an agent's ref points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Place {
    /// The page's document token (see `js::DOCUMENT_TOKEN`).
    document: String,
    /// Playwright's aria ref in that document.
    aria: String,
}

/// All refs handed out in this sandbox's browser; survives browser restarts so no ref is reused.
#[derive(Debug, Default)]
pub struct Refs {
    next_ref: u64,
    by_place: HashMap<Place, String>,
    places: HashMap<String, Place>,
    documents: VecDeque<String>,
}

impl Refs {
    /// The agent's ref for the element Playwright calls `aria` in `document`.
    pub fn ref_for(&mut self, document: &str, aria: &str) -> String {
        self.note_document(document);
        let place = Place {
            document: document.to_string(),
            aria: aria.to_string(),
        };
        if let Some(id) = self.by_place.get(&place) {
            return id.clone();
        }
        self.next_ref += 1;
        let id = format!("ref_{}", self.next_ref);
        self.by_place.insert(place.clone(), id.clone());
        self.places.insert(id.clone(), place);
        id
    }

    /// Remembers a few recent documents; refs of older ones are forgotten.
    fn note_document(&mut self, document: &str) {
        if self.documents.back().map(String::as_str) == Some(document) {
            return;
        }
        self.documents.retain(|d| d != document);
        self.documents.push_back(document.to_string());
        while self.documents.len() > DOCUMENTS_KEPT {
            if let Some(old) = self.documents.pop_front() {
                self.by_place.retain(|p, _| p.document != old);
                self.places.retain(|_, p| p.document != old);
            }
        }
    }

    /// Forgets where elements are (a new browser): refs stay used, none resolves.
    pub fn clear(&mut self) {
        self.by_place.clear();
        self.places.clear();
        self.documents.clear();
    }

    fn place(&self, id: &str) -> Result<Place> {
        self.places
            .get(normalize(id).as_str())
            .cloned()
            .ok_or_else(|| BrowserError::UnknownRef(id.to_string()))
    }
}

/// Accepts `ref_3`, `3` and `[ref_3]` for the same ref.
pub(super) fn normalize(id: &str) -> String {
    let id = id.trim().trim_start_matches('[').trim_end_matches(']');
    let id = id.strip_prefix("ref=").unwrap_or(id);
    if id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty() {
        format!("ref_{id}")
    } else {
        id.to_string()
    }
}

/// Whether a place is a key `js::LEAN_TREE` gave an element (`k12`), not an aria name (`e12`).
pub(super) fn is_page_key(aria: &str) -> bool {
    aria.strip_prefix('k')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Marks a place found by CSS path (and checked by the key stored on the element) rather than
/// by aria ref: `css:<key>:<path>`.
const CSS_PLACE: &str = "css:";

/// The place of an element the aria tree does not name.
pub fn css_place(path: &str, key: &str) -> String {
    format!("{CSS_PLACE}{key}:{path}")
}

/// The token of the page's current document.
pub async fn document_token(page: &Page) -> Result<String> {
    Ok(page
        .evaluate::<(), String>(js::DOCUMENT_TOKEN, None)
        .await?)
}

/// What an action is aimed at: a selector or a ref, exactly one.
#[derive(Debug)]
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

    /// For Click and Type, which take `target` and, from before it, the flat `selector` and
    /// `ref_id`: either names the element; both may, if they name the same one (a client that
    /// also speaks to older daemons sends both).
    pub fn from_request(
        target: Option<&agent_runtime_proto::v1::BrowserTarget>,
        selector: &str,
        ref_id: &str,
    ) -> Result<Self> {
        let flat = if selector.trim().is_empty() && ref_id.trim().is_empty() {
            None
        } else {
            Some(Self::from_fields(selector, ref_id)?)
        };
        match (Self::optional(target)?, flat) {
            (Some(nested), Some(flat)) if !nested.same_as(&flat) => Err(BrowserError::invalid(
                "target and the flat selector/ref_id name different elements; give one of them",
            )),
            (Some(target), _) | (None, Some(target)) => Ok(target),
            // As before `target` existed.
            (None, None) => Self::from_fields("", ""),
        }
    }

    /// The ref, when the target is one (what errors call the element).
    pub fn agent_ref(&self) -> Option<String> {
        match self {
            Self::Ref(id) => Some(normalize(id)),
            Self::Selector(_) => None,
        }
    }

    /// How a message names the element.
    pub fn describe(&self) -> String {
        match self {
            Self::Ref(id) => normalize(id),
            Self::Selector(s) => format!("the element matching {s:?}"),
        }
    }

    /// True when both name the same element the same way (`3` and `ref_3` are one ref).
    fn same_as(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Selector(a), Self::Selector(b)) => a == b,
            (Self::Ref(a), Self::Ref(b)) => normalize(a) == normalize(b),
            _ => false,
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
                let place = refs.place(id)?;
                let stale = || BrowserError::StaleRef(normalize(id));
                // Another document: the element is gone even if its aria name is taken again.
                if document_token(page).await.ok().as_deref() != Some(place.document.as_str()) {
                    return Err(stale());
                }
                if let Some(found) = place.aria.strip_prefix(CSS_PLACE) {
                    let (key, path) = found.split_once(':').ok_or_else(stale)?;
                    let locator = page.locator(path.to_string());
                    // The path may now lead elsewhere: the key on the element decides.
                    let on_element: Option<String> = locator
                        .evaluate(js::KEY_OF, None::<()>)
                        .await
                        .map_err(|_| stale())?;
                    return if on_element.as_deref() == Some(key) {
                        Ok(locator)
                    } else {
                        Err(stale())
                    };
                }
                // A key the page scan gave (`k12`) names the element for the document's life;
                // an aria name resolves against the latest aria snapshot only. Either only
                // while the element is in the page.
                let locator = if is_page_key(&place.aria) {
                    page.locator(format!("{}={}", js::REF_ENGINE_NAME, place.aria))
                } else {
                    page.get_by_ref(&place.aria)
                };
                match locator.count().await {
                    Ok(1) => Ok(locator),
                    _ => Err(stale()),
                }
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
        let a = refs.ref_for("d1", "e1");
        let b = refs.ref_for("d1", "e2");
        assert_eq!((a.as_str(), b.as_str()), ("ref_1", "ref_2"));
        assert_eq!(refs.ref_for("d1", "e1"), "ref_1");
        // A new document reuses aria names for other elements: they get new refs.
        assert_eq!(refs.ref_for("d2", "e1"), "ref_3");
        assert_eq!(refs.place("ref_1").expect("known").document, "d1");
        // After a browser restart nothing resolves, and new elements get new refs.
        refs.clear();
        assert!(matches!(
            refs.place("ref_1"),
            Err(BrowserError::UnknownRef(_))
        ));
        assert_eq!(refs.ref_for("d1", "e1"), "ref_4");
    }

    #[test]
    fn old_documents_are_forgotten() {
        let mut refs = Refs::default();
        let first = refs.ref_for("d0", "e1");
        for d in 1..=DOCUMENTS_KEPT {
            refs.ref_for(&format!("d{d}"), "e1");
        }
        assert!(matches!(
            refs.place(&first),
            Err(BrowserError::UnknownRef(_))
        ));
        assert!(refs.place(&format!("ref_{}", DOCUMENTS_KEPT + 1)).is_ok());
    }

    #[test]
    fn page_keys_are_told_from_aria_names() {
        assert!(is_page_key("k12"));
        assert!(!is_page_key("e12"));
        assert!(!is_page_key("f1e3"));
        assert!(!is_page_key("k"));
        assert!(!is_page_key("k1x"));
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

    #[test]
    fn click_and_type_take_a_target_or_the_flat_fields() {
        use agent_runtime_proto::v1::BrowserTarget;
        let target = |selector: &str, ref_id: &str| BrowserTarget {
            selector: selector.into(),
            ref_id: ref_id.into(),
        };
        let nested = Target::from_request(Some(&target("", "ref_4")), "", "");
        assert!(matches!(nested, Ok(Target::Ref(r)) if r == "ref_4"));
        let nested = Target::from_request(Some(&target("#go", "")), "", "");
        assert!(matches!(nested, Ok(Target::Selector(s)) if s == "#go"));
        // Older clients: the flat fields alone, or an empty target beside them.
        let flat = Target::from_request(None, "", "ref_2");
        assert!(matches!(flat, Ok(Target::Ref(r)) if r == "ref_2"));
        let flat = Target::from_request(Some(&target("", "")), "#a", "");
        assert!(matches!(flat, Ok(Target::Selector(s)) if s == "#a"));
        // Both, naming the same element (also in another spelling of the ref).
        let both = Target::from_request(Some(&target("", "ref_3")), "", "3");
        assert!(matches!(both, Ok(Target::Ref(_))));
        // Both, naming different elements; neither; two in one target.
        let err = |r: Result<Target>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err(Target::from_request(Some(&target("#a", "")), "", "ref_1"))
                .contains("name different elements")
        );
        assert!(err(Target::from_request(None, "", "")).starts_with("give a ref_id"));
        assert!(
            err(Target::from_request(Some(&target("#a", "ref_1")), "", "")).contains("not both")
        );
    }
}
