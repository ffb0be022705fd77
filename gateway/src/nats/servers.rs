//! Which server of the pool the client connects to next: the gateway chooses, instead of
//! async-nats' shuffle, so that a server the watchdog saw stall is not the next one tried
//! (a frozen nats-server still completes TCP handshakes from its listen backlog, and would
//! hold the reconnection for the whole connect timeout).

use std::{
    sync::{Mutex, PoisonError},
    time::Duration,
};

use async_nats::{ReconnectToServer, Server, ServerAddr};
use tokio::time::Instant;

/// How long a server that stalled is tried only when no other is left.
const SUSPECT_FOR: Duration = Duration::from_secs(30);

/// The servers tried, and the ones under suspicion.
#[derive(Debug)]
pub(super) struct ServerChoice {
    state: Mutex<ChoiceState>,
}

#[derive(Debug)]
struct ChoiceState {
    /// The server of the last attempt: the current connection's, once connected.
    current: Option<ServerAddr>,
    /// Servers whose connection stalled, and when.
    suspects: Vec<(ServerAddr, Instant)>,
    /// Turns among equally good servers, so that gateways spread over the nodes.
    turn: usize,
}

impl Default for ServerChoice {
    fn default() -> Self {
        // A different first choice per process: the low bits of a version 7 UUID are random.
        let turn = (uuid::Uuid::now_v7().as_u128() & 0xffff) as usize;
        Self {
            state: Mutex::new(ChoiceState {
                current: None,
                suspects: Vec::new(),
                turn,
            }),
        }
    }
}

impl ServerChoice {
    /// The server of the next attempt: among those not under suspicion (all of them when
    /// every one is), the ones with the fewest failed attempts in a row, in turn.
    pub(super) fn choose(&self, pool: &[Server]) -> Option<ReconnectToServer> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state
            .suspects
            .retain(|(_, since)| now.duration_since(*since) < SUSPECT_FOR);
        let trusted: Vec<&Server> = pool
            .iter()
            .filter(|server| !state.suspects.iter().any(|(addr, _)| *addr == server.addr))
            .collect();
        let candidates = if trusted.is_empty() {
            pool.iter().collect()
        } else {
            trusted
        };
        let fewest = candidates
            .iter()
            .map(|server| server.failed_attempts)
            .min()?;
        let best: Vec<&Server> = candidates
            .into_iter()
            .filter(|server| server.failed_attempts == fewest)
            .collect();
        let chosen = best.get(state.turn % best.len())?.addr.clone();
        state.turn = state.turn.wrapping_add(1);
        state.current = Some(chosen.clone());
        Some(ReconnectToServer {
            addr: chosen,
            // The client's own delay: none for the first attempt, then growing.
            delay: None,
        })
    }

    /// The current connection stalled: its server is avoided for a while. Returns it, for
    /// the log.
    pub(super) fn suspect_current(&self) -> Option<ServerAddr> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let current = state.current.clone()?;
        state.suspects.push((current.clone(), Instant::now()));
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(urls: &[&str]) -> Vec<Server> {
        urls.iter()
            .map(|url| Server {
                addr: url.parse().expect("a valid URL"),
                failed_attempts: 0,
                did_connect: false,
                is_discovered: false,
                last_error: None,
            })
            .collect()
    }

    #[test]
    fn a_stalled_server_is_not_chosen_while_another_is_left() {
        let pool = pool(&[
            "nats://127.0.0.1:1",
            "nats://127.0.0.1:2",
            "nats://127.0.0.1:3",
        ]);
        let choice = ServerChoice::default();
        let first = choice.choose(&pool).expect("a server").addr;
        assert_eq!(choice.suspect_current(), Some(first.clone()));
        for _ in 0..10 {
            assert_ne!(choice.choose(&pool).expect("a server").addr, first);
        }
    }

    #[test]
    fn every_server_is_tried_when_all_stalled_and_failures_go_last() {
        let mut pool = pool(&["nats://127.0.0.1:1", "nats://127.0.0.1:2"]);
        let choice = ServerChoice::default();
        for _ in 0..2 {
            choice.choose(&pool).expect("a server");
            choice.suspect_current();
        }
        assert!(
            choice.choose(&pool).is_some(),
            "all suspected: still one to try"
        );
        pool[0].failed_attempts = 3;
        for _ in 0..4 {
            assert_eq!(choice.choose(&pool).expect("a server").addr, pool[1].addr);
        }
        assert!(choice.choose(&[]).is_none());
    }
}
