//! Reply routing: one wildcard subscription on a private inbox, and a map from request
//! number to the callback waiting for it.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use async_nats::Message;
use futures::StreamExt;
use tokio::sync::oneshot;

pub(super) type Pending = Mutex<HashMap<u64, oneshot::Sender<Message>>>;

/// The gateway's private inbox: a reply subject per request, and who waits on each.
#[derive(Debug)]
pub(super) struct Inbox {
    /// `{inbox}.`: a reply subject is this prefix plus the request number.
    prefix: String,
    /// Callbacks (and watchdog probes) waiting for a reply, by request number.
    pub(super) pending: Arc<Pending>,
    /// The next request number.
    next_id: AtomicU64,
    /// The next probe number (from [`PROBE_IDS`]: probes are not callbacks, and are not
    /// counted as waiting ones).
    next_probe_id: AtomicU64,
}

/// Where the numbers of the watchdog's probes start.
const PROBE_IDS: u64 = 1 << 63;

/// One open reply subject: its first message comes out of `receiver`; the map entry goes
/// when this is dropped, whatever the reason.
pub(super) struct Waiting<'a> {
    /// `{inbox}.{number}`.
    pub(super) subject: String,
    /// The first message published to `subject`.
    pub(super) receiver: oneshot::Receiver<Message>,
    _guard: PendingGuard<'a>,
}

impl Inbox {
    /// The inbox `inbox` (without the trailing dot), routed by the task of [`route_replies`]
    /// to `pending`.
    pub(super) fn new(inbox: &str, pending: Arc<Pending>) -> Self {
        Self {
            prefix: format!("{inbox}."),
            pending,
            next_id: AtomicU64::new(0),
            next_probe_id: AtomicU64::new(PROBE_IDS),
        }
    }

    /// A fresh reply subject for a callback.
    pub(super) fn open(&self) -> Waiting<'_> {
        self.open_id(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A fresh reply subject for a probe of the watchdog.
    pub(super) fn open_probe(&self) -> Waiting<'_> {
        self.open_id(self.next_probe_id.fetch_add(1, Ordering::Relaxed) | PROBE_IDS)
    }

    fn open_id(&self, id: u64) -> Waiting<'_> {
        let (sender, receiver) = oneshot::channel();
        lock(&self.pending).insert(id, sender);
        Waiting {
            subject: format!("{}{id}", self.prefix),
            receiver,
            _guard: PendingGuard {
                pending: &self.pending,
                id,
            },
        }
    }

    /// How many callbacks wait for a reply (the watchdog's probes left out).
    pub(super) fn len(&self) -> usize {
        lock(&self.pending)
            .keys()
            .filter(|id| **id < PROBE_IDS)
            .count()
    }
}

/// Removes a pending entry when its callback stops waiting, whatever the reason.
struct PendingGuard<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
    // The map stays consistent across a panic (single insert/remove calls), so a poisoned
    // lock is still usable.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands each reply to the callback waiting for it; replies nobody waits for any more are
/// dropped (so is the second reply to a subject asked twice: the first one won).
pub(super) async fn route_replies(mut subscriber: async_nats::Subscriber, pending: Arc<Pending>) {
    while let Some(message) = subscriber.next().await {
        let id = message
            .subject
            .rsplit('.')
            .next()
            .and_then(|token| token.parse::<u64>().ok());
        let Some(id) = id else { continue };
        let waiting = lock(&pending).remove(&id);
        if let Some(sender) = waiting {
            // The receiver may have given up in the meantime: nothing to do then.
            let _ = sender.send(message);
        }
    }
    // The subscription ended: wake every waiting callback (they answer `Unavailable`).
    lock(&pending).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_are_not_waiting_callbacks_and_every_entry_goes_with_its_guard() {
        let inbox = Inbox::new("_INBOX.test", Arc::default());
        let callback = inbox.open();
        let probe = inbox.open_probe();
        assert_eq!(inbox.len(), 1);
        assert!(probe.subject.starts_with("_INBOX.test."));
        assert_ne!(probe.subject, callback.subject);
        drop(callback);
        assert_eq!(inbox.len(), 0);
        drop(probe);
        assert!(lock(&inbox.pending).is_empty());
    }
}
