//! The only door a solver has to the browser: our snapshots to see, and click / type / press /
//! select / hover to act. No evaluate here — starting episodes and reading rewards is the harness's job.

use agent_runtime_e2e::with_id;
use agent_runtime_proto::v1::sandbox_client::SandboxClient;
use agent_runtime_proto::v1::{
    BrowserAriaSnapshotRequest, BrowserClickRequest, BrowserHoverRequest, BrowserPressRequest,
    BrowserSelectOptionRequest, BrowserSnapshotRequest, BrowserTarget, BrowserTypeRequest,
};
use anyhow::anyhow;
use tonic::transport::Channel;

use super::page::{Element, Page};

/// A solver's hands and eyes on one sandbox's browser.
pub struct Agent {
    client: SandboxClient<Channel>,
    sandbox: String,
    /// Browser calls made so far.
    pub calls: usize,
    /// Print every call and snapshot (`MINIWOB_TRACE=1`), to see what a failing solver saw.
    trace: bool,
}

impl Agent {
    /// An agent on `sandbox`'s browser.
    pub fn new(client: SandboxClient<Channel>, sandbox: &str) -> Self {
        Self {
            client,
            sandbox: sandbox.to_owned(),
            calls: 0,
            trace: std::env::var_os("MINIWOB_TRACE").is_some(),
        }
    }

    /// BrowserSnapshot: body text and element lines.
    pub async fn snapshot(&mut self) -> anyhow::Result<Page> {
        self.calls += 1;
        let snap = self
            .client
            .browser_snapshot(with_id(&self.sandbox, BrowserSnapshotRequest::default()))
            .await
            .map_err(|s| anyhow!("BrowserSnapshot: {s:?}"))?
            .into_inner();
        if self.trace {
            println!(
                "  snapshot text:\n{}\n  elements:\n{}",
                snap.text, snap.elements
            );
        }
        Page::parse(&snap.text, &snap.elements)
    }

    /// BrowserAriaSnapshot: the `- role "name" [ref=ref_N]` outline.
    pub async fn aria(&mut self) -> anyhow::Result<String> {
        self.calls += 1;
        let snap = self
            .client
            .browser_aria_snapshot(with_id(
                &self.sandbox,
                BrowserAriaSnapshotRequest { max_chars: 0 },
            ))
            .await
            .map_err(|s| anyhow!("BrowserAriaSnapshot: {s:?}"))?
            .into_inner();
        Ok(snap.snapshot)
    }

    /// BrowserClick by ref.
    pub async fn click(&mut self, el: &Element) -> anyhow::Result<()> {
        self.click_request(BrowserClickRequest {
            ref_id: el.id.clone(),
            ..Default::default()
        })
        .await
    }

    async fn click_request(&mut self, req: BrowserClickRequest) -> anyhow::Result<()> {
        self.calls += 1;
        let what = format!("BrowserClick {req:?}");
        self.log(&what);
        self.client
            .browser_click(with_id(&self.sandbox, req))
            .await
            .map_err(|s| anyhow!("{what}: {s:?}"))?;
        Ok(())
    }

    /// BrowserType by ref: replaces the field's text.
    pub async fn type_text(&mut self, el: &Element, text: &str) -> anyhow::Result<()> {
        self.calls += 1;
        self.log(&format!("BrowserType {} {text:?}", el.id));
        self.client
            .browser_type(with_id(
                &self.sandbox,
                BrowserTypeRequest {
                    ref_id: el.id.clone(),
                    text: text.to_owned(),
                    ..Default::default()
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserType {} {text:?}: {s:?}", el.id))?;
        Ok(())
    }

    /// BrowserPress: a key on an element, or on whatever has focus.
    pub async fn press(&mut self, el: Option<&Element>, key: &str) -> anyhow::Result<()> {
        self.calls += 1;
        self.log(&format!("BrowserPress {:?} {key:?}", el.map(|e| &e.id)));
        self.client
            .browser_press(with_id(
                &self.sandbox,
                BrowserPressRequest {
                    target: el.map(target),
                    key: key.to_owned(),
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserPress {key:?}: {s:?}"))?;
        Ok(())
    }

    /// BrowserHover by ref: the pointer over the element (a menu that opens on hover).
    pub async fn hover(&mut self, el: &Element) -> anyhow::Result<()> {
        self.calls += 1;
        self.log(&format!("BrowserHover {}", el.id));
        self.client
            .browser_hover(with_id(
                &self.sandbox,
                BrowserHoverRequest {
                    target: Some(target(el)),
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserHover {}: {s:?}", el.id))?;
        Ok(())
    }

    /// BrowserSelectOption by ref: options by label.
    pub async fn select(&mut self, el: &Element, labels: &[&str]) -> anyhow::Result<()> {
        self.calls += 1;
        self.log(&format!("BrowserSelectOption {} {labels:?}", el.id));
        self.client
            .browser_select_option(with_id(
                &self.sandbox,
                BrowserSelectOptionRequest {
                    target: Some(target(el)),
                    values: labels.iter().map(|l| (*l).to_owned()).collect(),
                },
            ))
            .await
            .map_err(|s| anyhow!("BrowserSelectOption {} {labels:?}: {s:?}", el.id))?;
        Ok(())
    }
}

impl Agent {
    fn log(&self, what: &str) {
        if self.trace {
            println!("  {what}");
        }
    }
}

fn target(el: &Element) -> BrowserTarget {
    BrowserTarget {
        ref_id: el.id.clone(),
        ..Default::default()
    }
}
