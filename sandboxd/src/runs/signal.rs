//! Signal names a caller may send to a run.

use crate::error::{Error, Result};

/// Names (without `SIG`) and numbers of the signals Signal accepts by name.
const NAMES: [(&str, i32); 15] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("WINCH", libc::SIGWINCH),
];

/// Parses `SIGINT`, `int`, `2`, ...
pub fn parse(name: &str) -> Result<i32> {
    let name = name.trim();
    if let Ok(n) = name.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == bare)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            Error::invalid(format!(
                "unknown signal {name:?}; use a number 1-64 or one of: {}",
                known.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_parse() {
        assert_eq!(parse("SIGINT").ok(), Some(libc::SIGINT));
        assert_eq!(parse("term").ok(), Some(libc::SIGTERM));
        assert_eq!(parse(" 9 ").ok(), Some(9));
        assert!(parse("0").is_err());
        assert!(parse("SIGFOO").is_err_and(|e| e.to_string().contains("HUP, INT")));
    }
}
