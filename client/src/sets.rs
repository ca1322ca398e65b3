//! The closed sets the proto carries as strings, as enums: defined once in
//! [`agent_runtime_proto::sets`] (sandboxd uses them too) and re-exported here.

pub use agent_runtime_proto::sets::*;
