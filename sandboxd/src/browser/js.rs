//! The JavaScript the browser runs in pages. Kept here so the Rust side reads as Rust.

/// What an element is, for a snapshot line: `input[type=password]`, `li[role=tab]`, `span`.
/// Returns `{ tag, text, placeholder }`; the text names elements the tree left unnamed. It also marks the element as listed, so `FOLDED_CLICKABLES` does not list it again.
pub const TAG: &str = r#"(el) => {
  el.__agentRuntimeListed = true;
  const tag = el.tagName.toLowerCase();
  const text = (el.innerText || '').replace(/\s+/g, ' ').trim().slice(0, 2000);
  const placeholder = el.getAttribute('placeholder') || '';
  if (tag === 'input') return { tag: 'input[type=' + (el.getAttribute('type') || 'text').toLowerCase() + ']', text: '', placeholder };
  const role = el.getAttribute('role');
  return { tag: role ? tag + '[role=' + role + ']' : tag, text, placeholder };
}"#;

/// Elements clickable only through JavaScript (`cursor: pointer`, not a link, button or field)
/// that the aria tree folded into their parent's text (an inline `<span>` word). Each gets a
/// key that lives on the element and a CSS path to find it again.
pub const FOLDED_CLICKABLES: &str = r#"(limit) => {
  const native = new Set(['A', 'BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'LABEL', 'OPTION', 'SUMMARY', 'HTML', 'BODY']);
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && e !== document.documentElement; e = e.parentElement) {
      const i = Array.prototype.indexOf.call(e.parentElement ? e.parentElement.children : [], e) + 1;
      parts.unshift(e.tagName.toLowerCase() + ':nth-child(' + i + ')');
    }
    return 'html > ' + parts.join(' > ');
  };
  const out = [];
  // Computed styles cost; a huge page is scanned only this far.
  let scanned = 0;
  for (const el of document.body ? document.body.querySelectorAll('*') : []) {
    if (out.length >= limit || ++scanned > 20000) break;
    if (el.__agentRuntimeListed || native.has(el.tagName) || el.closest('a,button,label')) continue;
    const style = getComputedStyle(el);
    if (style.cursor !== 'pointer' || style.visibility === 'hidden') continue;
    const parent = el.parentElement;
    if (parent && getComputedStyle(parent).cursor === 'pointer') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const text = (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim();
    if (!text) continue;
    if (!el.__agentRuntimeKey) el.__agentRuntimeKey = 'k' + Math.random().toString(36).slice(2);
    out.push({ tag: el.tagName.toLowerCase(), text: text.slice(0, 2000), path: path(el), key: el.__agentRuntimeKey });
  }
  return out;
}"#;

/// The key `FOLDED_CLICKABLES` gave an element, or null.
pub const KEY_OF: &str = r#"(el) => el.__agentRuntimeKey || null"#;

/// The document's token (see `DOCUMENT_TOKEN`) and the body's innerText, in one call.
pub const PAGE_FACTS: &str = r#"() => {
  if (!window.__agentRuntimeDoc) window.__agentRuntimeDoc = Math.random().toString(36).slice(2);
  return { document: window.__agentRuntimeDoc, text: document.body ? document.body.innerText : '' };
}"#;

/// A token that names the current document: it changes when a new document loads.
pub const DOCUMENT_TOKEN: &str = r#"() => {
  if (!window.__agentRuntimeDoc) window.__agentRuntimeDoc = Math.random().toString(36).slice(2);
  return window.__agentRuntimeDoc;
}"#;

/// Resolves true once the DOM has had no mutation for `quiet` ms, false after `max` ms.
pub const DOM_SETTLE: &str = r#"({ quiet, max }) => new Promise((resolve) => {
  const start = performance.now();
  let last = start;
  const obs = new MutationObserver(() => { last = performance.now(); });
  obs.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  const tick = () => {
    const now = performance.now();
    if (now - last >= quiet) { obs.disconnect(); resolve(true); }
    else if (now - start >= max) { obs.disconnect(); resolve(false); }
    else setTimeout(tick, 20);
  };
  setTimeout(tick, 20);
})"#;

/// The body shared by the two evaluate wrappers: a function is called (with the element, if
/// any), anything else is evaluated. The result comes back as JSON text, so any value survives
/// (undefined becomes null, DOM nodes become `<tag>`).
macro_rules! evaluate_body {
    () => {
        r#"
  let value = (0, eval)('(' + source + ')');
  if (typeof value === 'function') value = await value(el);
  else value = await value;
  const seen = new WeakSet();
  const json = JSON.stringify(value, (k, v) => {
    if (typeof v === 'bigint') return v.toString();
    if (typeof Node !== 'undefined' && v instanceof Node) return '<' + v.nodeName.toLowerCase() + '>';
    if (typeof v === 'object' && v !== null) { if (seen.has(v)) return '[circular]'; seen.add(v); }
    return v;
  });
  return json === undefined ? 'null' : json;
"#
    };
}

/// Evaluates the agent's expression in the page.
pub const EVALUATE_PAGE: &str = concat!(
    "async (source) => { const el = null;",
    evaluate_body!(),
    "}"
);

/// Evaluates the agent's function with an element as its argument.
pub const EVALUATE_ELEMENT: &str = concat!("async (el, source) => {", evaluate_body!(), "}");

/// Maps each wanted string to the value of a `<select>` option whose value or label it is.
/// Returns `{ values: [value | null], labels: [label] }`, or `{ error }` for a non-select.
pub const OPTION_VALUES: &str = r#"(el, wanted) => {
  if (el.tagName !== 'SELECT') return { error: 'the target is a <' + el.tagName.toLowerCase() + '>, not a <select>' };
  const opts = Array.from(el.options);
  const norm = (s) => (s || '').trim().toLowerCase();
  const values = wanted.map((w) => {
    const o = opts.find((o) => o.value === w) || opts.find((o) => o.label === w || o.text.trim() === w)
      || opts.find((o) => norm(o.label || o.text) === norm(w));
    return o ? o.value : null;
  });
  return { values, labels: opts.map((o) => o.label || o.text) };
}"#;
