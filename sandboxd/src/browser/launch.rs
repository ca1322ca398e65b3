//! Starting Chromium: the driver, the browser with flags that fit a 512 MiB sandbox, and the one
//! browser context, with its event handlers wired to [`Shared`].

use std::sync::Arc;

use playwright_rs::protocol::{BrowserContext, Page, Playwright};
use playwright_rs::{BrowserContextOptions, LaunchOptions, Viewport};

use super::error::{BrowserError, Result};
use super::events::Shared;
use super::js;

/// Debian's Chromium binary (the `/usr/bin/chromium` wrapper script only adds flags we set).
const CHROMIUM_CANDIDATES: [&str; 2] = ["/usr/lib/chromium/chromium", "/usr/bin/chromium"];

/// The viewport pages render in; screenshots are this size.
pub const VIEWPORT: (u32, u32) = (1280, 720);

/// Flags that keep Chromium inside the sandbox's memory and process limits: one renderer process
/// shared by sites (no site isolation), no zygotes, GPU and network service inside the browser
/// process, /tmp instead of the small /dev/shm, and none of the background services that would
/// try the (absent) network.
const CHROMIUM_ARGS: [&str; 17] = [
    "--disable-dev-shm-usage",
    "--no-zygote",
    "--in-process-gpu",
    "--disable-gpu",
    "--disable-software-rasterizer",
    "--renderer-process-limit=1",
    "--disable-site-isolation-trials",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-breakpad",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--js-flags=--max-old-space-size=192",
    "--disk-cache-size=16777216",
];

/// Chromium honours only the last `--disable-features`/`--enable-features`, and Playwright
/// passes its own: so these lists repeat Playwright 1.64's before adding ours.
const DISABLED_FEATURES: [&str; 22] = [
    // Playwright's.
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "DialMediaRouteProvider",
    "GlobalMediaControls",
    "HttpsUpgrades",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "BlockOriginHeaderModificationOnRedirect",
    "Translate",
    "AutoDeElevate",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    // Ours: one renderer for all sites, and no preloaded omnibox WebUI renderer (~60 MB).
    "site-per-process",
    "IsolateOrigins",
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    "AcceptCHFrame",
    "InterestFeedContentSuggestions",
    "CertificateTransparencyComponentUpdater",
];
const ENABLED_FEATURES: [&str; 2] = ["CDPScreenshotNewSurface", "NetworkServiceInProcess2"];

/// Every flag Chromium gets from us. With the egress proxy listening, Chromium always uses it
/// (whatever the policy: the host refuses what is not allowed). It is given as a flag, not as
/// Playwright's `proxy` option, which would also send loopback through the proxy; Chromium's
/// own rules keep `localhost`, 127.0.0.1 and `[::1]` (servers inside the sandbox) and file://
/// direct.
fn chromium_args() -> Vec<String> {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
    if let Some(proxy) = crate::egress::proxy_url() {
        args.push(format!("--proxy-server={proxy}"));
    }
    args.push(format!(
        "--disable-features={}",
        DISABLED_FEATURES.join(",")
    ));
    args.push(format!("--enable-features={}", ENABLED_FEATURES.join(",")));
    args
}

/// A running browser: the driver, Chromium and the sandbox's one browser context.
pub struct Launched {
    /// The Node driver; shut down last.
    pub playwright: Playwright,
    /// Chromium.
    pub browser: playwright_rs::protocol::Browser,
    /// The one context every tab lives in.
    pub context: BrowserContext,
    /// The first tab.
    pub page: Page,
}

/// Starts the driver, Chromium, a context and its first tab. With `SANDBOXD_RUN_AS` the driver
/// must be the shim that drops to the sandbox user (`privileges`), so neither it nor Chromium runs as
/// root; a driver that is not is refused.
pub async fn launch(shared: &Arc<Shared>) -> Result<Launched> {
    if let Ok((node, _)) = playwright_rs::server::driver::get_driver_executable() {
        crate::privileges::check_driver(&node).map_err(BrowserError::Launch)?;
    }
    let playwright = Playwright::launch()
        .await
        .map_err(|e| BrowserError::Launch(format!("the playwright driver: {e}")))?;
    // Before the context: engines reach the contexts created after them.
    let selectors = playwright.selectors();
    let registered = match selectors
        .register(js::MARK_ENGINE_NAME, js::MARK_ENGINE, Some(true))
        .await
    {
        Ok(()) => {
            selectors
                .register(js::REF_ENGINE_NAME, js::REF_ENGINE, Some(false))
                .await
        }
        e => e,
    };
    if let Err(e) = registered {
        let _ = playwright.shutdown().await;
        return Err(BrowserError::Launch(format!(
            "the playwright driver refused a selector engine: {e}"
        )));
    }
    let executable = CHROMIUM_CANDIDATES
        .iter()
        .find(|p| std::path::Path::new(p).exists())
        .ok_or_else(|| BrowserError::Launch("chromium is not installed in this image".into()))?;
    let options = LaunchOptions::new()
        .executable_path(executable.to_string())
        .headless(true)
        .chromium_sandbox(false)
        .handle_sigint(false)
        .handle_sigterm(false)
        .handle_sighup(false)
        .timeout(30_000.0)
        .args(chromium_args());
    let browser = match playwright.chromium().launch_with_options(options).await {
        Ok(b) => b,
        Err(e) => {
            let _ = playwright.shutdown().await;
            return Err(BrowserError::Launch(format!("chromium: {e}")));
        }
    };
    {
        let shared = shared.clone();
        browser
            .on_disconnected(move || {
                let shared = shared.clone();
                async move {
                    shared.mark_crashed();
                    Ok(())
                }
            })
            .await?;
    }
    let mut context_options = BrowserContextOptions::default();
    context_options.viewport = Some(Viewport {
        width: VIEWPORT.0,
        height: VIEWPORT.1,
    });
    context_options.accept_downloads = Some(playwright_rs::protocol::AcceptDownloads::Accept);
    let context = browser.new_context_with_options(context_options).await?;
    {
        let shared = shared.clone();
        context
            .on_page(move |page| {
                let shared = shared.clone();
                async move {
                    shared.page_opened(page);
                    Ok(())
                }
            })
            .await?;
    }
    let page = context.new_page().await?;
    Ok(Launched {
        playwright,
        browser,
        context,
        page,
    })
}

/// Wires a tab's dialogs, downloads and crash to [`Shared`]. Every tab gets this once.
pub async fn wire_page(page: &Page, shared: &Arc<Shared>) -> Result<()> {
    page.set_default_timeout(super::settle::ACTION_TIMEOUT_MS)
        .await;
    page.set_default_navigation_timeout(super::settle::NAVIGATION_TIMEOUT_MS)
        .await;
    {
        let shared = shared.clone();
        page.on_dialog(move |dialog| {
            let shared = shared.clone();
            async move { shared.dialog_opened(dialog).await }
        })
        .await?;
    }
    {
        let shared = shared.clone();
        page.on_download(move |download| {
            let shared = shared.clone();
            async move { shared.download_started(download).await }
        })
        .await?;
    }
    {
        let shared = shared.clone();
        page.on_crash(move || {
            let shared = shared.clone();
            async move {
                shared.page_crashed();
                Ok(())
            }
        })
        .await?;
    }
    Ok(())
}
