//! How many hedges the gateway may send: a token bucket. Every callback asked earns a tenth
//! of a hedge, up to [`BURST`]; a hedge spends one. In the long run hedges stay at a tenth
//! of the callbacks, so a pool of hung workers is not sent twice the load; a worker that
//! dies with up to [`BURST`] callbacks in hand still has every one asked again.

use std::sync::atomic::{AtomicU64, Ordering};

/// A hedge, in thousandths.
const ONE: u64 = 1000;
/// What one callback asked earns.
const EARNED_PER_ASK: u64 = ONE / 10;
/// The most hedges saved up.
pub(super) const BURST: u64 = 100;

/// The hedges the gateway may still send, in thousandths.
#[derive(Debug)]
pub(super) struct HedgeBudget {
    tokens: AtomicU64,
}

impl Default for HedgeBudget {
    fn default() -> Self {
        Self {
            tokens: AtomicU64::new(BURST * ONE),
        }
    }
}

impl HedgeBudget {
    /// A callback was asked.
    pub(super) fn earn(&self) {
        let _ = self
            .tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                Some((tokens + EARNED_PER_ASK).min(BURST * ONE))
            });
    }

    /// Takes one hedge; `false` when none is left.
    pub(super) fn spend(&self) -> bool {
        self.tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |tokens| {
                tokens.checked_sub(ONE)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_a_tenth_of_the_asks() {
        let budget = HedgeBudget::default();
        for _ in 0..BURST {
            assert!(budget.spend());
        }
        assert!(!budget.spend(), "the burst is spent");
        for _ in 0..9 {
            budget.earn();
        }
        assert!(!budget.spend(), "nine asks do not make a hedge");
        budget.earn();
        assert!(budget.spend(), "ten do");
        for _ in 0..100_000 {
            budget.earn();
        }
        let saved = (0..).take_while(|_| budget.spend()).count() as u64;
        assert_eq!(saved, BURST, "no more than the burst is saved up");
    }
}
