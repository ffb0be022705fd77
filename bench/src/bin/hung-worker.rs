//! `hung-worker`: a member of the workers' queue group that receives every request it is
//! given and never answers. With it alone behind the gateway, only the gateway's deadline
//! answers OpenIM (`fallback:timeout`): no "no responders" shortcut applies.
//!
//! Prints `hung-worker ready on SUBJECT` once the server has the subscription.

use std::io::Write as _;

use clap::Parser;
use futures::StreamExt as _;
use openim_gateway_proto::{catalog::BEFORE_SET_GROUP_MEMBER_INFO, subject};

/// Join the queue group and never answer.
#[derive(Debug, Parser)]
#[command(name = "hung-worker")]
struct Args {
    /// The NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// The gateway's `GATEWAY_SUBJECT_PREFIX`.
    #[arg(long, default_value = subject::DEFAULT_PREFIX)]
    prefix: String,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = async_nats::ConnectOptions::new()
        .name("hung-worker")
        .connect(args.nats_url.as_str())
        .await?;
    let subject = subject::for_command(&args.prefix, BEFORE_SET_GROUP_MEMBER_INFO);
    let mut subscriber = client
        .queue_subscribe(subject.clone(), subject::QUEUE_GROUP.to_owned())
        .await?;
    client.flush().await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "hung-worker ready on {subject}")?;
    stdout.flush()?;
    // Take every message off the connection (so the server never counts this worker a slow
    // consumer) and drop it unanswered.
    while subscriber.next().await.is_some() {}
    anyhow::bail!("the subscription ended")
}
