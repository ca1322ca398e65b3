//! An operator's extra CA (an inspecting upstream proxy; our tests' local HTTPS servers): the
//! host places a PEM file in the root-only run directory and names it in `SANDBOXD_EXTRA_CA`.
//! At start sandboxd writes the system CAs plus it to a root-owned, world-readable bundle under a
//! root-owned directory in /tmp (`/tmp/.agent-runtime/ca-bundle.pem`), every child gets the
//! variables that point OpenSSL, requests, curl, git, pip and Node at it (`env.rs`), and
//! Chromium, which reads only NSS, gets the CA in the sandbox user's NSS database
//! (`$HOME/.pki/nssdb`, made with `certutil` as that user). Nothing here stops the daemon: a CA
//! that cannot be installed is logged and skipped.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::env;
use crate::{privileges, processes};

/// The variable (and `--extra-ca` flag) naming the PEM file.
pub const EXTRA_CA_ENV: &str = "SANDBOXD_EXTRA_CA";
/// Debian's bundle of the system's CAs.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The directory under the temp directory that holds the bundle.
const DIR_NAME: &str = ".agent-runtime";
/// The bundle: system CAs, then the extra ones.
const BUNDLE_NAME: &str = "ca-bundle.pem";
/// The extra CAs alone.
const EXTRA_NAME: &str = "extra-ca.pem";
/// The name the extra CAs have in the NSS database (`-2`, `-3`, ... after the first).
const NSS_NICKNAME: &str = "agent-runtime-extra";
/// Largest PEM file read.
const MAX_PEM: u64 = 1 << 20;
/// How long one certutil run may take.
const CERTUTIL_WAIT: Duration = Duration::from_secs(20);
const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// Installs the extra CA of `pem` (the `--extra-ca` / `SANDBOXD_EXTRA_CA` file), if one is named;
/// returns the bundle's path when children will use it. Failures are logged, never fatal.
pub async fn install_extra_ca(pem: Option<&Path>) -> Option<PathBuf> {
    let pem = pem.filter(|p| !p.as_os_str().is_empty())?;
    let certs = match read_certificates(pem) {
        Ok(certs) => certs,
        Err(e) => {
            tracing::warn!(file = %pem.display(), error = %e, "the extra CA is not installed");
            return None;
        }
    };
    let dir = std::env::temp_dir().join(DIR_NAME);
    let bundle = match write_bundle(&dir, &certs) {
        Ok(bundle) => bundle,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "the extra CA is not installed");
            return None;
        }
    };
    env::set_ca_bundle(bundle.clone());
    tracing::info!(bundle = %bundle.display(), certificates = certs.len(), "extra CA installed for child processes");
    match trust_in_nss(&certs).await {
        Ok(db) => tracing::info!(nssdb = %db.display(), "extra CA trusted by Chromium"),
        Err(e) => tracing::warn!(error = %e, "Chromium will not trust the extra CA"),
    }
    Some(bundle)
}

/// The certificates (PEM blocks) of the file.
fn read_certificates(path: &Path) -> Result<Vec<String>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_PEM {
        return Err(format!(
            "it is not a file of at most {MAX_PEM} bytes holding PEM certificates"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let certs = certificates(&text);
    if certs.is_empty() {
        return Err(format!("it holds no {BEGIN} block"));
    }
    Ok(certs)
}

/// Every `BEGIN CERTIFICATE` … `END CERTIFICATE` block, each ending in a newline.
fn certificates(pem: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let block = &rest[start..];
        let Some(end) = block.find(END) else {
            break;
        };
        found.push(format!("{}\n", &block[..end + END.len()]));
        rest = &block[end + END.len()..];
    }
    found
}

/// Writes `<dir>/ca-bundle.pem` (system CAs + `certs`) and `<dir>/extra-ca.pem` (`certs`),
/// 0644 in a 0755 directory of the daemon's own user that nobody else may write.
fn write_bundle(dir: &Path, certs: &[String]) -> Result<PathBuf, String> {
    own_dir(dir)?;
    let extra = certs.concat();
    let mut bundle = match std::fs::read_to_string(SYSTEM_BUNDLE) {
        Ok(system) => system,
        Err(e) => {
            tracing::warn!(file = SYSTEM_BUNDLE, error = %e, "no system CAs: the bundle holds only the extra CA");
            String::new()
        }
    };
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&extra);
    write_public(&dir.join(EXTRA_NAME), extra.as_bytes())?;
    let path = dir.join(BUNDLE_NAME);
    write_public(&path, bundle.as_bytes())?;
    Ok(path)
}

/// Makes `dir` (0755) or checks that the one there is a real directory of ours that only we may
/// write: /tmp is the sandbox user's too, and a directory it planted must not be used.
fn own_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot inspect {}: {e}", dir.display()))?;
    // SAFETY: geteuid only reads the calling thread's credentials.
    let euid = unsafe { libc::geteuid() };
    if !meta.file_type().is_dir() || meta.uid() != euid || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "{} is not a directory of sandboxd's own that only it may write",
            dir.display()
        ));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("cannot set the mode of {}: {e}", dir.display()))
}

/// Writes a world-readable file, never through a symlink.
fn write_public(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o644))
        .map_err(fail)
}

/// Adds `certs` to the sandbox user's NSS database (`$HOME/.pki/nssdb`, made if absent) as
/// trusted CAs; returns the database's directory.
async fn trust_in_nss(certs: &[String]) -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    let db = home.join(".pki").join("nssdb");
    privileges::as_user(|| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&db)
    })
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("cannot create {}: {e}", db.display()))?;
    let mut sql = OsString::from("sql:");
    sql.push(&db);
    if !db.join("cert9.db").exists() {
        let args: [OsString; 4] = [
            "-N".into(),
            "-d".into(),
            sql.clone(),
            "--empty-password".into(),
        ];
        certutil(&home, &args, None).await?;
    }
    for (i, cert) in certs.iter().enumerate() {
        let nickname = match i {
            0 => NSS_NICKNAME.to_string(),
            _ => format!("{NSS_NICKNAME}-{}", i + 1),
        };
        let args: [OsString; 8] = [
            "-A".into(),
            "-d".into(),
            sql.clone(),
            "-n".into(),
            nickname.into(),
            "-t".into(),
            "C,,".into(),
            "-a".into(),
        ];
        certutil(&home, &args, Some(cert.as_bytes())).await?;
    }
    Ok(db)
}

/// Runs `certutil` as the sandbox user (so the database is the user's, as Chromium needs).
async fn certutil(home: &Path, args: &[OsString], stdin: Option<&[u8]>) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("certutil");
    cmd.args(args)
        .env("HOME", home)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    processes::isolate(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            "certutil is not installed (Debian package libnss3-tools)".to_string()
        }
        _ => format!("cannot start certutil: {e}"),
    })?;
    let run = async {
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes).await?;
        }
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(CERTUTIL_WAIT, run)
        .await
        .map_err(|_| format!("certutil did not finish within {CERTUTIL_WAIT:?}"))?
        .map_err(|e| format!("certutil failed: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "certutil {} failed ({}): {}",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_certificate_block_is_found() {
        let pem = "junk\n-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n\
                   -----BEGIN CERTIFICATE-----\nunterminated";
        let found = certificates(pem);
        assert_eq!(
            found,
            [
                "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
                "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----\n",
            ]
        );
        assert!(certificates("-----BEGIN PRIVATE KEY-----\nx\n").is_empty());
    }

    #[test]
    fn the_bundle_is_written_public_in_a_private_dir_and_a_planted_dir_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join(DIR_NAME);
        let certs = certificates("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n");
        let bundle = write_bundle(&dir, &certs).expect("bundle");
        let text = std::fs::read_to_string(&bundle).expect("read");
        assert!(text.ends_with("-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n"));
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o777).unwrap_or(0);
        assert_eq!(mode(&bundle), 0o644);
        assert_eq!(mode(&dir), 0o755);
        // Written again (a restarted daemon) it is replaced.
        assert!(write_bundle(&dir, &certs).is_ok());

        let planted = tmp.path().join("planted");
        std::fs::create_dir(&planted).expect("mkdir");
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(write_bundle(&planted, &certs).is_err());
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).expect("symlink");
        assert!(write_bundle(&link, &certs).is_err());
    }
}
