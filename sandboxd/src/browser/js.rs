//! The JavaScript the browser runs in pages. Kept here so the Rust side reads as Rust.

/// The body's innerText.
pub const BODY_TEXT: &str = r#"() => (document.body ? document.body.innerText : '')"#;

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
