//! Egress: the proxy address processes in the sandbox use to reach the web, carried to the host.
//!
//! sandboxd listens on a TCP address inside the sandbox (`--egress-listen`, default
//! 127.0.0.1:3128) and decides nothing: each accepted connection is offered to the host over the
//! `Egress.Listen` stream the host keeps open, and the host takes it with `Egress.Carry` and runs
//! the real HTTP proxy, its policy and its audit (DESIGN.md §2.2). One file per concern:
//! `proxy.rs` (the listener), `offers.rs` (Listen streams and connections waiting to be taken),
//! `carry.rs` (the bytes of one connection both ways), `refuse.rs` (the 503 sandboxd answers
//! itself), `service.rs` (the gRPC service and its proof), `env.rs` (the variables every child
//! gets), `denials.rs` (recent refusals, for the browser), `ca.rs` (an operator's extra CA),
//! `error.rs`.

mod ca;
mod carry;
mod denials;
mod env;
mod error;
mod offers;
mod proxy;
mod refuse;
mod service;

pub use ca::{install_extra_ca, EXTRA_CA_ENV};
pub use denials::{recent_denials, Denials};
pub use env::{child_env, managed_vars, proxy_url, scrub_inherited_env, NO_PROXY};
pub use error::EgressError;
pub use offers::{Offers, MAX_OPEN, OFFER_TTL};
pub use service::EgressService;
