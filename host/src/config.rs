//! Where the host keeps its state and finds its parts.

use std::path::{Path, PathBuf};

use crate::backend::docker::image::ImageSpec;

/// Default directory for state: /var/lib/agent-runtime as root, else the XDG state directory.
pub fn default_state_dir() -> PathBuf {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/agent-runtime");
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("agent-runtime");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".local/state/agent-runtime")
}

/// The sandboxd binary to bake into the image: the given one, else the one beside this binary.
pub fn sandboxd_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("sandboxd")))
        .unwrap_or_else(|| PathBuf::from("sandboxd"))
}

/// What the image is built from, given the state directory.
pub fn image_spec(state_dir: &Path, sandboxd: Option<&Path>) -> ImageSpec {
    ImageSpec {
        sandboxd: sandboxd_binary(sandboxd),
        cache_dir: state_dir.join("cache"),
    }
}

/// Directory holding the per-sandbox directories of one host instance.
pub fn sandboxes_dir(state_dir: &Path, instance: &str) -> PathBuf {
    state_dir.join("instances").join(instance).join("sandboxes")
}

/// Checks an instance name (it becomes a label value and a directory name).
pub fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Environment variable: seconds a host may stay idle (no sandboxes, no calls) before it exits.
/// `mcp-bridge` sets it on the hosts it starts, so they go away once nobody uses them.
pub const IDLE_EXIT_ENV: &str = "AGENT_RUNTIME_IDLE_EXIT";

/// The idle exit from [`IDLE_EXIT_ENV`]; `None` (never exit) when unset, empty or 0.
pub fn idle_exit() -> Result<Option<std::time::Duration>, String> {
    match std::env::var(IDLE_EXIT_ENV) {
        Err(_) => Ok(None),
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(s) => Ok(Some(std::time::Duration::from_secs(s))),
            Err(_) => Err(format!(
                "{IDLE_EXIT_ENV}={v:?}: give whole seconds (0 or unset: never exit when idle)"
            )),
        },
    }
}
