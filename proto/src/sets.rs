//! The closed sets the proto carries as strings (the wire format stays strings), as enums with
//! `as_str`/`Display`/`FromStr` over the wire spelling, serde under the same names, and — behind
//! features — `schemars::JsonSchema` and `clap::ValueEnum`. sandboxd produces and parses these
//! strings with the same enums the clients use, so each set is written here once.

/// A value outside one of the protocol's closed sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {set} {value:?}: expected {expected}")]
pub struct UnknownValue {
    /// Which set ("language", "tab action", ...).
    pub set: &'static str,
    /// What was given.
    pub value: String,
    /// The values it may take, "a, b or c".
    pub expected: String,
}

/// "a", "a or b", "a, b or c".
#[doc(hidden)]
pub fn one_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Declares a closed set: an enum over wire spellings with `ALL`, `as_str`, `Display`, `FromStr`
/// (erring with [`UnknownValue`]), serde, and `schemars`/`clap` derives behind the invoking
/// crate's features of those names.
#[macro_export]
macro_rules! closed_set {
    (
        $(#[$doc:meta])*
        $name:ident, $what:literal {
            $( $(#[$vdoc:meta])* $variant:ident = $wire:literal, )+
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        pub enum $name {
            $(
                $(#[$vdoc])*
                #[serde(rename = $wire)]
                #[cfg_attr(feature = "clap", value(name = $wire))]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in the proto's order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The value as the wire carries it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::sets::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| $crate::sets::UnknownValue {
                        set: $what,
                        value: s.to_owned(),
                        expected: $crate::sets::one_of(Self::ALL.iter().map(|v| v.as_str())),
                    })
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.as_str().to_owned()
            }
        }
    };
}
closed_set!(
    /// Which output stream a chunk of a run came from (also the NDJSON `type` of REST's lines).
    OutputStream, "output stream" {
        /// Standard output.
        Stdout = "stdout",
        /// Standard error.
        Stderr = "stderr",
    }
);

closed_set!(
    /// The language of a run (`ExecRequest.language`; contexts take `python` only).
    Language, "language" {
        /// python3.
        Python = "python",
        /// bash.
        Shell = "shell",
        /// Node.js.
        Node = "node",
    }
);

impl Language {
    /// A language as sandboxd's Exec accepts it: the wire names and the aliases python3/py,
    /// bash/sh and javascript/js, in any case and with surrounding whitespace. `FromStr` (what
    /// clients check arguments with) stays strict, so clients keep refusing what they refuse.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "python" | "python3" | "py" => Some(Self::Python),
            "shell" | "bash" | "sh" => Some(Self::Shell),
            "node" | "javascript" | "js" => Some(Self::Node),
            _ => None,
        }
    }
}

closed_set!(
    /// A sandbox's state as the host reports it (`SandboxInfo.status`).
    SandboxStatus, "sandbox status" {
        /// Starting; its daemon has not answered yet.
        Creating = "creating",
        /// Its daemon answers.
        Running = "running",
        /// Its container is gone; calls fail until it is destroyed.
        Dead = "dead",
    }
);

closed_set!(
    /// A sandbox's egress policy (`EgressPolicy.network`, MCP `network`).
    NetworkMode, "network" {
        /// Nothing leaves the sandbox.
        None = "none",
        /// Only the names in `allow_domains`.
        Allowlist = "allowlist",
        /// The public internet (private, loopback and metadata addresses are still refused).
        Open = "open",
    }
);

closed_set!(
    /// A context's state (`Context.status`).
    ContextStatus, "context status" {
        /// Idle, ready to run.
        Active = "active",
        /// Running code.
        Busy = "busy",
        /// Its kernel is being restarted.
        Restarting = "restarting",
        /// Its kernel exited; the next run restarts it.
        Dead = "dead",
    }
);

closed_set!(
    /// What a path is (`FileInfo.type`).
    FileType, "file type" {
        /// A regular file.
        File = "file",
        /// A directory.
        Directory = "directory",
        /// A symbolic link (never followed).
        Symlink = "symlink",
        /// A FIFO, socket or device.
        Other = "other",
    }
);

closed_set!(
    /// Why a run was killed (`ExecExit.reason`; empty when it was not).
    ExitReason, "exit reason" {
        /// It ran past its timeout.
        Timeout = "timeout",
        /// The caller went away or cancelled it.
        Cancelled = "cancelled",
        /// The out-of-memory killer struck.
        Oom = "oom",
        /// Kill or KillAll ended it.
        Killed = "killed",
    }
);

closed_set!(
    /// Where a run is (`RunInfo.state`).
    RunState, "run state" {
        /// Its program runs.
        Running = "running",
        /// Its program ended by itself.
        Exited = "exited",
        /// Its program was killed (timeout, cancellation, Kill, the OOM killer).
        Killed = "killed",
    }
);

closed_set!(
    /// Something that happened in the browser during a call (`BrowserEvent.kind`).
    EventKind, "browser event kind" {
        /// An alert was accepted, or a confirm/prompt waits for BrowserDialog.
        Dialog = "dialog",
        /// A new tab opened and became the active one.
        Popup = "popup",
        /// A file was saved under /workspace/downloads.
        Download = "download",
        /// The browser had crashed and was started anew: tabs and refs are gone.
        Restarted = "restarted",
        /// The active tab closed.
        TabClosed = "tab_closed",
    }
);

closed_set!(
    /// What a browser call waited for afterwards (`settled` of the browser responses).
    Settled, "settled state" {
        /// A navigation, and its `load`.
        Navigation = "navigation",
        /// A navigation whose `load` did not come in time.
        NavigationLoading = "navigation (still loading)",
        /// No navigation; the DOM was quiet for a moment.
        DomSettled = "dom settled",
        /// No navigation; the DOM kept changing until the wait gave up.
        DomChanging = "dom still changing",
        /// A dialog blocked the page, or it navigated while checked.
        PageBusy = "page busy",
        /// The action opened a confirm/prompt; answer it with BrowserDialog.
        DialogOpen = "dialog open",
        /// The wait ran out.
        Timeout = "timeout",
    }
);

closed_set!(
    /// A history move (`BrowserNavigateRequest.action`).
    NavigateAction, "navigate action" {
        /// The previous page.
        Back = "back",
        /// The next page.
        Forward = "forward",
        /// This page again.
        Reload = "reload",
    }
);

closed_set!(
    /// What to do with tabs (`BrowserTabsRequest.action`).
    TabAction, "tab action" {
        /// List them.
        List = "list",
        /// Open one (at a URL, or about:blank).
        New = "new",
        /// Make one active.
        Select = "select",
        /// Close one (the active one without an index).
        Close = "close",
    }
);

closed_set!(
    /// The kind of a page dialog (`BrowserEvent.detail` of a `dialog` event).
    DialogType, "dialog type" {
        /// alert(): accepted at once.
        Alert = "alert",
        /// confirm(): waits for BrowserDialog.
        Confirm = "confirm",
        /// prompt(): waits for BrowserDialog.
        Prompt = "prompt",
        /// A page asking before it is left.
        BeforeUnload = "beforeunload",
    }
);

#[cfg(test)]
mod tests {
    use std::fmt;
    use std::str::FromStr;

    use super::*;

    fn round_trips<T>(all: &[T])
    where
        T: Copy + fmt::Debug + PartialEq + FromStr + fmt::Display + serde::Serialize,
        T: serde::de::DeserializeOwned,
    {
        for v in all {
            let wire = v.to_string();
            assert_eq!(wire.parse::<T>().ok(), Some(*v), "{wire}");
            let json = serde_json::to_string(v).ok();
            assert_eq!(json, Some(format!("\"{wire}\"")));
            let back: Option<T> = serde_json::from_str(&format!("\"{wire}\"")).ok();
            assert_eq!(back, Some(*v));
        }
    }

    #[test]
    fn every_set_round_trips() {
        round_trips(OutputStream::ALL);
        round_trips(Language::ALL);
        round_trips(SandboxStatus::ALL);
        round_trips(ContextStatus::ALL);
        round_trips(FileType::ALL);
        round_trips(ExitReason::ALL);
        round_trips(RunState::ALL);
        round_trips(EventKind::ALL);
        round_trips(Settled::ALL);
        round_trips(NavigateAction::ALL);
        round_trips(TabAction::ALL);
        round_trips(DialogType::ALL);
    }

    #[test]
    fn wire_spellings() {
        assert_eq!(Language::Shell.as_str(), "shell");
        assert_eq!(EventKind::TabClosed.as_str(), "tab_closed");
        assert_eq!(Settled::DomSettled.as_str(), "dom settled");
        assert_eq!(DialogType::BeforeUnload.as_str(), "beforeunload");
    }

    #[test]
    fn unknown_values_say_what_is_expected() {
        assert_eq!(
            "ruby".parse::<Language>().map_err(|e| e.to_string()),
            Err("unknown language \"ruby\": expected python, shell or node".to_owned())
        );
        assert!("Python".parse::<Language>().is_err());
        assert!("".parse::<ExitReason>().is_err());
        assert_eq!(
            "up".parse::<NavigateAction>().map_err(|e| e.to_string()),
            Err("unknown navigate action \"up\": expected back, forward or reload".to_owned())
        );
    }

    #[test]
    fn languages_by_name_take_sandboxds_aliases() {
        for (name, lang) in [
            ("python", Language::Python),
            (" Python3 ", Language::Python),
            ("py", Language::Python),
            ("shell", Language::Shell),
            ("BASH", Language::Shell),
            ("sh", Language::Shell),
            ("node", Language::Node),
            ("javascript", Language::Node),
            ("js", Language::Node),
        ] {
            assert_eq!(Language::from_name(name), Some(lang), "{name}");
        }
        assert_eq!(Language::from_name(""), None);
        assert_eq!(Language::from_name("cobol"), None);
        assert!("py".parse::<Language>().is_err());
    }

    #[test]
    fn lists_read_naturally() {
        assert_eq!(one_of(["a"].into_iter()), "a");
        assert_eq!(one_of(["a", "b"].into_iter()), "a or b");
        assert_eq!(one_of(["a", "b", "c"].into_iter()), "a, b or c");
    }
}
