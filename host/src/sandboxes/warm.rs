//! The warm pool: sandboxes with a Python kernel already started, waiting unlisted until a REST
//! context takes one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::create::CreateSpec;
use super::manager::Manager;
use super::record::{SandboxRecord, CONTEXT_OWNER_LABEL};

/// How long the filler waits after a failed create before trying again.
const RETRY_AFTER: Duration = Duration::from_secs(5);

impl Manager {
    /// (ready, target) of the warm pool.
    pub fn warm_status(&self) -> (usize, usize) {
        (self.warm_lock().len(), self.config.warm_target)
    }

    /// Hands out a warm sandbox (a Python kernel already started in it) with a fresh lifetime.
    pub async fn take_warm(&self) -> Option<SandboxRecord> {
        loop {
            let id = self.warm_lock().pop_front()?;
            self.warm_taken.notify_one();
            // Reaped or destroyed while waiting: try the next.
            if self.get(&id).is_ok() {
                let lifetime = self
                    .config
                    .caps
                    .max_timeout
                    .min(crate::limits::DEFAULT_TIMEOUT);
                return self.extend(&id, lifetime.as_secs()).await.ok();
            }
        }
    }

    /// Keeps `warm_target` sandboxes ready, leaving at least one slot under the cap free for
    /// ordinary creates; runs until `stop` is cancelled.
    pub async fn run_warm_pool(self: Arc<Self>, stop: CancellationToken) {
        if self.config.warm_target == 0 {
            return;
        }
        loop {
            while self.warm_lock().len() < self.config.warm_target
                && self.free_slots() >= 2
                && !stop.is_cancelled()
            {
                let spec = CreateSpec {
                    labels: HashMap::from([(
                        CONTEXT_OWNER_LABEL.0.to_owned(),
                        CONTEXT_OWNER_LABEL.1.to_owned(),
                    )]),
                    prewarm_kernel: true,
                    ..CreateSpec::default()
                };
                match self.create(spec).await {
                    Ok(record) => self.warm_lock().push_back(record.id),
                    Err(e) => {
                        tracing::warn!(error = %e, "warm pool: cannot create a sandbox; retrying in 5 s");
                        break;
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.warm_taken.notified() => {}
                () = tokio::time::sleep(RETRY_AFTER) => {}
            }
        }
    }
}
