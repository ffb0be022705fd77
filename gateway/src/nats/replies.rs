//! Reply routing: one wildcard subscription on a private inbox, and a map from request
//! number to the callback waiting for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use async_nats::Message;
use futures::StreamExt;
use tokio::sync::oneshot;

pub(super) type Pending = Mutex<HashMap<u64, oneshot::Sender<Message>>>;

/// Removes a pending entry when its callback stops waiting, whatever the reason.
pub(super) struct PendingGuard<'a> {
    pub(super) pending: &'a Pending,
    pub(super) id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

pub(super) fn lock(
    pending: &Pending,
) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Message>>> {
    // The map stays consistent across a panic (single insert/remove calls), so a poisoned
    // lock is still usable.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Hands each reply to the callback waiting for it; replies nobody waits for any more are
/// dropped.
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
