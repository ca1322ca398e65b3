//! Contexts: stateful Python sessions, each a real Jupyter kernel (ipykernel) driven over IPC
//! sockets, with one spare kernel started ahead so that creating a context is fast.

mod cell;
mod context;
mod kernel;
mod manager;
pub mod output;

pub use cell::INTERRUPT_GRACE;
pub use context::ContextId;
pub use kernel::kernels_root;
pub(crate) use kernel::random_hex;
pub use manager::{Contexts, MAX_CONTEXTS, PREWARM_ENV};
