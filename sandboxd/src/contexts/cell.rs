//! One RunCode: the cell goes to the kernel, its iopub output streams back as ExecEvents, and the
//! run ends when the kernel has both replied on shell and gone idle on iopub for this request.
//!
//! On timeout the kernel gets SIGINT (KeyboardInterrupt; variables are kept). A kernel still busy
//! [`INTERRUPT_GRACE`] later ignores SIGINT: it is killed and replaced, and the caller is told that
//! the state is lost. A client that goes away gets its cell interrupted the same way.
//!
//! A kernel that goes idle for the request without replying on shell (IPython failed before it
//! could reply) has finished the cell: [`REPLY_AFTER_IDLE`] later the run ends as a failed cell
//! with an error event. An idle kernel is never interrupted, killed or replaced: its state is kept.

use std::time::{Duration, Instant};

use agent_runtime_proto::sets::ExitReason;
use agent_runtime_proto::v1::{exec_event::Event, ExecExit};
use jupyter_protocol::{JupyterMessageContent as Content, ReplyStatus, Stdio};
use tokio::time::Instant as TokioInstant;

use super::context::Context;
use super::kernel::{parent_is, Incoming};
use super::manager::Contexts;
use super::output;
use crate::oom;
use crate::run_events::EventSender;
use crate::run_limits::{OutputCap, DEFAULT_MAX_OUTPUT};

/// How long a kernel has to stop after SIGINT before it is killed and replaced.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(2);
/// How long the execute_reply may trail the kernel's idle status before the cell counts as failed
/// without one (both are sent together; they only travel on different sockets).
pub const REPLY_AFTER_IDLE: Duration = Duration::from_millis(500);
/// The error a cell gets when the kernel finished it without a reply.
const NO_REPLY: &str = "the kernel finished this code without replying (it failed before running \
     it); variables and imports are kept — check the code for characters Python cannot read";

const RESTARTED_AFTER_INTERRUPT: &str = "the kernel did not respond to the interrupt and was \
     restarted: variables and imports are lost\n";

/// State of one run.
struct Run<'a> {
    context: &'a Context,
    events: EventSender,
    stdout: OutputCap,
    stderr: OutputCap,
    started: Instant,
    /// Why we stopped the cell (timeout or cancelled), if we did.
    stopped: Option<ExitReason>,
    state_lost: bool,
    failed: bool,
    /// The kernel was killed by the out-of-memory killer.
    oom: bool,
}

/// Runs `code` in `context`, sending every event and exactly one exit.
pub async fn drive(
    contexts: &Contexts,
    context: &Context,
    code: &str,
    timeout: Duration,
    events: EventSender,
) {
    // One cell at a time per context: wait for ours, unless the caller leaves first.
    let mut slot = tokio::select! {
        slot = context.kernel.lock() => slot,
        () = events.closed() => return,
        () = context.deleted.cancelled() => {
            let mut events = events;
            events.send(Event::Stderr(b"the context was deleted before the code ran\n".to_vec())).await;
            events.send(Event::Exit(ExecExit { code: 1, killed: true, reason: ExitReason::Cancelled.into(), ..Default::default() })).await;
            return;
        }
    };
    context.set_busy(true);
    let mut run = Run {
        context,
        events,
        stdout: OutputCap::new(DEFAULT_MAX_OUTPUT),
        stderr: OutputCap::new(DEFAULT_MAX_OUTPUT),
        started: Instant::now(),
        stopped: None,
        state_lost: false,
        failed: false,
        oom: false,
    };
    tracing::info!(run_id = run.events.run_id(), context_id = %context.id, "run started");

    // A kernel that died since the last run is replaced first; the caller learns its state is gone.
    if slot.as_ref().is_none_or(|k| k.exited().is_cancelled()) {
        run.state_lost = true;
        if let Err(e) = contexts.replace_kernel(context, &mut slot).await {
            run.stderr_text(&format!("{e}\n")).await;
            run.failed = true;
            run.finish().await;
            context.set_busy(false);
            return;
        }
        run.stderr_text(
            "the kernel had exited and was restarted before this run: variables and imports are \
             lost\n",
        )
        .await;
    }

    let restart = match slot.as_mut() {
        Some(kernel) => run.execute(kernel, code, timeout).await,
        None => false,
    };
    if restart {
        // Tell the caller at once; the fresh kernel starts while this run still holds the context,
        // so the next cell waits for it.
        run.state_lost = true;
        run.stderr_text(RESTARTED_AFTER_INTERRUPT).await;
        run.finish().await;
        context.set_restarting(true);
        if let Err(e) = contexts.replace_kernel(context, &mut slot).await {
            tracing::warn!(context_id = %context.id, error = %e, "restarting the kernel failed");
        }
        context.set_restarting(false);
    } else {
        run.finish().await;
    }
    context.set_busy(false);
}

impl Run<'_> {
    /// Sends the cell and relays its output; true when the kernel must be replaced.
    async fn execute(
        &mut self,
        kernel: &mut super::kernel::Kernel,
        code: &str,
        timeout: Duration,
    ) -> bool {
        kernel.drain_stale();
        let stderr_mark = kernel.stderr_mark();
        let msg_id = match kernel.execute(code, false).await {
            Ok(id) => id,
            Err(e) => {
                self.stderr_text(&format!("{e}\n")).await;
                self.failed = true;
                return false;
            }
        };
        let oom_before = oom::kill_count();
        let deadline = TokioInstant::now() + timeout;
        let mut escalate_at: Option<TokioInstant> = None;
        let (mut replied, mut idle) = (false, false);
        // Set once the kernel is idle for this request without having replied.
        let mut reply_by: Option<TokioInstant> = None;

        while !(replied && idle) {
            // Only a busy kernel is interrupted: an idle one has nothing to stop.
            let may_stop = self.stopped.is_none() && !idle;
            let incoming = tokio::select! {
                incoming = kernel.recv() => incoming,
                () = tokio::time::sleep_until(deadline), if may_stop => {
                    self.stop(kernel, ExitReason::Timeout, &mut escalate_at);
                    continue;
                }
                () = self.events.closed(), if may_stop => {
                    self.stop(kernel, ExitReason::Cancelled, &mut escalate_at);
                    continue;
                }
                () = sleep_until_opt(reply_by) => {
                    tracing::warn!(context_id = %self.context.id, pid = kernel.pid(), "the kernel went idle without replying; the cell failed");
                    self.failed = true;
                    // What the kernel logged meanwhile says why.
                    let traceback = kernel.stderr_since(stderr_mark);
                    let error = output::exec_error("KernelError", NO_REPLY, &traceback);
                    self.events.send(Event::Error(error)).await;
                    return false;
                }
                () = sleep_until_opt(escalate_at) => {
                    tracing::warn!(context_id = %self.context.id, pid = kernel.pid(), "the kernel ignored SIGINT; killing it");
                    self.failed = true;
                    return true;
                }
                () = self.context.deleted.cancelled() => {
                    self.stopped.get_or_insert(ExitReason::Cancelled);
                    self.failed = true;
                    self.stderr_text("the context was deleted while the code ran\n").await;
                    return false;
                }
            };
            let message = match incoming {
                Incoming::Exited => {
                    self.failed = true;
                    self.state_lost = true;
                    if self.context.is_restarting() {
                        self.stopped.get_or_insert(ExitReason::Cancelled);
                        self.stderr_text("the context was restarted while the code ran: variables and imports are lost\n").await;
                    } else {
                        let oom =
                            matches!((oom_before, oom::kill_count()), (Some(b), Some(a)) if a > b);
                        let why = if oom { " (out of memory)" } else { "" };
                        self.stderr_text(&format!(
                            "the kernel process exited unexpectedly{why}: variables and imports are lost; \
                             the next run starts a fresh kernel\n"
                        ))
                        .await;
                        if oom {
                            self.oom = true;
                        }
                    }
                    return false;
                }
                Incoming::Shell(m) => {
                    if parent_is(&m, &msg_id) {
                        if let Content::ExecuteReply(reply) = m.content {
                            replied = true;
                            match reply.status {
                                ReplyStatus::Ok => {}
                                ReplyStatus::Error => self.failed = true,
                                ReplyStatus::Aborted => {
                                    self.failed = true;
                                    self.stderr_text("the kernel aborted the run\n").await;
                                }
                            }
                        }
                    }
                    continue;
                }
                Incoming::Iopub(m) => m,
            };
            if !parent_is(&message, &msg_id) {
                continue;
            }
            let event = match message.content {
                Content::Status(s) => {
                    if s.execution_state == jupyter_protocol::ExecutionState::Idle {
                        idle = true;
                        // Not busy any more: nothing to escalate, whatever SIGINT did.
                        escalate_at = None;
                        if !replied {
                            reply_by = Some(TokioInstant::now() + REPLY_AFTER_IDLE);
                        }
                    }
                    None
                }
                Content::StreamContent(s) => match s.name {
                    Stdio::Stdout => self.stdout.admit(s.text.as_bytes()).map(Event::Stdout),
                    Stdio::Stderr => self.stderr.admit(s.text.as_bytes()).map(Event::Stderr),
                },
                Content::ExecuteResult(r) => Some(Event::Result(output::rich_result(
                    &serde_json::to_value(&r.data).unwrap_or_default(),
                    true,
                ))),
                Content::DisplayData(d) => Some(Event::Result(output::rich_result(
                    &serde_json::to_value(&d.data).unwrap_or_default(),
                    false,
                ))),
                Content::UpdateDisplayData(d) => Some(Event::Result(output::rich_result(
                    &serde_json::to_value(&d.data).unwrap_or_default(),
                    false,
                ))),
                Content::ErrorOutput(e) => {
                    self.failed = true;
                    Some(Event::Error(output::exec_error(
                        &e.ename,
                        &e.evalue,
                        &e.traceback,
                    )))
                }
                _ => None,
            };
            if let Some(event) = event {
                if !self.events.send(event).await && escalate_at.is_none() {
                    self.stop(kernel, ExitReason::Cancelled, &mut escalate_at);
                }
            }
        }
        false
    }

    /// Interrupts the kernel and starts the grace period after which it is replaced.
    fn stop(
        &mut self,
        kernel: &super::kernel::Kernel,
        why: ExitReason,
        escalate_at: &mut Option<TokioInstant>,
    ) {
        tracing::info!(context_id = %self.context.id, reason = why.as_str(), "interrupting the kernel");
        self.stopped.get_or_insert(why);
        kernel.interrupt();
        *escalate_at = Some(TokioInstant::now() + INTERRUPT_GRACE);
    }

    async fn stderr_text(&mut self, text: &str) {
        self.events
            .send(Event::Stderr(text.as_bytes().to_vec()))
            .await;
    }

    /// Sends the exit event.
    async fn finish(&mut self) {
        let reason = if self.oom {
            ExitReason::Oom.as_str()
        } else {
            self.stopped.map(ExitReason::as_str).unwrap_or_default()
        };
        let exit = ExecExit {
            code: i32::from(self.failed || self.stopped.is_some()),
            killed: !reason.is_empty(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            reason: reason.to_owned(),
            stdout_truncated: self.stdout.truncated(),
            stderr_truncated: self.stderr.truncated(),
            stdout_bytes: self.stdout.total(),
            stderr_bytes: self.stderr.total(),
            state_lost: self.state_lost,
        };
        tracing::info!(
            run_id = self.events.run_id(),
            context_id = %self.context.id,
            code = exit.code,
            killed = exit.killed,
            reason = exit.reason,
            state_lost = exit.state_lost,
            duration_ms = exit.duration_ms,
            "run finished"
        );
        self.events.send(Event::Exit(exit)).await;
    }
}

/// Sleeps until `at`, or forever when there is no deadline.
async fn sleep_until_opt(at: Option<TokioInstant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
