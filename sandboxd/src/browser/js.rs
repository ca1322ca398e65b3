//! The JavaScript the browser runs in pages. Kept here so the Rust side reads as Rust.

/// A name for a control with no text (an icon-only button): its `aria-label`, `title`, a
/// tooltip attribute, an image's `alt`, a telling class token (`fa-trash`, `icon-close` →
/// "trash", "close"), or the file name of its image, CSS background or CSS `content` image
/// (`…/search.svg` → "search"), on it or inside it; '' when none says anything.
macro_rules! icon_name {
    () => {
        r#"((el) => {
  const words = (s) => (s || '').replace(/\s+/g, ' ').trim();
  for (const a of ['aria-label', 'title', 'data-tooltip', 'data-title', 'data-original-title', 'alt']) {
    const v = words(el.getAttribute(a));
    if (v) return v;
  }
  const all = [el].concat(Array.from(el.querySelectorAll('*')).slice(0, 20));
  for (const e of all) {
    for (const a of ['aria-label', 'title', 'alt']) {
      const v = words(e.getAttribute(a));
      if (v) return v;
    }
  }
  const file = (url) => {
    const m = /([^\/?#]+?)(?:\.[a-z0-9]{2,5})?(?:[?#].*)?$/i.exec(url || '');
    return m ? m[1].replace(/^(ic|icon|ico|btn)[-_]/i, '').replace(/[-_]+/g, ' ') : '';
  };
  // A file name with numbers in it (`ui-icons_444444_256x240.png`) is a sheet of many icons:
  // said only when no class token says more.
  let sheet = '';
  for (const e of all) {
    let name = '';
    if (e.tagName === 'IMG' && e.getAttribute('src') && !e.getAttribute('src').startsWith('data:')) name = file(e.getAttribute('src'));
    const use = e.tagName.toLowerCase() === 'use' && (e.getAttribute('href') || e.getAttribute('xlink:href'));
    if (use) return use.replace(/^.*#/, '').replace(/^(ic|icon|ico)[-_]/i, '').replace(/[-_]+/g, ' ');
    if (!name) {
      const css = getComputedStyle(e);
      const cssUrl = (v) => /url\(["']?([^"')]+)["']?\)/.exec(v || '');
      const url = cssUrl(css.backgroundImage) || cssUrl(css.content);
      if (url && !url[1].startsWith('data:')) name = file(url[1]);
    }
    if (name && !/\d{3,}|\d+x\d+/.test(name)) return name;
    if (name && !sheet) sheet = name;
  }
  const plain = /^(fa|fas|far|fal|fab|fa-solid|fa-regular|fa-fw|fa-lg|icon|icons|ico|btn|button|ui|glyphicon|bi|ti|material-icons|svg-inline--fa|small|large|sm|lg|xs|pull-right|pull-left|active|disabled|inline|block|clickable|pointer|js|mr|ml|\w{1,2})$/i;
  for (const e of all) {
    const cls = typeof e.className === 'string' ? e.className : (e.getAttribute('class') || '');
    for (const token of cls.split(/\s+/)) {
      const t = token.replace(/^(fa|icon|ico|glyphicon|bi|ti|ui-icon|btn|button|ic)[-_]+/i, '');
      if (t && !plain.test(token) && !plain.test(t) && !/\d{2,}/.test(t) && /[a-z]/i.test(t)) return t.replace(/[-_]+/g, ' ');
    }
  }
  return sheet;
})"#
    };
}

/// Where an element with no text is and what colour it shows, for a line that has nothing else
/// to tell it from its neighbours (a board's cells, an SVG shape): `{ box: [x, y, width,
/// height], fill, stroke }`, the box in viewport pixels (what a click by point takes), rounded;
/// `fill` the computed `fill` of an SVG shape or the background colour of another element,
/// `stroke` an SVG shape's (a line has only a stroke), as CSS gives them (`rgb(238, 51, 51)`).
macro_rules! look {
    () => {
        r#"((el) => {
  const r = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  const svg = !(el instanceof HTMLElement);
  return {
    // `|| 0`: no -0, which the driver passes as a string.
    box: [r.left, r.top, r.width, r.height].map((v) => Math.round(v) || 0),
    fill: !svg ? style.backgroundColor : el.tagName === 'line' ? '' : style.fill,
    stroke: svg ? style.stroke : '',
  };
})"#
    };
}

/// The key an element has (`k12`), kept in the page's world (`window.__agentRuntimeEls`) and
/// found again by `REF_ENGINE`: `(el, sig) => key`. An element keeps its key while what the
/// reading that keyed it said of it (`sig`: its role and name) stays, so it keeps its ref across
/// snapshots and outlines; once that changes (a button renamed), it gets a new key and the old one
/// finds nothing, so the agent's old ref fails at once. No `sig` (an outline): the key it has.
macro_rules! page_key {
    () => {
        r#"((el, sig) => {
  let reg = window.__agentRuntimeEls;
  if (!reg || !(reg.byKey instanceof Map) || !(reg.keys instanceof WeakMap)) {
    reg = { next: 0, byKey: new Map(), keys: new WeakMap() };
    Object.defineProperty(window, '__agentRuntimeEls', { value: reg, configurable: true });
  }
  let had = reg.keys.get(el);
  if (had && sig !== undefined && had.sig !== undefined && had.sig !== sig) {
    reg.byKey.delete(had.key);
    had = null;
  }
  if (had) {
    if (had.sig === undefined) had.sig = sig;
    return had.key;
  }
  // Now and then, the keys of elements gone from memory are dropped.
  if (reg.next % 5000 === 4999) for (const [key, w] of reg.byKey) if (!w.deref()) reg.byKey.delete(key);
  const key = 'k' + (++reg.next);
  reg.keys.set(el, { key, sig });
  reg.byKey.set(key, new WeakRef(el));
  return key;
})"#
    };
}

/// The function `TAG` is, `(el, index, reading) => ...` (a macro, so `MISSED_CONTROLS` can call
/// it for the elements `MARK_ENGINE` found).
macro_rules! tag_of {
    () => {
        concat!(
            r#"((el, index, reading) => {
  el.__agentRuntimeListed = { index, reading };
  const iconName = "#,
            icon_name!(),
            r#";
  const look = "#,
            look!(),
            r#";
  // An SVG shape the tree lists (it shows a pointer) reads like the shapes the page scan finds.
  const shape = el instanceof SVGElement && el.tagName !== 'svg';
  const tag = (shape ? 'svg ' : '') + el.tagName.toLowerCase();
  const own = (el.innerText || '').replace(/\s+/g, ' ').trim();
  const text = (own || iconName(el)).slice(0, 2000);
  const placeholder = el.getAttribute('placeholder') || '';
  if (tag === 'input') return { tag: 'input[type=' + (el.getAttribute('type') || 'text').toLowerCase() + ']', text: '', placeholder, look: null };
  const role = el.getAttribute('role');
  const fields = /^(select|textarea|img|iframe)$/;
  return { tag: role ? tag + '[role=' + role + ']' : tag, text, placeholder, shape, look: own || fields.test(tag) ? null : look(el) };
})"#
        )
    };
}

/// What an element is, for a snapshot line: `input[type=password]`, `li[role=tab]`, `span`.
/// Returns `{ tag, text, placeholder, look }`; the text names elements the tree left unnamed
/// (an icon-only one by its icon, see `icon_name!`); `look` (see `look!`) is given for an
/// element with no text of its own, null otherwise. It also marks the element as listed in this
/// reading (with its index among the tree's lines), so `MISSED_CONTROLS` does not list it
/// again and can say what it contains. One call per element: for elements inside frames, which
/// `MARK_ENGINE` does not reach.
pub const TAG: &str = concat!(
    "(el, [index, reading]) => (",
    tag_of!(),
    ")(el, index, reading)"
);

/// The selector engine (registered as [`MARK_ENGINE_NAME`], run in Playwright's utility world,
/// where the aria tree's refs live on the elements as `_ariaRef`) that hands the elements of
/// many refs to the page's own world in one call: its selector is `<event type> <reading>
/// <index>:<ref> ...`, and for each element of the main frame with one of those refs it
/// dispatches the event (caught by the listener `PAGE_FACTS` sets up) with `"<reading>
/// <index>"` as its detail. It matches nothing. The two worlds share only the DOM, so the
/// elements cross as event targets: no attribute is written, no DOM mutation happens.
pub const MARK_ENGINE: &str = r#"({
  queryAll(root, body) {
    const [type, reading, ...asks] = body.trim().split(/\s+/);
    const wanted = new Map();
    for (const ask of asks) {
      const at = ask.indexOf(':');
      wanted.set(ask.slice(at + 1), ask.slice(0, at));
    }
    const doc = root.ownerDocument || root;
    const walk = (r) => {
      for (const el of r.querySelectorAll('*')) {
        const a = el._ariaRef;
        if (a && wanted.has(a.ref)) {
          el.dispatchEvent(new CustomEvent(type, { composed: true, detail: reading + ' ' + wanted.get(a.ref) }));
        }
        if (el.shadowRoot) walk(el.shadowRoot);
      }
    };
    if (wanted.size) walk(doc);
    return [];
  },
  query(root, body) { this.queryAll(root, body); return null; },
})"#;

/// The page's elements read the way the aria tree reads them, in its JSON shape (`role`, `name`,
/// `ref`, `cursor`, `checked`, `disabled`, `expanded`, `selected`, `url`, `placeholder`, `text`,
/// `box` with `boxes`, `children`), but only the nodes a snapshot uses: the elements an agent can
/// act on (a role it acts on, or the outermost element of a click region showing a pointer) and
/// the headings, with a select's options inside it. One pass in the page's own world, with no
/// CSS pseudo-element lookups and no box for elements it does not list: several times quicker
/// than Playwright's tree on a big page, whose every node it builds, names and sends.
/// Each listed element gets a key (`page_key!`: the same element keeps it while its role and
/// name stay; `REF_ENGINE` finds it again) and is marked listed for this reading
/// (`__agentRuntimeListed`, as `TAG` marks) in order: the index is the line's. At most `limit`
/// are listed; `more` counts those past it. The scan stops after 60,000 elements. Returns
/// `{ tree, listed, more }`, or null for a page showing a frame or holding a shadow root, which
/// Playwright's tree reads (its refs reach into frames). A frame with no size (a tracker's) is
/// not shown and does not count.
pub const LEAN_TREE: &str = concat!(
    r#"([reading, boxes, limit]) => {
  const body = document.body;
  if (!body) return null;
  for (const f of document.querySelectorAll('iframe, frame, object[data], embed')) {
    const r = f.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && f.checkVisibility({ visibilityProperty: true })) return null;
  }
  const keyOf = "#,
    page_key!(),
    r#";
  const valid = new Set(['alert', 'alertdialog', 'application', 'article', 'banner', 'blockquote', 'button', 'caption', 'cell', 'checkbox', 'code', 'columnheader', 'combobox', 'complementary', 'contentinfo', 'definition', 'deletion', 'dialog', 'directory', 'document', 'emphasis', 'feed', 'figure', 'form', 'generic', 'grid', 'gridcell', 'group', 'heading', 'img', 'insertion', 'link', 'list', 'listbox', 'listitem', 'log', 'main', 'mark', 'marquee', 'math', 'meter', 'menu', 'menubar', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'navigation', 'none', 'note', 'option', 'paragraph', 'presentation', 'progressbar', 'radio', 'radiogroup', 'region', 'row', 'rowgroup', 'rowheader', 'scrollbar', 'search', 'searchbox', 'separator', 'slider', 'spinbutton', 'status', 'strong', 'subscript', 'superscript', 'switch', 'tab', 'table', 'tablist', 'tabpanel', 'term', 'textbox', 'time', 'timer', 'toolbar', 'tooltip', 'tree', 'treegrid', 'treeitem']);
  const interactive = new Set(['button', 'link', 'textbox', 'searchbox', 'checkbox', 'radio', 'combobox', 'spinbutton', 'slider', 'listbox', 'option', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'tab', 'switch', 'treeitem', 'gridcell']);
  const fromContent = new Set(['button', 'cell', 'checkbox', 'columnheader', 'gridcell', 'heading', 'link', 'menuitem', 'menuitemcheckbox', 'menuitemradio', 'option', 'radio', 'row', 'rowheader', 'switch', 'tab', 'tooltip', 'treeitem']);
  const inputRoles = { button: 'button', checkbox: 'checkbox', image: 'button', number: 'spinbutton', radio: 'radio', range: 'slider', reset: 'button', submit: 'button', file: 'button' };
  const ignored = new Set(['SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'HEAD', 'TITLE', 'META', 'LINK']);
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const implicit = (el) => {
    switch (el.tagName) {
      case 'A': case 'AREA': return el.hasAttribute('href') ? 'link' : '';
      case 'BUTTON': return 'button';
      case 'H1': case 'H2': case 'H3': case 'H4': case 'H5': case 'H6': return 'heading';
      case 'INPUT': {
        const type = (el.type || '').toLowerCase();
        if (type === 'hidden') return '';
        if (['email', 'search', 'tel', 'text', 'url', ''].includes(type)) {
          const list = el.getAttribute('list');
          const dl = list && document.getElementById(list);
          if (dl && dl.tagName === 'DATALIST') return 'combobox';
          return type === 'search' ? 'searchbox' : 'textbox';
        }
        return inputRoles[type] || 'textbox';
      }
      case 'TEXTAREA': return 'textbox';
      case 'SELECT': return el.multiple || el.size > 1 ? 'listbox' : 'combobox';
      case 'OPTION': return 'option';
      case 'OPTGROUP': return 'group';
      case 'IMG': return el.getAttribute('alt') === '' && !el.getAttribute('title') ? 'presentation' : 'img';
      case 'LI': return 'listitem';
      case 'TD': { const t = el.closest('table'); const r = t && t.getAttribute('role'); return r === 'grid' || r === 'treegrid' ? 'gridcell' : 'cell'; }
      case 'TH': return 'columnheader';
      case 'TR': return 'row';
      case 'SVG': case 'svg': return 'img';
      case 'DIALOG': return 'dialog';
      case 'P': return 'paragraph';
      default: return 'generic';
    }
  };
  const roleOf = (el) => {
    const attr = el.getAttribute('role');
    if (attr) {
      for (const r of attr.split(/\s+/)) {
        if (!valid.has(r)) continue;
        if (r === 'none' || r === 'presentation') {
          // A focusable element keeps its own role (jQuery UI's tab links are `presentation`).
          const focusable = el.hasAttribute('tabindex') || /^(BUTTON|INPUT|SELECT|TEXTAREA)$/.test(el.tagName)
            || ((el.tagName === 'A' || el.tagName === 'AREA') && el.hasAttribute('href'));
          return focusable ? implicit(el) : '';
        }
        return r;
      }
    }
    const r = implicit(el);
    return r === 'presentation' ? '' : r;
  };
  const textOfIds = (ids) => squash(ids.split(/\s+/).map((id) => {
    const e = id && document.getElementById(id);
    return e ? (e.getAttribute('aria-label') || e.innerText || e.textContent) : '';
  }).join(' '));
  // What an element's content says, as the tree would name it: its rendered text, else what
  // its pictures and labelled parts are called.
  const contentName = (el) => {
    let t = squash(el.innerText);
    if (t) return t;
    const parts = [];
    for (const e of el.querySelectorAll('img[alt], [aria-label], svg title, input[type=submit], input[type=button]')) {
      if (e.tagName === 'title') parts.push(e.textContent);
      else if (e.tagName === 'INPUT') parts.push(e.value);
      else parts.push(e.getAttribute('aria-label') || e.getAttribute('alt'));
      if (parts.length > 5) break;
    }
    return squash(parts.join(' '));
  };
  const nameOf = (el, role) => {
    const by = el.getAttribute('aria-labelledby');
    if (by) { const n = textOfIds(by); if (n) return n; }
    const label = squash(el.getAttribute('aria-label'));
    if (label && role !== 'generic') return label;
    const tag = el.tagName;
    if (tag === 'INPUT') {
      const type = (el.type || '').toLowerCase();
      if (type === 'submit' || type === 'reset' || type === 'button') {
        const v = el.getAttribute('value');
        if (v !== null) return squash(v);
        if (type !== 'button') return type === 'submit' ? 'Submit' : 'Reset';
      }
      if (type === 'image') return squash(el.getAttribute('alt') || el.getAttribute('value') || 'Submit');
    }
    if (tag === 'INPUT' || tag === 'TEXTAREA' || tag === 'SELECT' || tag === 'METER' || tag === 'PROGRESS') {
      const names = [];
      for (const l of el.labels || []) names.push(l.innerText || l.textContent);
      const n = squash(names.join(' '));
      if (n) return n;
      return squash(el.getAttribute('title') || el.getAttribute('placeholder'));
    }
    if (tag === 'IMG') return squash(el.getAttribute('alt') || el.getAttribute('title'));
    if (tag === 'OPTION') return squash(el.label || el.textContent);
    if (fromContent.has(role)) {
      const n = contentName(el);
      if (n) return n;
    }
    return squash(el.getAttribute('title'));
  };
  const checkedOf = (el, role) => {
    if (el.tagName === 'INPUT' && (el.type === 'checkbox' || el.type === 'radio')) return el.indeterminate ? 'mixed' : el.checked;
    if (!/^(checkbox|menuitemcheckbox|option|radio|switch|menuitemradio|treeitem)$/.test(role)) return undefined;
    const a = el.getAttribute('aria-checked');
    return a === 'true' ? true : a === 'mixed' ? 'mixed' : undefined;
  };
  const disabledOf = (el) => {
    if (/^(BUTTON|INPUT|SELECT|TEXTAREA|OPTION|OPTGROUP)$/.test(el.tagName) && el.matches(':disabled')) return true;
    return !!el.closest('[aria-disabled=true]');
  };
  const optionNodes = (select) => {
    const out = [];
    for (const c of select.children) {
      if (c.tagName === 'OPTION') {
        const o = { role: 'option', name: squash(c.label || c.textContent) };
        if (c.selected) o.selected = true;
        out.push(o);
      } else if (c.tagName === 'OPTGROUP') {
        out.push({ role: 'group', name: squash(c.label), children: optionNodes(c) });
      }
      if (out.length >= 200) break;
    }
    return out;
  };
  const els = [];
  const root = { role: 'fragment', children: [] };
  let shadow = false;
  let count = 0;
  let more = 0;
  // `parent`: the node the element's own node goes in; `pointer`: inside a listed element that
  // shows a pointer (what it holds is part of that click, unless a control of its own).
  const visit = (el, parent, pointer) => {
    if (++count > 60000) return;
    if (ignored.has(el.tagName)) return;
    if (el.shadowRoot) shadow = true;
    const style = getComputedStyle(el);
    if (style.display === 'none') return;
    let node = null;
    const role = roleOf(el);
    if (role) {
      const cursor = style.cursor === 'pointer';
      const active = interactive.has(role) || (cursor && !pointer) || role === 'heading';
      if (active) {
        let shown = style.visibility === 'visible' && style.display !== 'contents';
        let r = null;
        if (shown) { r = el.getBoundingClientRect(); shown = r.width > 0 && r.height > 0; }
        const takes = shown && style.pointerEvents !== 'none';
        const inSelect = role === 'option' && parent.role === 'combobox';
        // A wrapper whose one element child is all it holds is that child (the tree unwraps it).
        const wrapper = role === 'generic' && !el.getAttribute('title') && el.childElementCount === 1
          && ![...el.childNodes].some((c) => c.nodeType === 3 && c.nodeValue.trim());
        let listed = takes && !inSelect && !wrapper && (interactive.has(role) || (cursor && !pointer));
        if (listed && els.length >= limit) {
          more++;
          listed = false;
          // What it holds is part of its click, as if it were listed.
          if (cursor && !pointer && !interactive.has(role)) pointer = true;
        }
        if (listed || (role === 'heading' && shown)) {
          node = { role, name: nameOf(el, role) };
          if (boxes && r) node.box = { x: Math.round(r.x), y: Math.round(r.y), width: Math.round(r.width), height: Math.round(r.height) };
          if (listed) {
            node.ref = keyOf(el, role + '\n' + (node.name || ''));
            if (cursor && !pointer) node.cursor = 'pointer';
            el.__agentRuntimeListed = { index: els.length, reading };
            els.push(el);
          }
          const checked = checkedOf(el, role);
          if (checked === true || checked === 'mixed') node.checked = checked;
          if (interactive.has(role) && disabledOf(el)) node.disabled = true;
          if (el.getAttribute('aria-expanded') === 'true' || (el.tagName === 'DETAILS' && el.open)) node.expanded = true;
          if (el.getAttribute('aria-selected') === 'true' || (el.tagName === 'OPTION' && el.selected)) node.selected = true;
          if (role === 'link' && el.hasAttribute('href')) {
            const href = el.getAttribute('href');
            node.url = href.startsWith('data:') && href.length > 100 ? href.slice(0, 100) + '...' : href;
          }
          if (role === 'textbox' || role === 'searchbox') {
            const p = el.getAttribute('placeholder');
            if (p !== null && p !== node.name) node.placeholder = p;
          }
          if ((el.tagName === 'INPUT' && !/^(checkbox|radio|file)$/.test(el.type)) || el.tagName === 'TEXTAREA') {
            if (el.value && el.value !== node.name) node.text = el.value;
          } else if (listed && !interactive.has(role)) {
            // A clickable with no name of its own: its own words (not those of its parts).
            const own = [];
            for (const c of el.childNodes) if (c.nodeType === 3) own.push(c.nodeValue);
            const t = squash(own.join(' '));
            if (t) node.text = t;
          }
          if (el.tagName === 'SELECT') node.children = optionNodes(el);
          if (!node.name) delete node.name;
          (parent.children || (parent.children = [])).push(node);
        }
      }
      if (el.tagName === 'SELECT') return;
      if (node && node.cursor) pointer = true;
    }
    const into = node || parent;
    for (let c = el.firstElementChild; c; c = c.nextElementSibling) visit(c, into, pointer);
  };
  visit(body, root, false);
  if (shadow) {
    for (const el of els) delete el.__agentRuntimeListed;
    return null;
  }
  // For MISSED_CONTROLS, which reads what the listed elements are (see `TAG`) by index.
  Object.defineProperty(window, '__agentRuntimeLean', { value: { reading, els }, configurable: true, writable: true });
  return { tree: root.children, listed: els.length, more };
}"#
);

/// The selector engine (registered as [`REF_ENGINE_NAME`], run in the page's world) that finds
/// the element `LEAN_TREE` gave a key: its selector is the key (`k12`). It matches nothing once
/// the element has left the document.
pub const REF_ENGINE: &str = r#"({
  queryAll(root, body) {
    const reg = window.__agentRuntimeEls;
    const ref = reg && reg.byKey instanceof Map ? reg.byKey.get(body.trim()) : null;
    const el = ref && ref.deref();
    if (!el || !el.isConnected) return [];
    // Under `root`, crossing shadow roots (an element of a shadow tree is not `contains`ed by
    // the document).
    for (let e = el; e; e = e.getRootNode().host) if (root === e || root.contains(e)) return [el];
    return [];
  },
  query(root, body) { return this.queryAll(root, body)[0] || null; },
})"#;

/// The name `REF_ENGINE` is registered under.
pub const REF_ENGINE_NAME: &str = "agent-runtime-el";

/// The name `MARK_ENGINE` is registered under.
pub const MARK_ENGINE_NAME: &str = "agent-runtime-mark";

/// Controls the aria tree does not list on their own: elements clickable only through
/// JavaScript that it folded into their parent's text (an inline `<span>` word, two buttons of
/// one clickable toolbar, the child of an opened tree item), and ones with no role and no
/// pointer cursor that still act (`<a>` without href, `onclick`, `tabindex`, a click handler
/// bound through jQuery or d3, an icon with only a title). Each gets a key that lives on the
/// element and a CSS path to find it again. A control with no text and no icon to name it (a
/// board's empty cell) comes with its `look` (see `look!`); an empty cell that shows no sign of
/// taking clicks is listed too when it is painted apart from what it sits on (a colour swatch;
/// `clickable: false`). So do the things drawn rather than written: visible SVG shapes (`shape`:
/// `svg circle`, ..., and SVG texts with their words; `clickable` when they show a pointer or
/// have a click handler; at most `shapeLimit`, the last one saying in `more` how many were
/// passed over) and every visible canvas of 16x16 or more (`clickable` when it shows it). A
/// shape is left out when it is part of a small icon (the control around it is listed) or a
/// named picture (a logo), or lies under the others as their background.
/// Every control comes with its box (`rect`: x, y, width, height in viewport pixels).
/// `owners` says, for each listed line (see `TAG`) that contains other controls, its own text
/// without theirs: empty when it only wraps them (a duplicate). A control that is all a listed
/// one holds (an item's inner wrapper) is not listed again. The controls go after the listed
/// line before them in the page (`after`), told by the marks on the listed elements: LEAN_TREE
/// set them; after the aria tree, MARK_ENGINE handed the main frame's listed elements over and
/// this marks them, returning each one's key (see `page_key!`) in `keys` (`[index, key]`).
/// `asks`: the lines whose element is read for what it is (`tags`, see `TAG`); `sigs`: after the
/// aria tree, each line's aria name, which changes with the element's role or name (see
/// `page_key!`).
pub const MISSED_CONTROLS: &str = concat!(
    r#"([limit, reading, shapeLimit, asks, sigs]) => {
  const tagOf = "#,
    tag_of!(),
    r#";
  const pageKey = "#,
    page_key!(),
    r#";
  // The listed elements are marked first, and those at the lines `asks` names are read (see
  // `TAG`): after LEAN_TREE, which marked them, from its list; after the aria tree, as
  // MARK_ENGINE handed them over, each then getting its key.
  const tags = [];
  const keys = [];
  const ask = new Set(asks);
  const marks = window.__agentRuntimeMarks;
  if (marks && marks.has(reading)) {
    for (const [index, el] of marks.get(reading)) {
      el.__agentRuntimeListed = { index, reading };
      keys.push([index, pageKey(el, sigs[index])]);
      if (ask.has(index)) tags.push([index, tagOf(el, index, reading)]);
    }
    marks.delete(reading);
  }
  const lean = window.__agentRuntimeLean;
  if (lean && lean.reading === reading) {
    for (const index of asks) if (lean.els[index]) tags.push([index, tagOf(lean.els[index], index, reading)]);
    window.__agentRuntimeLean = null;
  }
  const iconName = "#,
    icon_name!(),
    r#";
  const look = "#,
    look!(),
    r#";
  const listed = (e) => e.__agentRuntimeListed && e.__agentRuntimeListed.reading === reading
    ? e.__agentRuntimeListed.index + 1 : 0;
  const fields = new Set(['BUTTON', 'INPUT', 'SELECT', 'TEXTAREA', 'LABEL', 'OPTION', 'SUMMARY']);
  const skip = new Set(['HTML', 'BODY', 'SCRIPT', 'STYLE', 'NOSCRIPT', 'TEMPLATE', 'IFRAME', 'BR', 'HR']);
  const roles = /^(button|link|menuitem|menuitemcheckbox|menuitemradio|tab|option|treeitem|checkbox|radio|switch|gridcell|textbox|combobox|searchbox|slider|spinbutton|listbox)$/;
  const controlClass = /(^|[-_\s])(btn|button|action|icon|tool|tab|item|link|opt|option|choice|key|day|prev|next|close|toggle)s?($|[-_\s])/i;
  const path = (el) => {
    const parts = [];
    for (let e = el; e && e.nodeType === 1 && e !== document.documentElement; e = e.parentElement) {
      const i = Array.prototype.indexOf.call(e.parentElement ? e.parentElement.children : [], e) + 1;
      // An SVG element's tag is case-sensitive (`clipPath`): its place alone finds it.
      parts.unshift((e instanceof HTMLElement ? e.tagName.toLowerCase() : '*') + ':nth-child(' + i + ')');
    }
    return 'html > ' + parts.join(' > ');
  };
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();
  // isContentEditable costs a style lookup: asked only when the page has an editable part.
  const editable = document.designMode === 'on' || !!document.querySelector('[contenteditable]');
  const native = (e) => (e.tagName === 'A' && e.hasAttribute('href')) || fields.has(e.tagName)
    || roles.test(e.getAttribute('role') || '')
    || editable && e.isContentEditable && !(e.parentElement && e.parentElement.isContentEditable);
  const pointer = new Map();
  const isPointer = (e) => {
    if (!e || e.nodeType !== 1) return false;
    if (!pointer.has(e)) pointer.set(e, getComputedStyle(e).cursor === 'pointer');
    return pointer.get(e);
  };
  const found = [];
  // Found controls and shapes in document order.
  const order = [];
  // The listed line each found control follows in document order (-1: before them all).
  const after = new Map();
  // Shapes: the SVG tags drawn as one thing, what is known of each <svg> (its box, whether it is
  // an icon or a named picture, its shapes), each listed shape's look, those passed over.
  // An SVG text (a chart's or a pie menu's label) is listed like a shape, with its words.
  const shapeTags = new Set(['circle', 'ellipse', 'rect', 'polygon', 'polyline', 'path', 'line', 'text']);
  // Whether a CSS colour shows at all (an SVG fill or stroke, a background).
  const paint = (c) => c && c !== 'none' && !/^rgba\(.*, 0\)$/.test(c) && c !== 'transparent';
  const svgs = new Map();
  const looks = new Map();
  let shapesLeft = 0;
  let empties = 0;
  // Painted empty cells listed with no sign of taking clicks (see below), and how many.
  const unsure = new Set();
  let plain = 0;
  const backdrops = new Map();
  // Whether an element and 2 or more siblings have one tag (a board's cells, a row's).
  const alike = new Map();
  const manyAlike = (el) => {
    const p = el.parentElement;
    if (!p || p.children.length < 3) return false;
    if (!alike.has(p)) {
      const counts = new Map();
      for (const k of p.children) counts.set(k.tagName, (counts.get(k.tagName) || 0) + 1);
      alike.set(p, counts);
    }
    return alike.get(p).get(el.tagName) >= 3;
  };
  let lastShape = null;
  const [vw, vh] = [window.innerWidth, window.innerHeight];
  const svgOf = (svg) => {
    if (!svgs.has(svg)) {
      const box = svg.getBoundingClientRect();
      svgs.set(svg, {
        box,
        icon: box.width <= 32 && box.height <= 32,
        named: svg.getAttribute('role') === 'img' || svg.hasAttribute('aria-label') || !!svg.querySelector(':scope > title'),
        shapes: svg.querySelectorAll('circle,ellipse,rect,polygon,polyline,path,line').length,
      });
    }
    return svgs.get(svg);
  };
  // Click handlers a page bound through jQuery or d3, which keep them where a page script can
  // read them (a listener added with addEventListener itself cannot be seen from here). A
  // handler jQuery delegates (`$(root).on('click', selector, ...)`) binds what its selector
  // matches under its root, found once when the root is seen (roots come before what they
  // hold); one that matches more than `wide` elements tells nothing and is passed over.
  const clickType = /^(click|dblclick|mousedown|mouseup|pointerdown|pointerup|touchstart|touchend)$/;
  const jq = typeof window.jQuery === 'function' && typeof window.jQuery._data === 'function' ? window.jQuery : null;
  const delegatedTo = new Set();
  const wide = 500;
  const jqDirect = (e) => {
    let events = null;
    try { events = jq._data(e, 'events'); } catch (_) { return false; }
    if (!events || typeof events !== 'object') return false;
    let direct = false;
    for (const type of Object.keys(events)) {
      if (!clickType.test(type) || !Array.isArray(events[type])) continue;
      for (const h of events[type]) {
        if (!h || !h.selector) { direct = true; continue; }
        try {
          const hits = e.querySelectorAll(h.selector);
          if (hits.length <= wide) for (const hit of hits) delegatedTo.add(hit);
        } catch (_) {}
      }
    }
    return direct;
  };
  if (jq) for (const root of [document, document.documentElement, document.body]) if (root) jqDirect(root);
  const boundSeen = new Map();
  const bound = (e) => {
    if (!e || e.nodeType !== 1) return false;
    if (!boundSeen.has(e)) {
      const d3 = !!(e.__onclick || e.__onmousedown || e.__onmouseup)
        || (Array.isArray(e.__on) && e.__on.some((h) => h && clickType.test(h.type)));
      boundSeen.set(e, d3 || (!!jq && jqDirect(e)) || delegatedTo.has(e));
    }
    return boundSeen.get(e);
  };
  // Takes clicks: a handler the page set as an attribute or a property, or bound through a
  // library (see `bound`).
  const handled = (e) => e.hasAttribute('onclick') || e.hasAttribute('onmousedown') || e.onclick !== null || e.onmousedown !== null
    || bound(e);
  // An SVG shape or a canvas to list, or null: visible, with a size, not the backdrop of the
  // others; `clickable` said.
  const shapeOf = (el) => {
    const canvas = el.tagName === 'CANVAS';
    const svg = canvas ? null : el.ownerSVGElement;
    if (!canvas && !svg) return null;
    const box = el.getBoundingClientRect();
    if (box.width + box.height < 1 || (canvas && (box.width < 1 || box.height < 1))) return null;
    if (!el.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return null;
    let clickable = isPointer(el) || handled(el);
    for (let e = el.parentElement; !clickable && e && !canvas; e = e === svg ? null : e.parentElement) clickable = handled(e);
    if (canvas) {
      // Every canvas big enough to draw on is listed with its box: a page's listener added with
      // addEventListener cannot be seen from here, so only the signs it shows make it
      // `(clickable)` (a pointer-like cursor, a handler attribute, a tab stop).
      if (box.width < 16 || box.height < 16) return null;
      const cursor = getComputedStyle(el).cursor;
      clickable = clickable || /^(crosshair|cell|grab|move|copy)$/.test(cursor) || (el.hasAttribute('tabindex') && el.tabIndex >= 0);
      return { shape: 'canvas', clickable, look: look(el) };
    }
    const s = svgOf(svg);
    if (s.icon || (s.named && !clickable)) return null;
    const seen = look(el);
    if (!paint(seen.fill) && !paint(seen.stroke)) return null;
    // The backdrop of other shapes: (nearly) the whole <svg>, or more than the viewport.
    const area = box.width * box.height;
    if (!clickable && ((s.shapes > 1 && area >= 0.9 * s.box.width * s.box.height) || (box.width >= vw && box.height >= vh))) return null;
    const words = el.tagName === 'text' ? squash(el.textContent).slice(0, 200) : '';
    if (el.tagName === 'text' && !words) return null;
    return { shape: 'svg ' + el.tagName, clickable, look: seen, words };
  };
  let last = -1;
  let scanned = 0;
  // What is inside a link, button, label or select acts through it: not visited at all.
  const container = 'a[href],button,label,select,[role=button],[role=link]';
  const actsAlone = 'a[href],button,select,[role=button],[role=link]';
  const walker = document.body && document.createTreeWalker(document.body, NodeFilter.SHOW_ELEMENT, {
    acceptNode: (n) => (n.parentElement !== document.body && n.parentElement.matches(container)
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  for (let el = walker && walker.nextNode(); el; el = walker.nextNode()) {
    if (found.length - empties >= limit || ++scanned > 20000) break;
    if (listed(el)) last = listed(el) - 1;
    if (!listed(el) && (el.tagName === 'CANVAS' || shapeTags.has(el.tagName))) {
      if (looks.size >= shapeLimit) {
        // Counted, not looked at: an icon's or a picture's shapes are not.
        const s = el.ownerSVGElement && svgOf(el.ownerSVGElement);
        if (s && !s.icon && !s.named) shapesLeft++;
        continue;
      }
      const shape = shapeOf(el);
      if (!shape) continue;
      looks.set(el, shape);
      order.push(el);
      after.set(el, last);
      lastShape = el;
      continue;
    }
    if (listed(el) || native(el) || skip.has(el.tagName) || !(el instanceof HTMLElement)) continue;
    // A handler bound on the element itself makes it a control even inside a clickable region
    // (a row's star and trash icons).
    const hooked = bound(el);
    const own = isPointer(el) || hooked, inRegion = isPointer(el.parentElement) || bound(el.parentElement);
    // Its text is read only when needed: innerText on every element of a big page is most of
    // this scan's cost.
    let text = null;
    const textOf = () => (text === null ? (text = squash(el.innerText || el.textContent)) : text);
    const cls = typeof el.className === 'string' ? el.className : '';
    const signal = el.hasAttribute('onclick') || el.hasAttribute('data-action')
      || (el.hasAttribute('tabindex') && (el.tabIndex >= 0 || el.tagName === 'LI' || el.tagName === 'TD'));
    let why = (own && !inRegion) || hooked || el.tagName === 'A' || signal
      || (inRegion && (el.tagName === 'LI' || controlClass.test(cls)))
      || ((el.hasAttribute('title') || el.hasAttribute('aria-label')) && !textOf());
    // The empty cells of a clickable board or table (the click is the board's, the place the
    // cell's); not the bars of a drawn icon (a menu button's three lines).
    const cell = !why && !el.firstElementChild && manyAlike(el) && !el.textContent.trim();
    if (!why && !cell) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0 || (cell && (box.width < 8 || box.height < 8))) continue;
    // A cell nothing shows to take clicks (its listener, if any, cannot be seen) is still listed
    // when it is painted apart from what it sits on (a colour swatch, a board's square), not
    // marked clickable; bare or bordered-only cells (an empty table cell) are not.
    if (cell && !inRegion) {
      if (box.width > 200 || box.height > 200 || plain >= shapeLimit) continue;
      const url = (v) => /url\(/.test(v || '');
      // What it sits on: the nearest ancestor with a colour, else the page's white (known
      // once per parent: cells come in rows).
      const p = el.parentElement;
      if (!backdrops.has(p)) {
        let under = 'rgb(255, 255, 255)';
        for (let a = p; a; a = a.parentElement) {
          const c = getComputedStyle(a).backgroundColor;
          if (paint(c)) { under = c; break; }
        }
        backdrops.set(p, under);
      }
      const under = backdrops.get(p);
      if (!(paint(style.backgroundColor) && style.backgroundColor !== under) && !url(style.backgroundImage) && !url(style.content)) continue;
      plain++;
      unsure.add(el);
    }
    // One with nothing to name it (a board's empty cell) is told by where it is, unless it
    // covers most of the screen (a backdrop that closes a dialog); they have a limit of their
    // own, so a big board does not end the scan before the controls after it.
    if (!textOf() && !iconName(el)) {
      if (box.width * box.height > 0.5 * vw * vh || empties >= limit) continue;
      empties++;
    }
    found.push(el);
    order.push(el);
    after.set(el, last);
  }
  const controls = new Set(found);
  const isControl = (e) => controls.has(e) || listed(e) > 0 || native(e);
  // An element's own text: its text less that of the controls inside it (which it lists).
  const ownText = (root) => {
    const inner = [];
    const parts = [];
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_ELEMENT | NodeFilter.SHOW_TEXT, {
      acceptNode: (n) => {
        if (n.nodeType === 1 && n !== root) {
          // A hidden part (a closed folder's items) says nothing.
          const shown = n.getClientRects().length > 0 || getComputedStyle(n).display === 'contents';
          if (!shown) return NodeFilter.FILTER_REJECT;
          if (isControl(n)) { inner.push(n); return NodeFilter.FILTER_REJECT; }
        }
        return n.nodeType === 3 ? NodeFilter.FILTER_ACCEPT : NodeFilter.FILTER_SKIP;
      },
    });
    for (let n = walker.nextNode(); n; n = walker.nextNode()) parts.push(n.nodeValue);
    return { inner, text: squash(parts.join(' ')) };
  };
  const listedEls = [];
  // Not the links, buttons and selects: nothing found is inside them (the scan does not go in),
  // and a line of theirs is never renamed.
  for (const el of document.body ? document.body.querySelectorAll('*') : []) if (listed(el) && !el.matches(actsAlone)) listedEls.push(el);
  const info = new Map();
  for (const el of listedEls.concat(found)) info.set(el, ownText(el));
  // A control that is all a listed one holds (an item's inner wrapper) is that control: the
  // outer one stays whole and the inner is not listed again.
  const inside = new Set();
  for (const o of info.values()) {
    if (o.inner.length === 1 && !o.text && controls.has(o.inner[0])) { inside.add(o.inner[0]); o.whole = true; }
  }
  const owners = [];
  for (const el of listedEls) {
    const o = info.get(el);
    if (o.inner.length && !o.whole) owners.push([listed(el) - 1, o.text]);
  }
  const out = [];
  const keyOf = (el) => {
    if (!el.__agentRuntimeKey) el.__agentRuntimeKey = 'k' + Math.random().toString(36).slice(2);
    return el.__agentRuntimeKey;
  };
  for (const el of order) {
    const shape = looks.get(el);
    if (shape) {
      out.push({ tag: shape.shape, text: shape.words || '', path: path(el), key: keyOf(el), after: after.get(el), look: shape.look,
        shape: true, clickable: shape.clickable, more: el === lastShape ? shapesLeft : 0 });
      continue;
    }
    const o = info.get(el);
    if (inside.has(el) || (o.inner.length && !o.whole && !o.text)) continue;
    const words = o.inner.length && !o.whole ? o.text : squash(el.innerText || el.textContent);
    const text = words || iconName(el);
    const r = el.getBoundingClientRect();
    // No text of its own: where it is, and its colour when it shows one (a swatch named only by
    // its class).
    const seen = words ? null : look(el);
    const painted = seen && paint(seen.fill);
    out.push({ tag: el.tagName.toLowerCase(), text: text.slice(0, 2000), path: path(el), key: keyOf(el), after: after.get(el),
      look: !text || painted ? seen : null, rect: [r.x, r.y, r.width, r.height], clickable: !unsure.has(el) });
  }
  return { controls: out, owners, tags, keys };
}"#
);

/// The key `MISSED_CONTROLS` gave an element, or null.
pub const KEY_OF: &str = r#"(el) => el.__agentRuntimeKey || null"#;

/// The document's change counter `{ count, last }`: set up on first use, it stays for the
/// document's life and counts every DOM mutation and every scroll step (a key or a click may
/// start a smooth scroll; `last`: when the latest change was).
macro_rules! mutations {
    () => {
        r#"(() => {
  let seen = window.__agentRuntimeMutations;
  if (!seen) {
    seen = window.__agentRuntimeMutations = { count: 0, last: performance.now() };
    const changed = () => { seen.count++; seen.last = performance.now(); };
    new MutationObserver(changed)
      .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
    document.addEventListener('scroll', changed, { capture: true, passive: true });
  }
  return seen;
})()"#
    };
}

/// Sets up the document token and the listener that takes the elements `MARK_ENGINE` hands over,
/// by reading: `[index, element]` (statements, for a function's start).
macro_rules! mark_listener {
    () => {
        r#"if (!window.__agentRuntimeDoc) window.__agentRuntimeDoc = Math.random().toString(36).slice(2);
  if (!window.__agentRuntimeMarks) {
    const marks = window.__agentRuntimeMarks = new Map();
    document.addEventListener('agent-runtime-mark-' + window.__agentRuntimeDoc, (e) => {
      e.stopImmediatePropagation();
      const [reading, index] = String(e.detail).split(' ').map(Number);
      if (!marks.has(reading)) marks.set(reading, []);
      marks.get(reading).push([index, e.composedPath()[0]]);
    }, true);
  }"#
    };
}

/// The document's token (see `DOCUMENT_TOKEN`), the body's innerText and the DOM mutations so
/// far (see `mutations!`), in one call: a reading stays the page's while the last two hold. It
/// also sets up, once per document, the listener that takes the elements `MARK_ENGINE` hands
/// over (its event type is `agent-runtime-mark-<document token>`).
pub const PAGE_FACTS: &str = concat!(
    r#"() => {
  "#,
    mark_listener!(),
    r#"
  const seen = "#,
    mutations!(),
    r#";
  return { document: window.__agentRuntimeDoc, text: document.body ? document.body.innerText : '', count: seen.count };
}"#
);

/// The document token, with the listener for `MARK_ENGINE` set up (see `mark_listener!`).
pub const MARK_READY: &str = concat!(
    "() => {\n  ",
    mark_listener!(),
    "\n  return window.__agentRuntimeDoc;\n}"
);

/// The keys (see `page_key!`) of the elements `MARK_ENGINE` handed over in `reading`:
/// `[[index, key], ...]`.
pub const MARKED_KEYS: &str = concat!(
    r#"(reading) => {
  const pageKey = "#,
    page_key!(),
    r#";
  const marks = window.__agentRuntimeMarks;
  const got = (marks && marks.get(reading)) || [];
  if (marks) marks.delete(reading);
  return got.map(([index, el]) => [index, pageKey(el, undefined)]);
}"#
);

/// A token that names the current document: it changes when a new document loads.
pub const DOCUMENT_TOKEN: &str = r#"() => {
  if (!window.__agentRuntimeDoc) window.__agentRuntimeDoc = Math.random().toString(36).slice(2);
  return window.__agentRuntimeDoc;
}"#;

/// The function `SETTLE_BEFORE` is (a macro, so `PAGE_STILL` can call it).
macro_rules! settle_before {
    () => {
        concat!(
            r#"() => {
  if (!window.__agentRuntimeDoc) window.__agentRuntimeDoc = Math.random().toString(36).slice(2);
  const seen = "#,
            mutations!(),
            r#";
  return { document: window.__agentRuntimeDoc, count: seen.count };
}"#
        )
    };
}

/// Before an action: the document's token (see `DOCUMENT_TOKEN`) and how many DOM mutations
/// the document has had (see `mutations!`). `SETTLE_AFTER` compares; a kept reading of the page
/// is still the page's while neither changed.
pub const SETTLE_BEFORE: &str = settle_before!();

/// What `SETTLE_BEFORE` says, and whether anything on the page may change how it looks without
/// a DOM mutation (a running animation or transition, a video, a canvas, a frame, a plugin): a
/// screenshot taken ahead is kept only while nothing moves.
pub const PAGE_STILL: &str = concat!(
    "() => ({ ...(",
    settle_before!(),
    r#")(),
  moving: document.getAnimations().some((a) => a.playState === 'running')
    || !!document.querySelector('video, canvas, iframe, embed, object, img[src*=".gif" i], img[src*=".webp" i]'),
})"#
);

/// After an action, in the document `SETTLE_BEFORE` saw (`doc`; null: unknown): `{ same:
/// false }` when another document is loaded now. Else `{ same: true, settled, title }`, once the page
/// has had a frame and a turn of its task queue to react (work it deferred with a timer or a
/// promise, a smooth scroll's first step): settled then when nothing changed since `count`;
/// when it did, once it has had no change for `quiet` ms (false after `max` ms).
pub const SETTLE_AFTER: &str = concat!(
    r#"({ quiet, max, count, doc }) => new Promise((resolve) => {
  if (doc !== null && window.__agentRuntimeDoc !== doc) { resolve({ same: false, settled: false }); return; }
  // Not counted before the action: every change since counts as the action's.
  if (!window.__agentRuntimeMutations) count = -1;
  const seen = "#,
    mutations!(),
    r#";
  const start = performance.now();
  const tick = () => {
    const now = performance.now();
    if (seen.count === count || now - seen.last >= quiet) resolve({ same: true, settled: true, title: document.title });
    else if (now - start >= max) resolve({ same: true, settled: false, title: document.title });
    else setTimeout(tick, 20);
  };
  // The first look after the next frame (where a scroll the action started takes its first
  // step) and a turn of the task queue; a page that gets no frame (hidden) is looked at anyway.
  let first = true;
  const once = () => { if (first) { first = false; tick(); } };
  requestAnimationFrame(() => setTimeout(once, 0));
  setTimeout(once, 100);
})"#
);

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

/// Before a click (`ACTION_CHECK` runs it): watches whether its press reaches `el` (something inside it, or its label),
/// on the window in the capture phase, before the page's own handlers. The press is the
/// `mousedown`; when the page cancelled the `pointerdown` there is none, and the `pointerdown`
/// says. Not the `click`: a page that acts on the press (focus, or a redraw under the pointer
/// before the release) may never get one. See `CLICK_REACHED`.
macro_rules! click_watch {
    () => {
        r#"((el) => {
  const w = window;
  if (!w.__agentRuntimeClickWatch) {
    const watch = w.__agentRuntimeClickWatch = { el: null, down: null, pointer: null };
    // The element, or one of its labels (a press on a field's label is the field's).
    const on = (key) => (e) => {
      if (!watch.el || watch[key] !== null) return;
      const path = e.composedPath();
      watch[key] = path.includes(watch.el) || Array.from(watch.el.labels || []).some((l) => path.includes(l));
    };
    w.addEventListener('mousedown', on('down'), true);
    w.addEventListener('pointerdown', on('pointer'), true);
  }
  Object.assign(w.__agentRuntimeClickWatch, { el, down: null, pointer: null });
  return true;
})"#
    };
}

/// Why an action on `el` cannot work, said at once instead of after Playwright's wait: gone,
/// hidden, disabled, read-only (for `type`), or covered by another element (named). Returns
/// `{ problem }`, or `{ x, y }`: where in its box to click when its centre lands on a control
/// nested in it (an opened tree item's child) while its own text is elsewhere or, for an SVG
/// shape, when its centre is not on it (a ring), `through: true`
/// when its own label lies over it (a styled checkbox), or `{}`. Before a click it also starts
/// watching the click's press (see `click_watch!`).
pub const ACTION_CHECK: &str = concat!(
    "(el, kind) => {\n  if (kind === 'click') ",
    click_watch!(),
    r#"(el);
  const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();
  const name = (e) => {
    let s = '<' + e.tagName.toLowerCase();
    if (e.id) s += ' id="' + e.id + '"';
    const c = typeof e.className === 'string' ? squash(e.className) : '';
    if (c) s += ' class="' + c.split(' ').slice(0, 3).join(' ') + '"';
    s += '>';
    const t = squash(e.innerText);
    if (t) s += ' "' + (t.length > 40 ? t.slice(0, 40) + '…' : t) + '"';
    return s;
  };
  // Inside a shadow root the root answers for points, and hosts hold their shadow children.
  const root = el.getRootNode && el.getRootNode().elementFromPoint ? el.getRootNode() : document;
  const within = (outer, e) => {
    for (let n = e; n; n = n.parentNode || n.host) if (n === outer) return true;
    return false;
  };
  if (!el.isConnected) return { problem: 'is no longer on the page; take a new snapshot' };
  if (el.checkVisibility && !el.checkVisibility({ visibilityProperty: true })) {
    return { problem: 'is hidden (display: none or visibility: hidden, on it or a parent); take a new snapshot to see what is shown now' };
  }
  if (el.getClientRects().length === 0) return { problem: 'is hidden (it has no box on the page); take a new snapshot to see what is shown now' };
  if (kind !== 'hover') {
    const off = el.closest('[aria-disabled=true]');
    if ((el.matches && el.matches(':disabled')) || off) return { problem: 'is disabled; the page enables it when it is ready (fill in or choose what it needs first)' };
  }
  if (kind === 'type') {
    const field = el.tagName === 'INPUT' || el.tagName === 'TEXTAREA';
    if ((field && el.readOnly) || el.getAttribute('aria-readonly') === 'true') return { problem: 'is read-only: it is not editable' };
    return {};
  }
  if (el.scrollIntoViewIfNeeded) el.scrollIntoViewIfNeeded(true);
  const box = el.getBoundingClientRect();
  if (box.width === 0 || box.height === 0) return { problem: 'is hidden (it has no size on the page); take a new snapshot to see what is shown now' };
  let x = box.left + box.width / 2, y = box.top + box.height / 2;
  let at = null;
  const hitCentre = root.elementFromPoint(x, y);
  if (hitCentre && hitCentre !== el && within(el, hitCentre)) {
    // The centre is on something inside: is it this element's own text, or a nested control?
    const own = Array.from(el.childNodes).find((n) => n.nodeType === 3 && n.nodeValue.trim());
    const nested = hitCentre.closest('li,a,button,[role],[onclick],[tabindex]');
    if (own && nested && nested !== el && el.contains(nested)) {
      const range = document.createRange();
      range.selectNodeContents(own);
      const r = range.getClientRects()[0];
      if (r && r.width > 0) {
        x = r.left + r.width / 2; y = r.top + r.height / 2;
        at = { x: x - box.left, y: y - box.top };
      }
    }
  }
  let hit = root.elementFromPoint(x, y);
  if (hit && !(el instanceof HTMLElement) && !within(el, hit) && within(hit, el)) {
    // An SVG shape whose centre is not on it (a ring, a crescent): a point that is, on its
    // outline (where a stroke is drawn) or inside its box.
    const points = [];
    try {
      const length = el.getTotalLength(), m = el.getScreenCTM();
      for (let k = 0; k < 24; k++) {
        const p = el.getPointAtLength(length * k / 24).matrixTransform(m);
        points.push([p.x, p.y]);
      }
    } catch (e) { /* not a shape with an outline */ }
    for (let i = 1; i < 8; i++) for (let j = 1; j < 8; j++) points.push([box.left + box.width * j / 8, box.top + box.height * i / 8]);
    for (const [px, py] of points) {
      const h = root.elementFromPoint(px, py);
      if (h && within(el, h)) { x = px; y = py; hit = h; at = { x: px - box.left, y: py - box.top }; break; }
    }
  }
  // A field's own label takes its clicks (a styled checkbox under its label's box).
  const ownLabel = hit && el.labels && Array.from(el.labels).some((l) => within(l, hit));
  if (hit && !ownLabel && !within(el, hit) && !within(hit, el)) {
    return { problem: 'is covered by ' + name(hit) + ', which would get the click; close or move what covers it, scroll, or press Enter on the element instead' };
  }
  // The label gets the click, which is the field's: the click goes through as a user's would.
  if (ownLabel && !within(el, hit)) return Object.assign({ through: true }, at || {});
  return at || {};
}"#
);

/// After a click: `{ reached, connected }` for the element `click_watch!` watched (reached: its
/// press did, or no press was seen at all), and the watch ends. A document with no watch (a new
/// one) says reached.
pub const CLICK_REACHED: &str = r#"() => {
  const watch = window.__agentRuntimeClickWatch;
  if (!watch || !watch.el) return { reached: true, connected: false };
  const press = watch.down !== null ? watch.down : watch.pointer;
  const out = { reached: press !== false, connected: watch.el.isConnected };
  watch.el = null;
  return out;
}"#;

/// After the pointer arrived on an element: resolves true after a frame with no DOM change
/// (see `mutations!`), false after `max` ms of changes (or with no frames, a hidden page).
pub const POINTER_SETTLE: &str = concat!(
    r#"(max) => new Promise((resolve) => {
  const seen = "#,
    mutations!(),
    r#";
  let count = seen.count;
  const start = performance.now();
  const frame = () => {
    if (seen.count === count) { resolve(true); return; }
    if (performance.now() - start >= max) { resolve(false); return; }
    count = seen.count;
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  setTimeout(() => resolve(false), max + 50);
})"#
);

/// The viewport's size in CSS pixels: `[width, height]`.
pub const VIEWPORT: &str = "() => [window.innerWidth, window.innerHeight]";
