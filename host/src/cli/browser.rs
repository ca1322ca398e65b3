//! `agent-runtime browser ...`: the sandbox's browser from a shell, over gRPC through the host.

use super::token::HostChannel;
use agent_runtime_proto::v1 as pb;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use anyhow::Context as _;
use base64::Engine as _;
use clap::Subcommand;

use super::context::with_sandbox;
use super::sandbox::{connect, status_err};

/// Browser subcommands. Targets are a ref from `snapshot` (ref_3) or a CSS selector.
#[derive(Debug, Subcommand)]
pub enum BrowserCommand {
    /// Open a URL (http://127.0.0.1:..., file:///workspace/..., or a /workspace path).
    Goto {
        /// The URL.
        url: String,
    },
    /// The page as a model reads it: text and interactive elements with refs.
    Snapshot {
        /// Also save the viewport screenshot (PNG) here.
        #[arg(long)]
        screenshot: Option<std::path::PathBuf>,
    },
    /// Playwright's accessibility outline with refs.
    Aria {
        /// Budget in characters (default 20000).
        #[arg(long, default_value_t = 0)]
        max_chars: u32,
    },
    /// Click an element.
    Click {
        /// ref_N or a CSS selector.
        target: String,
    },
    /// Replace an input's text.
    Type {
        /// ref_N or a CSS selector.
        target: String,
        /// The text.
        text: String,
    },
    /// Press a key ("Enter", "Control+a"), optionally on an element.
    Press {
        /// The key.
        key: String,
        /// ref_N or a CSS selector.
        #[arg(long)]
        on: Option<String>,
    },
    /// Select options of a <select> by value or label.
    Select {
        /// ref_N or a CSS selector.
        target: String,
        /// Values or labels.
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Back, forward or reload.
    Navigate {
        /// back | forward | reload
        action: String,
    },
    /// Wait for text to appear.
    Wait {
        /// The text.
        text: String,
    },
    /// Evaluate JavaScript in the page; prints the result as JSON.
    Eval {
        /// An expression or a function.
        expression: String,
    },
    /// List tabs, or: new [URL], select N, close [N].
    Tabs {
        /// list | new | select | close
        #[arg(default_value = "list")]
        action: String,
        /// The tab index (select, close) or URL (new).
        arg: Option<String>,
    },
    /// Answer the open confirm/prompt.
    Dialog {
        /// Dismiss instead of accepting.
        #[arg(long)]
        dismiss: bool,
        /// The answer to a prompt.
        #[arg(long, default_value = "")]
        text: String,
    },
    /// Save a PNG of the page.
    Screenshot {
        /// Where to save it.
        file: std::path::PathBuf,
        /// The whole page, not just the viewport.
        #[arg(long)]
        full_page: bool,
    },
}

fn target(raw: &str) -> pb::BrowserTarget {
    let is_ref = raw.starts_with("ref_") || raw.chars().all(|c| c.is_ascii_digit());
    if is_ref {
        pb::BrowserTarget {
            ref_id: raw.to_string(),
            ..Default::default()
        }
    } else {
        pb::BrowserTarget {
            selector: raw.to_string(),
            ..Default::default()
        }
    }
}

fn print_events(events: &[pb::BrowserEvent]) {
    for e in events {
        println!("! {}: {}", e.kind, e.message);
    }
}

fn print_action(r: &pb::BrowserActionResponse) {
    println!("{}  {:?}", r.url, r.title);
    if r.navigated || !r.settled.is_empty() {
        println!(
            "({}{})",
            if r.navigated { "navigated; " } else { "" },
            r.settled
        );
    }
    print_events(&r.events);
}

/// Runs one browser subcommand against `sandbox`.
pub async fn run(cmd: BrowserCommand, addr: &str, sandbox: &str) -> anyhow::Result<i32> {
    let channel: HostChannel = connect(addr).await?;
    let mut c = SandboxClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    match cmd {
        BrowserCommand::Goto { url } => {
            let r = c
                .browser_goto(with_sandbox(
                    sandbox,
                    pb::BrowserGotoRequest {
                        url,
                        ..Default::default()
                    },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}  {:?}", r.url, r.title);
            print_events(&r.events);
        }
        BrowserCommand::Snapshot { screenshot } => {
            let r = c
                .browser_snapshot(with_sandbox(sandbox, pb::BrowserSnapshotRequest {})?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}  {:?}\n\n{}\n\n{}", r.url, r.title, r.text, r.elements);
            print_events(&r.events);
            if let Some(path) = screenshot {
                save_png(&path, &r.screenshot)?;
            }
        }
        BrowserCommand::Aria { max_chars } => {
            let r = c
                .browser_aria_snapshot(with_sandbox(
                    sandbox,
                    pb::BrowserAriaSnapshotRequest { max_chars },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}  {:?}\n{}", r.url, r.title, r.snapshot);
            print_events(&r.events);
        }
        BrowserCommand::Click { target: t } => {
            let t = target(&t);
            let r = c
                .browser_click(with_sandbox(
                    sandbox,
                    pb::BrowserClickRequest {
                        selector: t.selector,
                        ref_id: t.ref_id,
                    },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            print_action(&pb::BrowserActionResponse {
                url: r.url,
                title: r.title,
                navigated: r.navigated,
                settled: r.settled,
                events: r.events,
            });
        }
        BrowserCommand::Type { target: t, text } => {
            let t = target(&t);
            let r = c
                .browser_type(with_sandbox(
                    sandbox,
                    pb::BrowserTypeRequest {
                        selector: t.selector,
                        ref_id: t.ref_id,
                        text,
                    },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}  {:?}", r.url, r.title);
            print_events(&r.events);
        }
        BrowserCommand::Press { key, on } => {
            let r = c
                .browser_press(with_sandbox(
                    sandbox,
                    pb::BrowserPressRequest {
                        target: on.as_deref().map(target),
                        key,
                    },
                )?)
                .await
                .map_err(status_err)?;
            print_action(r.get_ref());
        }
        BrowserCommand::Select { target: t, values } => {
            let r = c
                .browser_select_option(with_sandbox(
                    sandbox,
                    pb::BrowserSelectOptionRequest {
                        target: Some(target(&t)),
                        values,
                    },
                )?)
                .await
                .map_err(status_err)?;
            print_action(r.get_ref());
        }
        BrowserCommand::Navigate { action } => {
            let r = c
                .browser_navigate(with_sandbox(
                    sandbox,
                    pb::BrowserNavigateRequest { action },
                )?)
                .await
                .map_err(status_err)?;
            print_action(r.get_ref());
        }
        BrowserCommand::Wait { text } => {
            let r = c
                .browser_wait(with_sandbox(
                    sandbox,
                    pb::BrowserWaitRequest {
                        text,
                        ..Default::default()
                    },
                )?)
                .await
                .map_err(status_err)?;
            print_action(r.get_ref());
        }
        BrowserCommand::Eval { expression } => {
            let r = c
                .browser_evaluate(with_sandbox(
                    sandbox,
                    pb::BrowserEvaluateRequest {
                        expression,
                        target: None,
                    },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            println!("{}", r.result_json);
            print_events(&r.events);
        }
        BrowserCommand::Tabs { action, arg } => {
            let mut m = pb::BrowserTabsRequest {
                action: action.clone(),
                ..Default::default()
            };
            match (action.as_str(), arg) {
                ("new", Some(url)) => m.url = url,
                (_, Some(n)) => m.index = Some(n.parse().context("the tab index is a number")?),
                _ => {}
            }
            let r = c
                .browser_tabs(with_sandbox(sandbox, m)?)
                .await
                .map_err(status_err)?
                .into_inner();
            for t in &r.tabs {
                let mark = if t.active { "*" } else { " " };
                println!("{mark}{}  {}  {:?}", t.index, t.url, t.title);
            }
            print_events(&r.events);
        }
        BrowserCommand::Dialog { dismiss, text } => {
            let r = c
                .browser_dialog(with_sandbox(
                    sandbox,
                    pb::BrowserDialogRequest {
                        accept: !dismiss,
                        prompt_text: text,
                    },
                )?)
                .await
                .map_err(status_err)?;
            print_action(r.get_ref());
        }
        BrowserCommand::Screenshot { file, full_page } => {
            let r = c
                .browser_screenshot(with_sandbox(
                    sandbox,
                    pb::BrowserScreenshotRequest { full_page },
                )?)
                .await
                .map_err(status_err)?
                .into_inner();
            save_png(&file, &r.png)?;
            println!("{} ({} x {})", file.display(), r.width, r.height);
        }
    }
    Ok(0)
}

fn save_png(path: &std::path::Path, b64: &str) -> anyhow::Result<()> {
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the screenshot is not base64")?;
    std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
}
