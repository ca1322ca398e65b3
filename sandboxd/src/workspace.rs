//! Turning the paths callers send into the paths sandboxd touches.
//!
//! Relative paths resolve under the workspace; absolute paths are used as given. There is no
//! confinement here on purpose: the container is the boundary, and the OS's permission errors are
//! the real ones — for the sandbox user, since every access to a resolved path runs through
//! `privileges::as_user` (sandboxd itself is root in the container). Resolution is lexical; the one
//! lookup here, in [`Workspace::is_root`], also runs as the user.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::privileges;

/// The workspace directory (`/workspace` in the container).
#[derive(Clone, Debug)]
pub struct Workspace(PathBuf);

impl Workspace {
    /// A workspace rooted at `root`; a relative root is made absolute against the current directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map(|cwd| cwd.join(&root))
                .unwrap_or(root)
        };
        Self(clean(&root))
    }

    /// The workspace directory itself.
    pub fn root(&self) -> &Path {
        &self.0
    }

    /// Resolves a caller's path: relative under the workspace, absolute as given; `.` segments and
    /// repeated or trailing slashes are dropped so the path reads cleanly in replies.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf> {
        if raw.is_empty() {
            return Err(Error::invalid("path is empty"));
        }
        if raw.contains('\0') {
            return Err(Error::invalid(format!(
                "path {:?} contains a NUL byte",
                raw.replace('\0', "\\0")
            )));
        }
        Ok(self.resolve_unchecked(raw))
    }

    /// Like [`Workspace::resolve`], with an empty path meaning the workspace itself.
    pub fn resolve_or_root(&self, raw: &str) -> Result<PathBuf> {
        if raw.is_empty() {
            Ok(self.0.clone())
        } else {
            self.resolve(raw)
        }
    }

    /// True when `path` names the workspace directory (also through symlinks, followed as the
    /// sandbox user).
    pub fn is_root(&self, path: &Path) -> bool {
        if clean(path) == self.0 {
            return true;
        }
        let canonical =
            privileges::as_user(|| (std::fs::canonicalize(path), std::fs::canonicalize(&self.0)));
        match canonical {
            Ok((Ok(a), Ok(b))) => a == b,
            _ => false,
        }
    }

    fn resolve_unchecked(&self, raw: &str) -> PathBuf {
        let path = Path::new(raw);
        if path.is_absolute() {
            clean(path)
        } else {
            clean(&self.0.join(path))
        }
    }
}

/// Drops `.` segments and redundant slashes; `..` is kept, since the kernel resolves it against
/// symlinks and a lexical shortcut could name another file.
fn clean(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_under_the_workspace() {
        let ws = Workspace::new("/workspace");
        assert_eq!(
            ws.resolve("a/./b//c/").ok(),
            Some(PathBuf::from("/workspace/a/b/c"))
        );
        assert_eq!(
            ws.resolve("/etc/hosts").ok(),
            Some(PathBuf::from("/etc/hosts"))
        );
        assert_eq!(ws.resolve("./x").ok(), Some(PathBuf::from("/workspace/x")));
        assert_eq!(
            ws.resolve_or_root("").ok(),
            Some(PathBuf::from("/workspace"))
        );
    }

    #[test]
    fn empty_and_nul_paths_are_rejected() {
        let ws = Workspace::new("/workspace");
        assert!(matches!(ws.resolve(""), Err(Error::InvalidArgument(_))));
        assert!(matches!(ws.resolve("a\0b"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn the_root_is_recognised_in_any_spelling() {
        let ws = Workspace::new("/workspace");
        assert!(ws.is_root(Path::new("/workspace/")));
        assert!(ws.is_root(Path::new("/workspace/.")));
        assert!(!ws.is_root(Path::new("/workspace/a")));
    }
}
