//! The sandbox's environment: variables every process started from now on gets (runs, new
//! kernels, and a spare kernel as it is handed out), set by the host with `Configure` when it
//! creates a sandbox or hands one out from a warm pool. A run's own `env` is applied over it.

use std::collections::BTreeMap;
use std::sync::RwLock;

use crate::error::{Error, Result};

/// Most variables the sandbox environment may hold.
pub const MAX_VARS: usize = 128;
/// Longest value of one variable.
pub const MAX_VALUE_BYTES: usize = 32 * 1024;

static VARS: RwLock<BTreeMap<String, String>> = RwLock::new(BTreeMap::new());

/// Checks a variable's name and value the way `execve` needs them.
pub fn check(key: &str, value: &str) -> Result<()> {
    if key.is_empty() || key.contains(['=', '\0']) || value.contains('\0') {
        return Err(Error::invalid(format!(
            "invalid environment variable {key:?}: names must be non-empty without '=' or NUL, \
             values without NUL"
        )));
    }
    Ok(())
}

/// Replaces the sandbox environment with `vars`, after checking all of them.
pub fn set(vars: impl IntoIterator<Item = (String, String)>) -> Result<()> {
    let vars: BTreeMap<String, String> = vars.into_iter().collect();
    if vars.len() > MAX_VARS {
        return Err(Error::invalid(format!(
            "at most {MAX_VARS} sandbox environment variables"
        )));
    }
    for (k, v) in &vars {
        check(k, v)?;
        if v.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "environment variable {k:?}: values are at most {MAX_VALUE_BYTES} bytes"
            )));
        }
    }
    *VARS.write().unwrap_or_else(|p| p.into_inner()) = vars;
    Ok(())
}

/// The sandbox environment as set by the host.
pub fn vars() -> Vec<(String, String)> {
    VARS.read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether `key` is one of the daemon's own settings (`SANDBOXD_*`, from the host or the image):
/// user code does not see them.
pub fn is_daemon_setting(key: &str) -> bool {
    key.starts_with("SANDBOXD_")
}

/// Keeps the daemon's own settings out of a user process's environment (a run's `env` may
/// still set one of these names: it is applied after this).
pub fn hide_daemon_settings(cmd: &mut tokio::process::Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_daemon_setting) {
            cmd.env_remove(key);
        }
    }
}

/// What a process started now gets over the daemon's own environment: the sandbox environment,
/// then egress's variables (proxy and CA settings the host's policy manages win over it).
pub fn process_env() -> Vec<(String, String)> {
    let mut env = vars();
    let egress = crate::egress::child_env();
    env.retain(|(k, _)| !egress.iter().any(|(e, _)| e == k));
    env.extend(egress);
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_values_are_refused() {
        assert!(check("A_B", "x y").is_ok());
        assert!(check("", "x").is_err());
        assert!(check("A=B", "x").is_err());
        assert!(check("A", "x\0").is_err());
        let many = (0..=MAX_VARS).map(|i| (format!("V{i}"), String::new()));
        assert!(set(many).is_err());
        assert!(set([("A".to_owned(), "x".repeat(MAX_VALUE_BYTES + 1))]).is_err());
    }
}
