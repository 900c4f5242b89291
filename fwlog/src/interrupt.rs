//! Stop requests (SIGINT, SIGTERM) counted for the synchronous steps of putting fwlog in place
//! and taking it away: a blocked iptables-restore or the connectionless-flow grace ends at the
//! request and what was done is rolled back, instead of the request waiting for them (or, by the
//! default action, killing fwlog half-way). The stream's own signal handling is separate.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result};

static STOPS: AtomicUsize = AtomicUsize::new(0);
static CAUGHT: std::sync::Once = std::sync::Once::new();

/// Catches SIGINT and SIGTERM from now on (once per process).
pub fn catch() -> Result<()> {
    let mut result = Ok(());
    CAUGHT.call_once(|| {
        for signal in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: the action only increments an atomic, which is async-signal-safe.
            let registered = unsafe {
                signal_hook_registry::register(signal, || {
                    STOPS.fetch_add(1, Ordering::SeqCst);
                })
            };
            if let Err(error) = registered {
                result = Err(error).context("catching SIGINT and SIGTERM");
                return;
            }
        }
    });
    result
}

/// How many stop requests arrived so far. A step that must not be cut short by the request that
/// started it (removal at the end of a session) waits only for a request after this count.
pub fn stops() -> usize {
    STOPS.load(Ordering::SeqCst)
}

/// The error a step returns when a stop request came after `seen`.
pub fn check(seen: usize) -> Result<()> {
    if stops() > seen {
        anyhow::bail!("interrupted (SIGINT or SIGTERM)");
    }
    Ok(())
}
