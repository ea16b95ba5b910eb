//! Ctrl-C and SIGTERM for a process that runs jobs (one migration, a batch, the service): the
//! first signal cancels, so that work ends on the server and what was created is removed; a
//! second one exits at once with code 130.

use super::console;
use crate::sandbox::Cancel;

/// On the first Ctrl-C or SIGTERM print `warning` and cancel `cancel`; on a second, exit 130.
pub fn cancel_on_signals(cancel: Cancel, warning: &'static str) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut interrupt), Ok(mut terminate)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
        else {
            return;
        };
        for round in 0..2 {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            if round == 0 {
                console::warn(warning);
                cancel.cancel();
            }
        }
        std::process::exit(super::outcome::EXIT_CANCELLED.into());
    });
}
