//! The REST API of DESIGN.md §3.2 on 127.0.0.1:8080: `GET /health` and `/api/v1/contexts`.
//!
//! - `router.rs` — the routes, the server, the exposure check;
//! - `api.rs` — the JSON shapes; `openapi.rs` — the document generated from them;
//! - `contexts.rs` — create, list, describe, delete; `execute.rs` — running code and shaping
//!   its output (one answer or NDJSON lines);
//! - `discovery.rs` — which sandbox holds which context, and what REST may reach;
//! - `call.rs` — calls to sandboxes with deadlines; `error.rs` — the error codes;
//!   `auth.rs` — Basic authentication.

pub mod api;
pub mod auth;
pub mod call;
pub mod contexts;
pub mod discovery;
pub mod error;
pub mod execute;
pub mod openapi;
pub mod router;

pub use discovery::Contexts;
pub use router::{check_exposure, router, serve};
