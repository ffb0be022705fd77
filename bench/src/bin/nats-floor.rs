//! `nats-floor`: the bare NATS floor, in two modes.
//!
//! - `nats-floor worker`: a minimal worker, queue-subscribing the seed command's subject in
//!   the workers' queue group and replying with the same rules as the example worker, inline,
//!   without deadline checks or logs. Prints `nats-floor worker ready on SUBJECT`.
//! - `nats-floor client`: async-nats request/reply through the same nats-server to whatever
//!   workers are there, open or closed loop, with the same JSON result line as `loadgen`.

use std::{io::Write as _, process::ExitCode, sync::Arc, time::Duration};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use futures::StreamExt as _;
use openim_gateway_bench::{
    cli::LoadArgs, load, nats_target::NatsTarget, result::own_cpu_seconds, runtime,
};
use openim_gateway_proto::{
    catalog::BEFORE_SET_GROUP_MEMBER_INFO,
    group_member::{SetGroupMemberInfoAnswer, SetGroupMemberInfoRequest},
    subject,
};
use openim_worker_example::rules::{decide, Rules};

/// The bare NATS floor: a minimal worker, or a request/reply load client.
#[derive(Debug, Parser)]
#[command(name = "nats-floor")]
struct Args {
    /// The NATS server.
    #[arg(
        long,
        env = "NATS_URL",
        default_value = "nats://127.0.0.1:4222",
        global = true
    )]
    nats_url: String,
    /// The gateway's `GATEWAY_SUBJECT_PREFIX`.
    #[arg(long, default_value = subject::DEFAULT_PREFIX, global = true)]
    prefix: String,
    #[command(subcommand)]
    command: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Answer requests with the example worker's rules.
    Worker {
        /// Answer each request this many milliseconds after it arrived (a slower worker;
        /// requests are answered concurrently).
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Send requests and print one JSON result line.
    Client {
        /// Send the five headers the gateway adds (request id, command, operation id,
        /// deadline, time left) with each request.
        #[arg(long)]
        with_headers: bool,
        #[command(flatten)]
        load: LoadArgs,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let threads = match &args.command {
        Mode::Worker { .. } => 1,
        Mode::Client { load, .. } => load.threads,
    };
    let runtime = match runtime(threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("nats-floor: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let subject = subject::for_command(&args.prefix, BEFORE_SET_GROUP_MEMBER_INFO);
    let outcome = runtime.block_on(async {
        let mut options = async_nats::ConnectOptions::new().name("nats-floor");
        // `nats://user:password@host`: the client does not log in with a URL's user alone.
        let server: async_nats::ServerAddr = args.nats_url.parse()?;
        if let (Some(user), Some(password)) = (server.username(), server.password()) {
            options = options.user_and_password(user.to_owned(), password.to_owned());
        }
        let client = options.connect(args.nats_url.as_str()).await?;
        match &args.command {
            Mode::Worker { delay_ms } => {
                serve(client, subject, Duration::from_millis(*delay_ms)).await
            }
            Mode::Client { load, with_headers } => {
                let mut target = NatsTarget::new(client, subject);
                if *with_headers {
                    target = target.with_headers();
                }
                measure(target, load).await
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("nats-floor: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(client: async_nats::Client, subject: String, delay: Duration) -> anyhow::Result<()> {
    let rules = Rules::default();
    let mut subscriber = client
        .queue_subscribe(subject.clone(), subject::QUEUE_GROUP.to_owned())
        .await?;
    client.flush().await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "nats-floor worker ready on {subject}")?;
    stdout.flush()?;
    while let Some(message) = subscriber.next().await {
        let Some(reply) = message.reply else { continue };
        let answer = match serde_json::from_slice::<SetGroupMemberInfoRequest>(&message.payload) {
            Ok(request) => decide(&rules, &request),
            Err(_) => SetGroupMemberInfoAnswer::allow(),
        };
        let body = Bytes::from(serde_json::to_vec(&answer)?);
        if delay.is_zero() {
            client.publish(reply, body).await?;
        } else {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // A reply that cannot be sent is a lost callback, which the run counts.
                let _ = client.publish(reply, body).await;
            });
        }
    }
    anyhow::bail!("the subscription ended")
}

async fn measure(target: NatsTarget, load: &LoadArgs) -> anyhow::Result<()> {
    let mut result = load::run(Arc::new(target), &load.settings()).await;
    result.process_cpu_s = own_cpu_seconds();
    eprintln!("nats-floor: {}", result.summary());
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
