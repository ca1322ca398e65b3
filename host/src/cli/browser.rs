//! `agent-runtime browser ...`: the sandbox's browser from a shell, over gRPC through the host.

use agent_runtime_client::rpc::SandboxRpc;
use agent_runtime_client::{NavigateAction, SandboxId, TabAction};
use agent_runtime_proto::v1 as pb;
use anyhow::Context as _;
use base64::Engine as _;
use clap::Subcommand;

use super::call::{Host, InSandbox};

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
        /// Give every element line its box: ` at (x,y) WxH` in viewport pixels.
        #[arg(long)]
        boxes: bool,
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
        #[arg(value_enum)]
        action: NavigateAction,
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
        #[arg(value_enum, default_value_t = TabAction::List)]
        action: TabAction,
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

/// How a browser response prints.
trait Show {
    fn show(&self);
}

impl Show for pb::BrowserPage {
    fn show(&self) {
        println!("{}  {:?}", self.url, self.title);
        print_events(&self.events);
    }
}

impl Show for pb::BrowserActionResponse {
    fn show(&self) {
        action_lines(&self.url, &self.title, self.navigated, &self.settled);
        print_events(&self.events);
    }
}

impl Show for pb::BrowserSnapshotResponse {
    fn show(&self) {
        println!(
            "{}  {:?}\n\n{}\n\n{}",
            self.url, self.title, self.text, self.elements
        );
        print_events(&self.events);
    }
}

impl Show for pb::BrowserAriaSnapshotResponse {
    fn show(&self) {
        println!("{}  {:?}\n{}", self.url, self.title, self.snapshot);
        print_events(&self.events);
    }
}

impl Show for pb::BrowserEvaluateResponse {
    fn show(&self) {
        println!("{}", self.result_json);
        print_events(&self.events);
    }
}

impl Show for pb::BrowserTabsResponse {
    fn show(&self) {
        for t in &self.tabs {
            let mark = if t.active { "*" } else { " " };
            println!("{mark}{}  {}  {:?}", t.index, t.url, t.title);
        }
        print_events(&self.events);
    }
}

fn action_lines(url: &str, title: &str, navigated: bool, settled: &str) {
    println!("{url}  {title:?}");
    if navigated || !settled.is_empty() {
        println!("({}{settled})", if navigated { "navigated; " } else { "" });
    }
}

/// The one call path: call, then print the response.
async fn show<R>(s: &InSandbox, req: R) -> anyhow::Result<R::Response>
where
    R: SandboxRpc,
    R::Response: Show,
{
    let r = s.call(req).await?;
    r.show();
    Ok(r)
}

impl BrowserCommand {
    /// Runs the command in the sandbox `s` calls into.
    async fn run(self, s: &InSandbox) -> anyhow::Result<()> {
        match self {
            Self::Goto { url } => {
                show(
                    s,
                    pb::BrowserGotoRequest {
                        url,
                        ..Default::default()
                    },
                )
                .await?;
            }
            Self::Snapshot { screenshot, boxes } => {
                let r = show(
                    s,
                    pb::BrowserSnapshotRequest {
                        boxes,
                        ..Default::default()
                    },
                )
                .await?;
                if let Some(path) = screenshot {
                    save_png(&path, &r.screenshot)?;
                }
            }
            Self::Aria { max_chars } => {
                show(s, pb::BrowserAriaSnapshotRequest { max_chars }).await?;
            }
            Self::Click { target: t } => {
                let t = target(&t);
                let (selector, ref_id) = (t.selector, t.ref_id);
                show(
                    s,
                    pb::BrowserClickRequest {
                        selector,
                        ref_id,
                        target: None,
                        point: None,
                    },
                )
                .await?;
            }
            Self::Type { target: t, text } => {
                let t = target(&t);
                let (selector, ref_id) = (t.selector, t.ref_id);
                show(
                    s,
                    pb::BrowserTypeRequest {
                        selector,
                        ref_id,
                        text,
                        target: None,
                    },
                )
                .await?;
            }
            Self::Press { key, on } => {
                let target = on.as_deref().map(target);
                show(s, pb::BrowserPressRequest { target, key }).await?;
            }
            Self::Select { target: t, values } => {
                let target = Some(target(&t));
                show(s, pb::BrowserSelectOptionRequest { target, values }).await?;
            }
            Self::Navigate { action } => {
                let action = action.to_string();
                show(s, pb::BrowserNavigateRequest { action }).await?;
            }
            Self::Wait { text } => {
                show(
                    s,
                    pb::BrowserWaitRequest {
                        text,
                        ..Default::default()
                    },
                )
                .await?;
            }
            Self::Eval { expression } => {
                show(
                    s,
                    pb::BrowserEvaluateRequest {
                        expression,
                        target: None,
                    },
                )
                .await?;
            }
            Self::Tabs { action, arg } => {
                let mut m = pb::BrowserTabsRequest {
                    action: action.to_string(),
                    ..Default::default()
                };
                match (action, arg) {
                    (TabAction::New, Some(url)) => m.url = url,
                    (_, Some(n)) => {
                        m.index = Some(n.parse().context("the tab index is a number")?);
                    }
                    _ => {}
                }
                show(s, m).await?;
            }
            Self::Dialog { dismiss, text } => {
                let (accept, prompt_text) = (!dismiss, text);
                show(
                    s,
                    pb::BrowserDialogRequest {
                        accept,
                        prompt_text,
                    },
                )
                .await?;
            }
            Self::Screenshot { file, full_page } => {
                let r = s.call(pb::BrowserScreenshotRequest { full_page }).await?;
                save_png(&file, &r.png)?;
                println!("{} ({} x {})", file.display(), r.width, r.height);
            }
        }
        Ok(())
    }
}

/// Runs one browser subcommand against `sandbox`.
pub async fn run(cmd: BrowserCommand, addr: &str, sandbox: SandboxId) -> anyhow::Result<i32> {
    let s = Host::connect(addr).await?.in_sandbox(sandbox);
    cmd.run(&s).await?;
    Ok(0)
}

fn save_png(path: &std::path::Path, b64: &str) -> anyhow::Result<()> {
    let png = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("the screenshot is not base64")?;
    std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::target;
    use crate::cli::Cli;

    #[test]
    fn refs_and_selectors() {
        assert_eq!(target("ref_3").ref_id, "ref_3");
        assert_eq!(target("12").ref_id, "12");
        let css = target("#search input");
        assert_eq!(
            (css.selector.as_str(), css.ref_id.as_str()),
            ("#search input", "")
        );
    }

    #[test]
    fn actions_are_closed_sets() {
        let parse = |args: &[&str]| {
            let all = ["agent-runtime", "browser", "-s", "sb-1"];
            Cli::try_parse_from(all.iter().chain(args)).is_ok()
        };
        assert!(parse(&["navigate", "back"]));
        assert!(!parse(&["navigate", "up"]));
        assert!(parse(&["tabs"]));
        assert!(parse(&["tabs", "new", "http://127.0.0.1/"]));
        assert!(!parse(&["tabs", "open"]));
    }
}
