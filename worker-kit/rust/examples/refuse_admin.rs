//! The worker of the README: refuses a group nickname containing "admin", lets everything
//! else through. `cargo run -p openim-worker-kit --example refuse_admin`.

use openim_gateway_proto::{catalog::BEFORE_SET_GROUP_MEMBER_INFO, group_member::*};
use openim_worker_kit::{connect, shutdown, Context, Decision, HandlerError, WorkerBuilder};

fn decide(
    request: &SetGroupMemberInfoRequest,
    _: &Context,
) -> Result<Decision<MemberInfoChanges>, HandlerError> {
    match &request.nick_name {
        Some(name) if name.to_lowercase().contains("admin") => {
            Ok(Decision::reject(5001, "nickname not allowed"))
        }
        _ => Ok(Decision::allow()),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("NATS_URL").unwrap_or("nats://127.0.0.1:4222".into());
    let client = connect("refuse-admin", &[url.parse()?]).await?;
    let worker =
        WorkerBuilder::new("refuse-admin", "1.0.0").handle(BEFORE_SET_GROUP_MEMBER_INFO, decide);
    worker.run(client, shutdown::signal()).await?;
    Ok(())
}
