//! Resource limits of a sandbox: parsing what users write and checking it against the host's caps.

use std::time::Duration;

use crate::error::HostError;

/// Default memory limit: 512 MiB (DESIGN.md §2).
pub const DEFAULT_MEMORY: u64 = 512 * 1024 * 1024;
/// Default CPU: one core.
pub const DEFAULT_CPU: f64 = 1.0;
/// Default lifetime: one hour.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Process cap inside a sandbox; fork bombs stay inside.
pub const PIDS_LIMIT: i64 = 512;
/// Smallest memory limit we accept; below it Python alone does not start.
pub const MIN_MEMORY: u64 = 64 * 1024 * 1024;

/// The limits one sandbox runs with.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes, swap excluded.
    pub memory_bytes: u64,
    /// CPU cores, possibly fractional.
    pub cpu: f64,
    /// Lifetime before the reaper destroys the sandbox.
    pub timeout: Duration,
}

/// The most a caller may ask for.
#[derive(Clone, Debug)]
pub struct Caps {
    /// Largest memory limit.
    pub max_memory: u64,
    /// Most CPU cores.
    pub max_cpu: f64,
    /// Longest lifetime.
    pub max_timeout: Duration,
}

impl Default for Caps {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            max_memory: 8 * 1024 * 1024 * 1024,
            max_cpu: cores as f64,
            max_timeout: Duration::from_secs(24 * 3600),
        }
    }
}

impl Limits {
    /// Builds limits from request fields (empty / zero mean the default), checked against `caps`.
    pub fn from_request(
        memory: &str,
        cpu: f64,
        timeout_s: u64,
        caps: &Caps,
    ) -> Result<Self, HostError> {
        let memory_bytes = if memory.trim().is_empty() {
            DEFAULT_MEMORY
        } else {
            parse_memory(memory)?
        };
        if memory_bytes < MIN_MEMORY || memory_bytes > caps.max_memory {
            return Err(HostError::InvalidArgument(format!(
                "memory {memory:?} is outside the allowed range {} to {}",
                format_bytes(MIN_MEMORY),
                format_bytes(caps.max_memory)
            )));
        }
        let cpu = if cpu == 0.0 { DEFAULT_CPU } else { cpu };
        if !cpu.is_finite() || cpu < 0.05 || cpu > caps.max_cpu {
            return Err(HostError::InvalidArgument(format!(
                "cpu {cpu} is outside the allowed range 0.05 to {}",
                caps.max_cpu
            )));
        }
        let timeout = if timeout_s == 0 {
            DEFAULT_TIMEOUT
        } else {
            Duration::from_secs(timeout_s)
        };
        if timeout > caps.max_timeout {
            return Err(HostError::InvalidArgument(format!(
                "timeout {timeout_s}s is over the maximum of {}s",
                caps.max_timeout.as_secs()
            )));
        }
        Ok(Self {
            memory_bytes,
            cpu,
            timeout,
        })
    }
}

/// Parses "512m", "1g", "1.5G", "256MiB", "1048576" into bytes.
pub fn parse_memory(s: &str) -> Result<u64, HostError> {
    let t = s.trim().to_ascii_lowercase();
    let bad = || {
        HostError::InvalidArgument(format!(
            "memory {s:?} is not a size: write it like \"512m\", \"1g\" or a byte count"
        ))
    };
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// "512 MiB", "1.5 GiB".
pub fn format_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", b >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_memory("512m").ok(), Some(512 << 20));
        assert_eq!(parse_memory("1G").ok(), Some(1 << 30));
        assert_eq!(parse_memory("1.5g").ok(), Some(3 << 29));
        assert_eq!(parse_memory("256MiB").ok(), Some(256 << 20));
        assert_eq!(parse_memory("1048576").ok(), Some(1 << 20));
        for bad in ["", "m", "12q", "-1g", "1e400"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_and_caps() {
        let caps = Caps {
            max_memory: 1 << 30,
            max_cpu: 2.0,
            max_timeout: Duration::from_secs(7200),
        };
        let l = Limits::from_request("", 0.0, 0, &caps).ok();
        assert_eq!(
            l,
            Some(Limits {
                memory_bytes: DEFAULT_MEMORY,
                cpu: 1.0,
                timeout: DEFAULT_TIMEOUT
            })
        );
        assert!(Limits::from_request("2g", 0.0, 0, &caps).is_err());
        assert!(Limits::from_request("32m", 0.0, 0, &caps).is_err());
        assert!(Limits::from_request("", 3.0, 0, &caps).is_err());
        assert!(Limits::from_request("", f64::NAN, 0, &caps).is_err());
        assert!(Limits::from_request("", 0.0, 7201, &caps).is_err());
    }
}
