//! The benchmark instrument of openim-gateway: what it takes to measure the gateway against
//! its floors on one machine.
//!
//! - [`body`]: the OpenIM-shaped requests, byte for byte as OpenIM's Go encoder writes them;
//! - [`load`]: the load engine, open loop (requests start on a fixed schedule and latency
//!   counts from the scheduled start, so stalls show) and closed loop (N callers back to
//!   back), recording into HDR histograms;
//! - [`result`]: the JSON line every run prints, read back by the driver;
//! - [`http_target`] and [`nats_target`]: what one request is, over HTTP/1.1 keep-alive
//!   connections or as an async-nats request/reply;
//! - [`direct`]: the direct server, deciding in process what the worker decides.
//!
//! The binaries (`loadgen`, `direct-server`, `nats-floor`, `hung-worker`, and the `bench`
//! driver that runs every scenario) only parse arguments and wire these together. Nothing
//! here asserts a budget: the driver reports numbers and says which budgets they meet.

pub mod body;
pub mod cli;
pub mod direct;
pub mod http_target;
pub mod load;
pub mod nats_target;
pub mod result;

use openim_gateway_proto::DecisionSource;

/// The static name of an `X-Decision-Source` value: one the gateway sends, the direct
/// server's own, or `other`. Counting a source never allocates.
pub fn intern_source(value: &[u8]) -> &'static str {
    if value == direct::DIRECT_SOURCE.as_bytes() {
        return direct::DIRECT_SOURCE;
    }
    DecisionSource::ALL
        .iter()
        .map(|source| source.header_value())
        .find(|known| known.as_bytes() == value)
        .unwrap_or("other")
}

/// Builds the runtime of a load generator: one thread by default, leaving the machine's
/// other cores to the processes under test.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_interned() {
        assert_eq!(intern_source(b"worker"), DecisionSource::Worker.as_str());
        assert_eq!(
            intern_source(b"fallback:timeout"),
            DecisionSource::Timeout.as_str()
        );
        assert_eq!(
            intern_source(direct::DIRECT_SOURCE.as_bytes()),
            direct::DIRECT_SOURCE
        );
        assert_eq!(intern_source(b"surprise"), "other");
    }
}
