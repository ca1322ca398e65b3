//! The one client layer under every front end (mcp-bridge, REST, the CLI, the test kits): what
//! the protocol means, written once.
//!
//! - [`ids`]: `SandboxId`, `ContextId`, `RunId` — parse, generate, display;
//! - [`call`]: `with_sandbox` (the `sandbox-id` metadata) and the gRPC message size;
//! - [`outcome`]: `RunOutcome`, an `ExecEvent` stream folded with one definition of success;
//! - [`code`]: `ErrorCode` and the one gRPC status → error code table;
//! - [`limits`]: the exec/context run timeout check;
//! - [`rpc`]: `Rpc`, each request type tied once to its service, method and response;
//! - [`runs`]: `read_page`, a run's output read in pages from a seq on;
//! - [`sets`]: the closed sets the proto carries as strings, as enums.

pub mod call;
pub mod code;
pub mod error;
pub mod ids;
pub mod limits;
pub mod outcome;
pub mod rpc;
pub mod runs;
pub mod sets;

pub use call::{sandbox_client, set_sandbox, with_sandbox, MAX_MESSAGE_BYTES};
pub use code::{deadline_passed, ErrorCode};
pub use error::ClientError;
pub use ids::{ContextId, RunId, SandboxId};
pub use limits::{run_timeout, DEFAULT_RUN_TIMEOUT, MAX_RUN_TIMEOUT};
pub use outcome::{output_of, traceback_text, RunOutcome, MODEL_OUTPUT_CAP};
pub use rpc::{Rpc, SandboxRpc, SandboxesRpc, Transport};
pub use runs::{read_page, OutputPage, DEFAULT_PAGE_BYTES};
pub use sets::{
    ContextStatus, DialogType, EventKind, ExitReason, FileType, Language, NavigateAction,
    NetworkMode, OutputStream, RunState, SandboxStatus, Settled, TabAction,
};
