//! The front's one way to the core: submit a command and await its durable outcome, or run a
//! read on the core thread and await its copy. Both go through the core's bounded queue, so
//! a full core slows HTTP clients down instead of growing memory.

use tally_core::{admin_encode, StateView, Submission, ADMIN_COMMAND_SIZE_MAX};
use tally_payments::{Command, Outcome};
use tokio::sync::{mpsc, oneshot};

/// Why the core did not answer.
#[derive(Debug, thiserror::Error)]
pub enum CoreUnavailable {
    /// The core is stopping or stopped.
    #[error("the core is not running")]
    Stopped,
    /// The journal could not take the command (for example a full disk); nothing ran.
    #[error("the command was not executed (journal append failed); retry later")]
    NotExecuted,
    /// The command encodes to more than the core takes.
    #[error("the command is larger than {ADMIN_COMMAND_SIZE_MAX} bytes")]
    TooLarge,
}

/// A clonable handle on the core's submit queue.
#[derive(Clone)]
pub struct CoreHandle {
    submit: mpsc::Sender<Submission>,
}

impl CoreHandle {
    /// A handle that submits to `submit`.
    pub fn new(submit: mpsc::Sender<Submission>) -> CoreHandle {
        CoreHandle { submit }
    }

    /// Runs `command` in the core; returns its outcome once it is durable.
    pub async fn execute(&self, command: &Command) -> Result<Outcome, CoreUnavailable> {
        let encoded = admin_encode(command);
        if encoded.len() > ADMIN_COMMAND_SIZE_MAX {
            return Err(CoreUnavailable::TooLarge);
        }
        let (reply, outcome) = oneshot::channel();
        self.submit
            .send(Submission::Admin {
                command: encoded,
                reply,
            })
            .await
            .map_err(|_| CoreUnavailable::Stopped)?;
        // A dropped sender means the append failed and nothing ran.
        outcome.await.map_err(|_| CoreUnavailable::NotExecuted)
    }

    /// Runs `read` on the core thread; returns its result once the state it saw is durable.
    pub async fn read<R, F>(&self, read: F) -> Result<R, CoreUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(&StateView<'_>) -> R + Send + 'static,
    {
        self.submit_read(read, Submission::Read).await
    }

    /// Runs `peek` on the core thread and returns its result at once, before the state it saw
    /// is durable: only to shape a command that the core checks again, never for an answer
    /// (`Submission::Peek`).
    pub async fn peek<R, F>(&self, peek: F) -> Result<R, CoreUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(&StateView<'_>) -> R + Send + 'static,
    {
        self.submit_read(peek, Submission::Peek).await
    }

    async fn submit_read<R, F>(
        &self,
        read: F,
        submission: fn(tally_core::Read) -> Submission,
    ) -> Result<R, CoreUnavailable>
    where
        R: Send + 'static,
        F: FnOnce(&StateView<'_>) -> R + Send + 'static,
    {
        let (sender, receiver) = oneshot::channel();
        let read = Box::new(move |view: &StateView<'_>| -> tally_core::Deferred {
            let result = read(view);
            Box::new(move || {
                let _ = sender.send(result);
            })
        });
        self.submit
            .send(submission(read))
            .await
            .map_err(|_| CoreUnavailable::Stopped)?;
        receiver.await.map_err(|_| CoreUnavailable::Stopped)
    }
}
