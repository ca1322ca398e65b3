//! The variables egress gives every process sandboxd starts (exec runs, kernels): the proxy
//! variables while the host's latest `Listen` asked for them, and the extra CA bundle's variables
//! once one is installed. Decided here, once; each place that builds a child's environment adds
//! [`child_env`] with one line. User code may still set or unset them for its own processes: the
//! proxy is the only way out whatever they say.

use std::path::PathBuf;
use std::sync::RwLock;

/// Proxy variables, set to the proxy's URL (both cases: curl reads only `http_proxy` lower-case,
/// Go and others read the upper-case forms).
const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];
/// Variables naming what bypasses the proxy.
const NO_PROXY_VARS: [&str; 2] = ["NO_PROXY", "no_proxy"];
/// What bypasses the proxy: servers inside the sandbox.
pub const NO_PROXY: &str = "localhost,127.0.0.1";
/// Variables naming a CA bundle, one per tool family: OpenSSL (Python's ssl, curl, git built with
/// OpenSSL), requests, curl, git, pip, Node.
const CA_VARS: [&str; 6] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "NODE_EXTRA_CA_CERTS",
];

/// What children get.
#[derive(Debug)]
struct State {
    /// The proxy's URL inside the sandbox; `None` while no proxy listens.
    proxy_url: Option<String>,
    /// The latest `Listen` asked for proxy variables.
    proxy_env: bool,
    /// The CA bundle written at start (system CAs + the operator's extra CA).
    ca_bundle: Option<PathBuf>,
}

static STATE: RwLock<State> = RwLock::new(State {
    proxy_url: None,
    proxy_env: false,
    ca_bundle: None,
});

fn update(change: impl FnOnce(&mut State)) {
    let mut state = STATE.write().unwrap_or_else(|p| p.into_inner());
    change(&mut state);
}

/// Records the proxy's URL (`None`: no proxy listens).
pub(super) fn set_proxy_url(url: Option<String>) {
    update(|s| s.proxy_url = url);
}

/// Whether children started from now on get the proxy variables (the latest `Listen` says).
pub(super) fn set_proxy_env(on: bool) {
    update(|s| s.proxy_env = on);
}

/// Children get the CA variables pointing at `bundle` from now on.
pub(super) fn set_ca_bundle(bundle: PathBuf) {
    update(|s| s.ca_bundle = Some(bundle));
}

/// The proxy's URL inside the sandbox (`http://127.0.0.1:3128`), while it listens.
pub fn proxy_url() -> Option<String> {
    STATE
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .proxy_url
        .clone()
}

/// The variables a process started now gets from egress, to add before the caller's own.
pub fn child_env() -> Vec<(String, String)> {
    env_of(&STATE.read().unwrap_or_else(|p| p.into_inner()))
}

fn env_of(state: &State) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if let (true, Some(url)) = (state.proxy_env, &state.proxy_url) {
        env.extend(PROXY_VARS.iter().map(|k| (k.to_string(), url.clone())));
        env.extend(
            NO_PROXY_VARS
                .iter()
                .map(|k| (k.to_string(), NO_PROXY.to_string())),
        );
    }
    if let Some(bundle) = &state.ca_bundle {
        let bundle = bundle.display().to_string();
        env.extend(CA_VARS.iter().map(|k| (k.to_string(), bundle.clone())));
    }
    env
}

/// Every variable [`child_env`] may set: a process started earlier (a spare kernel) is brought up
/// to date by setting what `child_env` has now and removing the rest of these.
pub fn managed_vars() -> impl Iterator<Item = &'static str> {
    PROXY_VARS
        .iter()
        .chain(NO_PROXY_VARS.iter())
        .chain(CA_VARS.iter())
        .copied()
}

/// Removes proxy variables sandboxd itself inherited, so that children have them only when the
/// host asked (a development machine's `http_proxy` would otherwise reach every run). Call before
/// any thread starts: changing the environment races with threads reading it.
pub fn scrub_inherited_env() {
    for key in PROXY_VARS.iter().chain(NO_PROXY_VARS.iter()) {
        std::env::remove_var(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(proxy_env: bool, url: Option<&str>, bundle: Option<&str>) -> State {
        State {
            proxy_url: url.map(str::to_string),
            proxy_env,
            ca_bundle: bundle.map(PathBuf::from),
        }
    }

    fn keys(env: &[(String, String)]) -> Vec<&str> {
        env.iter().map(|(k, _)| k.as_str()).collect()
    }

    #[test]
    fn proxy_variables_only_while_asked_for_and_listening() {
        assert!(env_of(&state(false, Some("http://127.0.0.1:3128"), None)).is_empty());
        assert!(env_of(&state(true, None, None)).is_empty());
        let env = env_of(&state(true, Some("http://127.0.0.1:3128"), None));
        assert_eq!(
            keys(&env),
            [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "ALL_PROXY",
                "http_proxy",
                "https_proxy",
                "all_proxy",
                "NO_PROXY",
                "no_proxy"
            ]
        );
        assert!(env[..6].iter().all(|(_, v)| v == "http://127.0.0.1:3128"));
        assert!(env[6..].iter().all(|(_, v)| v == "localhost,127.0.0.1"));
    }

    #[test]
    fn the_ca_bundle_goes_to_every_tool_whatever_the_proxy() {
        let env = env_of(&state(
            false,
            None,
            Some("/tmp/.agent-runtime/ca-bundle.pem"),
        ));
        assert_eq!(keys(&env), CA_VARS);
        assert!(env
            .iter()
            .all(|(_, v)| v == "/tmp/.agent-runtime/ca-bundle.pem"));
        let all: Vec<&str> = managed_vars().collect();
        assert_eq!(all.len(), 14);
    }
}
