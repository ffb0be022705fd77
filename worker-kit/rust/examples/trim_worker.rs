//! The smallest useful worker on the kit: refuses owner promotions and trims nicknames.
//! `cargo run -p openim-worker-kit --example trim_worker` against the nats-server of `NATS_URL`
//! (default `nats://127.0.0.1:4222`).

use openim_gateway_proto::catalog::BEFORE_SET_GROUP_MEMBER_INFO;
use openim_gateway_proto::group_member::{MemberInfoChanges, SetGroupMemberInfoRequest};
use openim_worker_kit::{connect, shutdown, Context, Decision, HandlerError, WorkerBuilder};

fn decide(
    request: &SetGroupMemberInfoRequest,
    _context: &Context,
) -> Result<Decision<MemberInfoChanges>, HandlerError> {
    if request.role_level == Some(100) {
        return Ok(Decision::reject(5005, "no owner changes here"));
    }
    match request.nick_name.as_deref().map(str::trim) {
        Some(tidy) if Some(tidy) != request.nick_name.as_deref() => {
            Ok(Decision::modify(MemberInfoChanges {
                nick_name: Some(tidy.to_owned()),
                ..MemberInfoChanges::default()
            }))
        }
        _ => Ok(Decision::allow()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let client = connect("trim-worker", &[url.parse()?]).await?;
    WorkerBuilder::new("trim-worker", "1.0.0")
        .handle(BEFORE_SET_GROUP_MEMBER_INFO, decide)
        .run(client, shutdown::signal())
        .await?;
    Ok(())
}
