//! What an `Egress` call can fail with, and its gRPC code.

/// An `Egress` call's failure; the message is what the host reads.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// The daemon has no sandbox secret (development mode), so no caller can prove it is the host.
    #[error(
        "this sandboxd has no sandbox secret (development mode): the Egress service needs the \
         host's proof; start it with SANDBOXD_SECRET_FILE and SANDBOX_ID"
    )]
    NoIdentity,
    /// The proof is missing or wrong.
    #[error("the egress proof does not match this sandbox's secret")]
    BadProof,
    /// The proxy is not listening (`--egress-listen none`, or its address could not be bound).
    #[error("the egress proxy is off in this sandbox (see sandboxd's log for why)")]
    ProxyOff,
    /// Carry's stream ended, or did not start in time, before naming a connection.
    #[error("Carry's first frame must name the offered connection (conn_id and proof)")]
    NoFirstFrame,
    /// Carry named a connection that is not waiting to be taken.
    #[error("egress connection {0} is not on offer: unknown, already taken, or expired")]
    NotOffered(u64),
}

impl From<EgressError> for tonic::Status {
    fn from(err: EgressError) -> Self {
        let message = err.to_string();
        match err {
            EgressError::NoIdentity | EgressError::ProxyOff => {
                tonic::Status::failed_precondition(message)
            }
            EgressError::BadProof => tonic::Status::permission_denied(message),
            EgressError::NoFirstFrame => tonic::Status::invalid_argument(message),
            EgressError::NotOffered(_) => tonic::Status::not_found(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_status_code() {
        let codes = [
            (EgressError::NoIdentity, tonic::Code::FailedPrecondition),
            (EgressError::ProxyOff, tonic::Code::FailedPrecondition),
            (EgressError::BadProof, tonic::Code::PermissionDenied),
            (EgressError::NoFirstFrame, tonic::Code::InvalidArgument),
            (EgressError::NotOffered(7), tonic::Code::NotFound),
        ];
        for (err, code) in codes {
            assert_eq!(tonic::Status::from(err).code(), code);
        }
    }
}
