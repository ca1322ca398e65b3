//! The browser through the host: real Chromium in the sandbox, pages written into /workspace and
//! opened as file:// URLs. Snapshots, refs, forms, frames, shadow DOM, JS-only clickables,
//! dialogs, popups, downloads, a crash.

use agent_runtime_e2e::{with_id, Host};
use agent_runtime_proto::v1 as pb;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use base64::Engine as _;
use tonic::transport::Channel;
use tonic::Code;

const FORM: &str = r#"<!doctype html><html><head><title>Sign up</title></head><body>
<h1>Create an account</h1>
<form action="welcome.html" method="get">
  <label>Name <input type="text" name="name" placeholder="Your name"></label>
  <label><input type="checkbox" name="news"> Send me news</label>
  <select name="plan"><option value="free">Free</option><option value="pro">Pro</option></select>
  <button type="submit">Sign in</button>
</form>
<a href="about.html">About us</a>
<div id="clicky" style="cursor: pointer" onclick="this.textContent = 'div was clicked'">Open details</div>
<p>Words in a sentence, one <span style="cursor: pointer" onclick="this.textContent = 'span was clicked'">clickable</span> only by script.</p>
<iframe srcdoc="<button onclick=&quot;this.textContent='frame clicked'&quot;>Frame button</button>"></iframe>
<shadow-box></shadow-box>
<p id="late"></p>
<script>
  customElements.define('shadow-box', class extends HTMLElement {
    connectedCallback() {
      const root = this.attachShadow({ mode: 'open' });
      root.innerHTML = '<button onclick="this.textContent = \'shadow clicked\'">Shadow button</button>';
    }
  });
  setTimeout(() => { document.getElementById('late').textContent = 'Loaded later'; }, 400);
</script>
</body></html>"#;

const WELCOME: &str = r#"<!doctype html><title>Welcome</title>
<p id="msg"></p>
<script>
  const q = new URLSearchParams(location.search);
  document.getElementById('msg').textContent = 'Welcome ' + q.get('name') + ' on ' + q.get('plan') + (q.get('news') ? ' with news' : '');
</script>"#;

const ABOUT: &str = "<!doctype html><title>About</title><p>About this site</p>";

const EVENTS: &str = r#"<!doctype html><html><head><title>Events</title></head><body>
<button id="alert" onclick="alert('Saved!')">Alert</button>
<button id="confirm" onclick="document.getElementById('out').textContent = confirm('Sure?') ? 'confirmed' : 'cancelled'">Confirm</button>
<button id="prompt" onclick="document.getElementById('out').textContent = 'hello ' + prompt('Name?')">Prompt</button>
<a id="popup" href="about.html" target="_blank">Open popup</a>
<a id="download" href="data:text/csv,a%2Cb%0A1%2C2%0A" download="report.csv">Download report</a>
<input type="file" id="upload" onchange="document.getElementById('out').textContent = 'picked ' + this.files[0].name">
<div id="hover" onmouseover="this.textContent = 'hovered'">Hover me</div>
<div id="out"></div>
<div style="height: 3000px"></div><p id="bottom">The end</p>
</body></html>"#;

async fn snapshot(client: &mut SandboxClient<Channel>, id: &str) -> pb::BrowserSnapshotResponse {
    client
        .browser_snapshot(with_id(id, pb::BrowserSnapshotRequest::default()))
        .await
        .expect("snapshot")
        .into_inner()
}

/// The ref of the element line containing `needle`.
fn ref_of(elements: &str, needle: &str) -> String {
    let line = elements
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no element line with {needle:?} in:\n{elements}"));
    line.trim_start_matches('[')
        .split(']')
        .next()
        .expect("ref")
        .to_string()
}

fn by_ref(id: &str) -> Option<pb::BrowserTarget> {
    Some(pb::BrowserTarget {
        ref_id: id.into(),
        ..Default::default()
    })
}

fn by_selector(selector: &str) -> Option<pb::BrowserTarget> {
    Some(pb::BrowserTarget {
        selector: selector.into(),
        ..Default::default()
    })
}

async fn goto(client: &mut SandboxClient<Channel>, id: &str, url: &str) -> pb::BrowserPage {
    client
        .browser_goto(with_id(
            id,
            pb::BrowserGotoRequest {
                url: url.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_or_else(|s| panic!("goto {url}: {s:?}"))
        .into_inner()
}

#[tokio::test]
async fn reads_pages_and_acts_by_ref_across_forms_frames_shadow_dom_and_js_clickables() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut c = host.sandbox().await;
    host.write_file(&id, "site/form.html", FORM.as_bytes())
        .await;
    host.write_file(&id, "site/welcome.html", WELCOME.as_bytes())
        .await;
    host.write_file(&id, "site/about.html", ABOUT.as_bytes())
        .await;

    let page = goto(&mut c, &id, "file:///workspace/site/form.html").await;
    assert_eq!(page.url, "file:///workspace/site/form.html");
    assert_eq!(page.title, "Sign up");

    let snap = snapshot(&mut c, &id).await;
    assert_eq!(snap.title, "Sign up");
    let png = base64::engine::general_purpose::STANDARD
        .decode(&snap.screenshot)
        .expect("screenshot is base64");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "screenshot is a PNG");
    assert!(snap.text.contains("Create an account"), "{}", snap.text);
    let el = &snap.elements;
    eprintln!("elements:\n{el}");
    assert!(
        el.contains(r#"input[type=text] "Name" placeholder="Your name""#),
        "{el}"
    );
    assert!(el.contains(r#"button "Sign in""#), "{el}");
    assert!(
        el.contains(r#"select options=["Free", "Pro"] selected="Free""#),
        "{el}"
    );
    assert!(
        el.contains(r#"a "About us" -> file:///workspace/site/about.html"#),
        "{el}"
    );
    assert!(
        el.contains(r#"div "Open details" (clickable)"#),
        "JS-only clickable listed: {el}"
    );
    assert!(
        el.contains(r#"button "Frame button""#),
        "iframe content listed: {el}"
    );
    assert!(
        el.contains(r#"button "Shadow button""#),
        "shadow DOM listed: {el}"
    );
    assert!(
        el.contains(r#"span "clickable" (clickable)"#),
        "an inline JS-only clickable the aria tree folds into its paragraph: {el}"
    );
    for line in el.lines() {
        assert!(
            line.starts_with("[ref_"),
            "every line starts with a ref: {line}"
        );
    }

    // JS-only div, iframe and shadow DOM buttons, clicked by ref.
    let div = ref_of(el, "Open details");
    let frame_button = ref_of(el, "Frame button");
    let shadow_button = ref_of(el, "Shadow button");
    let span = ref_of(el, r#"span "clickable""#);
    for r in [&div, &frame_button, &shadow_button, &span] {
        let clicked = c
            .browser_click(with_id(
                &id,
                pb::BrowserClickRequest {
                    ref_id: r.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_or_else(|s| panic!("click {r}: {s:?}"))
            .into_inner();
        assert!(!clicked.navigated);
        assert_eq!(clicked.url, "file:///workspace/site/form.html");
    }
    // The page changed after load. Elements keep their refs while their role and name stay; a
    // button whose name changed is new to the agent, and its old ref fails at once.
    c.browser_wait(with_id(
        &id,
        pb::BrowserWaitRequest {
            text: "Loaded later".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("the late text appears");
    let snap2 = snapshot(&mut c, &id).await;
    let el2 = &snap2.elements;
    assert!(snap2.text.contains("div was clicked"), "{}", snap2.text);
    assert!(snap2.text.contains("Loaded later"), "{}", snap2.text);
    assert!(snap2.text.contains("span was clicked"), "{}", snap2.text);
    assert!(el2.contains(r#"button "frame clicked""#), "{el2}");
    assert!(el2.contains(r#"button "shadow clicked""#), "{el2}");
    for unchanged in ["Your name", "Sign in", "About us", "Send me news"] {
        assert_eq!(ref_of(el2, unchanged), ref_of(el, unchanged), "{unchanged}");
    }
    assert_ne!(ref_of(el2, "frame clicked"), frame_button);
    let renamed = c
        .browser_click(with_id(
            &id,
            pb::BrowserClickRequest {
                ref_id: shadow_button.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("the renamed button's old ref");
    assert_eq!(renamed.code(), Code::FailedPrecondition, "{renamed:?}");
    // The clickable div's role and name did not change (only its text): same element, same ref.
    assert_eq!(div, ref_of(el2, "div was clicked"));

    // Fill the form by ref, submit by ref: a navigation.
    let name = ref_of(el, "Your name");
    let typed = c
        .browser_type(with_id(
            &id,
            pb::BrowserTypeRequest {
                ref_id: name.clone(),
                text: "Ada".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("type")
        .into_inner();
    assert_eq!(typed.title, "Sign up");
    c.browser_click(with_id(
        &id,
        pb::BrowserClickRequest {
            ref_id: ref_of(el, "Send me news"),
            ..Default::default()
        },
    ))
    .await
    .expect("check the box");
    c.browser_select_option(with_id(
        &id,
        pb::BrowserSelectOptionRequest {
            target: by_ref(&ref_of(el, "options=")),
            values: vec!["Pro".into()],
        },
    ))
    .await
    .expect("select by label");
    let snap3 = snapshot(&mut c, &id).await;
    assert!(
        snap3.elements.contains(r#"value="Ada""#),
        "{}",
        snap3.elements
    );
    assert!(
        snap3.elements.contains("Send me news\" checked"),
        "{}",
        snap3.elements
    );
    assert!(
        snap3.elements.contains(r#"selected="Pro""#),
        "{}",
        snap3.elements
    );
    let submit = c
        .browser_click(with_id(
            &id,
            pb::BrowserClickRequest {
                ref_id: ref_of(el, "Sign in"),
                ..Default::default()
            },
        ))
        .await
        .expect("submit")
        .into_inner();
    assert!(submit.navigated, "{submit:?}");
    assert_eq!(submit.title, "Welcome");
    assert!(
        submit
            .url
            .starts_with("file:///workspace/site/welcome.html?name=Ada"),
        "{}",
        submit.url
    );
    let welcome = snapshot(&mut c, &id).await;
    assert!(
        welcome.text.contains("Welcome Ada on pro with news"),
        "{}",
        welcome.text
    );

    // A ref from the old page fails at once and says what to do; an unknown one too.
    let stale = c
        .browser_click(with_id(
            &id,
            pb::BrowserClickRequest {
                ref_id: name.clone(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("stale ref");
    assert_eq!(stale.code(), Code::FailedPrecondition, "{stale:?}");
    assert!(
        stale.message().contains("take a new snapshot"),
        "{}",
        stale.message()
    );
    let unknown = c
        .browser_click(with_id(
            &id,
            pb::BrowserClickRequest {
                ref_id: "ref_9999".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("unknown ref");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let neither = c
        .browser_click(with_id(&id, pb::BrowserClickRequest::default()))
        .await
        .expect_err("no target");
    assert_eq!(neither.code(), Code::InvalidArgument);

    // History.
    let back = c
        .browser_navigate(with_id(
            &id,
            pb::BrowserNavigateRequest {
                action: "back".into(),
            },
        ))
        .await
        .expect("back")
        .into_inner();
    assert_eq!(back.title, "Sign up");
    assert!(back.navigated);
    let forward = c
        .browser_navigate(with_id(
            &id,
            pb::BrowserNavigateRequest {
                action: "forward".into(),
            },
        ))
        .await
        .expect("forward")
        .into_inner();
    assert_eq!(forward.title, "Welcome");

    // A link by selector; the aria outline with our refs and a budget; evaluate; press.
    goto(&mut c, &id, "file:///workspace/site/form.html").await;
    let outline = c
        .browser_aria_snapshot(with_id(
            &id,
            pb::BrowserAriaSnapshotRequest { max_chars: 120 },
        ))
        .await
        .expect("aria snapshot")
        .into_inner();
    assert!(
        outline.truncated && outline.total_chars > 120,
        "{outline:?}"
    );
    assert!(
        outline.snapshot.contains("[ref=ref_"),
        "{}",
        outline.snapshot
    );
    let full = c
        .browser_aria_snapshot(with_id(
            &id,
            pb::BrowserAriaSnapshotRequest { max_chars: 0 },
        ))
        .await
        .expect("aria snapshot")
        .into_inner();
    assert!(!full.truncated);
    assert!(
        full.snapshot.contains(r#"- button "Sign in" [ref=ref_"#),
        "{}",
        full.snapshot
    );
    let title = c
        .browser_evaluate(with_id(
            &id,
            pb::BrowserEvaluateRequest {
                expression: "() => document.title + '!'".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("evaluate")
        .into_inner();
    assert_eq!(title.result_json, r#""Sign up!""#);
    let thrown = c
        .browser_evaluate(with_id(
            &id,
            pb::BrowserEvaluateRequest {
                expression: "() => { throw new Error('boom') }".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a throwing script");
    assert_eq!(thrown.code(), Code::InvalidArgument);
    assert!(thrown.message().contains("boom"), "{}", thrown.message());
    c.browser_type(with_id(
        &id,
        pb::BrowserTypeRequest {
            selector: "input[name=name]".into(),
            text: "Bob".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("type by selector");
    let pressed = c
        .browser_press(with_id(
            &id,
            pb::BrowserPressRequest {
                target: by_selector("input[name=name]"),
                key: "Enter".into(),
            },
        ))
        .await
        .expect("press Enter submits")
        .into_inner();
    assert!(
        pressed.navigated && pressed.title == "Welcome",
        "{pressed:?}"
    );
    let clicked = c
        .browser_navigate(with_id(
            &id,
            pb::BrowserNavigateRequest {
                action: "sideways".into(),
            },
        ))
        .await
        .expect_err("bad action");
    assert_eq!(clicked.code(), Code::InvalidArgument);
    let missing = c
        .browser_click(with_id(
            &id,
            pb::BrowserClickRequest {
                selector: "#nothing-here".into(),
                ..Default::default()
            },
        ))
        .await
        .expect_err("no match");
    assert_eq!(missing.code(), Code::NotFound);

    host.destroy(&id).await;
}

#[tokio::test]
async fn dialogs_popups_downloads_and_uploads_are_handled_and_reported() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut c = host.sandbox().await;
    host.write_file(&id, "site/events.html", EVENTS.as_bytes())
        .await;
    host.write_file(&id, "site/about.html", ABOUT.as_bytes())
        .await;
    host.write_file(&id, "notes.txt", "some notes".as_bytes())
        .await;
    goto(&mut c, &id, "/workspace/site/events.html").await;

    let click = |selector: &str| pb::BrowserClickRequest {
        selector: selector.into(),
        ..Default::default()
    };
    // An alert is accepted and reported.
    let alert = c
        .browser_click(with_id(&id, click("#alert")))
        .await
        .expect("alert")
        .into_inner();
    assert!(
        alert.events.iter().any(|e| e.kind == "dialog"
            && e.message.contains("Saved!")
            && e.message.contains("accepted")),
        "{alert:?}"
    );

    // A confirm waits for an answer; the page is blocked until then.
    let confirm = c
        .browser_click(with_id(&id, click("#confirm")))
        .await
        .expect("confirm")
        .into_inner();
    assert_eq!(confirm.settled, "dialog open", "{confirm:?}");
    assert!(
        confirm
            .events
            .iter()
            .any(|e| e.kind == "dialog" && e.detail == "confirm"),
        "{confirm:?}"
    );
    let blocked = c
        .browser_snapshot(with_id(&id, pb::BrowserSnapshotRequest::default()))
        .await
        .expect_err("blocked");
    assert_eq!(blocked.code(), Code::FailedPrecondition);
    c.browser_dialog(with_id(
        &id,
        pb::BrowserDialogRequest {
            accept: false,
            ..Default::default()
        },
    ))
    .await
    .expect("dismiss");
    assert!(snapshot(&mut c, &id).await.text.contains("cancelled"));
    let none = c
        .browser_dialog(with_id(
            &id,
            pb::BrowserDialogRequest {
                accept: true,
                ..Default::default()
            },
        ))
        .await
        .expect_err("no dialog");
    assert_eq!(none.code(), Code::FailedPrecondition);

    // A prompt gets its text.
    c.browser_click(with_id(&id, click("#prompt")))
        .await
        .expect("prompt");
    c.browser_dialog(with_id(
        &id,
        pb::BrowserDialogRequest {
            accept: true,
            prompt_text: "Ada".into(),
        },
    ))
    .await
    .expect("answer");
    assert!(snapshot(&mut c, &id).await.text.contains("hello Ada"));

    // A download is saved under /workspace/downloads and reported.
    let download = c
        .browser_click(with_id(&id, click("#download")))
        .await
        .expect("download")
        .into_inner();
    let mut saved = download
        .events
        .iter()
        .find(|e| e.kind == "download")
        .map(|e| e.detail.clone());
    if saved.is_none() {
        // The file may finish after the click returned; the next call reports it.
        let tabs = c
            .browser_tabs(with_id(&id, pb::BrowserTabsRequest::default()))
            .await
            .expect("tabs")
            .into_inner();
        saved = tabs
            .events
            .iter()
            .find(|e| e.kind == "download")
            .map(|e| e.detail.clone());
    }
    assert_eq!(
        saved.as_deref(),
        Some("/workspace/downloads/report.csv"),
        "{download:?}"
    );
    let csv = host
        .read_file(&id, "downloads/report.csv")
        .await
        .expect("read download");
    assert_eq!(csv, b"a,b\n1,2\n");

    // Upload from the workspace.
    c.browser_upload_file(with_id(
        &id,
        pb::BrowserUploadFileRequest {
            target: by_selector("#upload"),
            paths: vec!["notes.txt".into()],
        },
    ))
    .await
    .expect("upload");
    assert!(snapshot(&mut c, &id)
        .await
        .text
        .contains("picked notes.txt"));
    let outside = c
        .browser_upload_file(with_id(
            &id,
            pb::BrowserUploadFileRequest {
                target: by_selector("#upload"),
                paths: vec!["/etc/passwd".into()],
            },
        ))
        .await
        .expect_err("outside the workspace");
    assert_eq!(outside.code(), Code::InvalidArgument);

    // Hover, scroll, and waits for text to go, for a URL and for a time.
    c.browser_hover(with_id(
        &id,
        pb::BrowserHoverRequest {
            target: by_selector("#hover"),
        },
    ))
    .await
    .expect("hover");
    assert!(snapshot(&mut c, &id).await.text.contains("hovered"));
    c.browser_wait(with_id(
        &id,
        pb::BrowserWaitRequest {
            text_gone: "Hover me".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("the old text is gone");
    let scrolled = |y: &str| y.parse::<f64>().expect("a number");
    c.browser_scroll(with_id(
        &id,
        pb::BrowserScrollRequest {
            dy: 500,
            ..Default::default()
        },
    ))
    .await
    .expect("scroll by");
    let y = c
        .browser_evaluate(with_id(
            &id,
            pb::BrowserEvaluateRequest {
                expression: "window.scrollY".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("scrollY")
        .into_inner();
    assert_eq!(scrolled(&y.result_json), 500.0);
    c.browser_scroll(with_id(
        &id,
        pb::BrowserScrollRequest {
            target: by_selector("#bottom"),
            ..Default::default()
        },
    ))
    .await
    .expect("scroll into view");
    let y = c
        .browser_evaluate(with_id(
            &id,
            pb::BrowserEvaluateRequest {
                expression: "window.scrollY".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("scrollY")
        .into_inner();
    assert!(scrolled(&y.result_json) > 2000.0, "{}", y.result_json);
    c.browser_wait(with_id(
        &id,
        pb::BrowserWaitRequest {
            url: "events.html".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("the URL matches");
    c.browser_wait(with_id(
        &id,
        pb::BrowserWaitRequest {
            seconds: 0.2,
            ..Default::default()
        },
    ))
    .await
    .expect("a short pause");
    let never = c
        .browser_wait(with_id(
            &id,
            pb::BrowserWaitRequest {
                text: "never appears".into(),
                timeout_seconds: 0.5,
                ..Default::default()
            },
        ))
        .await
        .expect_err("a wait that times out");
    assert_eq!(never.code(), Code::DeadlineExceeded, "{never:?}");
    let two = c
        .browser_wait(with_id(
            &id,
            pb::BrowserWaitRequest {
                text: "a".into(),
                seconds: 1.0,
                ..Default::default()
            },
        ))
        .await
        .expect_err("two conditions");
    assert_eq!(two.code(), Code::InvalidArgument);

    // A popup becomes the active tab, reported by the click that opened it.
    let popup = c
        .browser_click(with_id(&id, click("#popup")))
        .await
        .expect("popup")
        .into_inner();
    assert!(popup.events.iter().any(|e| e.kind == "popup"), "{popup:?}");
    assert_eq!(popup.title, "About");
    let tabs = c
        .browser_tabs(with_id(&id, pb::BrowserTabsRequest::default()))
        .await
        .expect("tabs")
        .into_inner();
    assert_eq!(tabs.tabs.len(), 2);
    assert!(
        tabs.tabs[1].active && tabs.tabs[1].title == "About",
        "{tabs:?}"
    );
    let closed = c
        .browser_tabs(with_id(
            &id,
            pb::BrowserTabsRequest {
                action: "close".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("close")
        .into_inner();
    assert_eq!(closed.tabs.len(), 1);
    assert!(
        closed.tabs[0].active && closed.tabs[0].title == "Events",
        "{closed:?}"
    );
    let opened = c
        .browser_tabs(with_id(
            &id,
            pb::BrowserTabsRequest {
                action: "new".into(),
                url: "/workspace/site/about.html".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("new tab")
        .into_inner();
    assert_eq!(opened.tabs.len(), 2);
    c.browser_tabs(with_id(
        &id,
        pb::BrowserTabsRequest {
            action: "select".into(),
            index: Some(0),
            ..Default::default()
        },
    ))
    .await
    .expect("select");
    assert_eq!(snapshot(&mut c, &id).await.title, "Events");
    let full = c
        .browser_screenshot(with_id(
            &id,
            pb::BrowserScreenshotRequest { full_page: true },
        ))
        .await
        .expect("screenshot")
        .into_inner();
    assert!(
        full.width > 0 && full.height > 0,
        "{} x {}",
        full.width,
        full.height
    );

    host.destroy(&id).await;
}

#[tokio::test]
async fn a_crashed_browser_restarts_on_the_next_call_and_leaves_no_zombies() {
    let host = Host::start(&[]);
    let id = host.create().await;
    let mut c = host.sandbox().await;
    host.write_file(&id, "about.html", ABOUT.as_bytes()).await;
    // A kernel runs beside the browser, as agents use both (the 512 MiB default holds both).
    let ctx = c
        .create_context(with_id(
            &id,
            pb::CreateContextRequest {
                language: "python".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("context")
        .into_inner();
    goto(&mut c, &id, "/workspace/about.html").await;
    let before = snapshot(&mut c, &id).await;

    let killed = host
        .sh(
            &id,
            "pkill -9 -f /usr/lib/chromium/chromium; sleep 1; echo done",
        )
        .await;
    assert!(killed.stdout.contains("done"), "{killed:?}");
    let again = goto(&mut c, &id, "/workspace/about.html").await;
    assert!(
        again.events.iter().any(|e| e.kind == "restarted"),
        "the caller is told: {again:?}"
    );
    let after = snapshot(&mut c, &id).await;
    assert_eq!(after.title, "About");
    assert_eq!(before.title, after.title);

    // Chromium's helpers are reaped: no zombie processes.
    let ps = host
        .sh(&id, "sleep 1; ps -eo stat=,comm= | awk '$1 ~ /^Z/' | wc -l")
        .await;
    assert_eq!(ps.stdout.trim(), "0", "zombies: {ps:?}");
    // The kernel survived the browser's crash.
    let contexts = c
        .list_contexts(with_id(&id, pb::ListContextsRequest::default()))
        .await
        .expect("list contexts")
        .into_inner();
    assert!(
        contexts
            .contexts
            .iter()
            .any(|k| k.context_id == ctx.context_id),
        "{contexts:?}"
    );
    host.destroy(&id).await;
}
