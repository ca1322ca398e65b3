//! Runs as objects: every Exec is a run with an id that sandboxd keeps after its call — its
//! session and processes, its state, and its recent output in a bounded, numbered buffer — so a
//! client can detach, attach again without losing output, list, signal, kill, and type into it.

pub mod attach;
pub mod input;
pub mod pty;
pub mod record;
pub mod registry;
pub mod ring;
pub mod signal;

pub use record::{RunRecord, Session};
pub use registry::Runs;
