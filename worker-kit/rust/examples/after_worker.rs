//! An after-callback worker on the kit: logs every group member change OpenIM reports,
//! including the ones made while it was stopped.
//!
//! Start the gateway with `GATEWAY_AFTER_STREAM=OPENIM_AFTER` against a nats-server with
//! JetStream (`nats-server -js`), then
//! `cargo run -p openim-worker-kit --example after_worker`. `NATS_URL` (default
//! `nats://127.0.0.1:4222`), `WORKER_AFTER_STREAM` (default `OPENIM_AFTER`) and
//! `WORKER_AFTER_DURABLE` (default `member-info-log`) are read from the environment, as the
//! Python and Node examples do.

use openim_gateway_proto::group_member::SetGroupMemberInfoRequest;
use openim_worker_kit::{connect, shutdown, AfterCallback, AfterStreamBuilder, HandlerError};

const AFTER_SET_GROUP_MEMBER_INFO: &str = "callbackAfterSetGroupMemberInfoCommand";

/// OpenIM reports only the fields that changed; the others are `null`.
fn on_member_info_changed(
    change: &AfterCallback<SetGroupMemberInfoRequest>,
) -> Result<(), HandlerError> {
    let member = &change.body;
    eprintln!(
        "member info changed: group={:?} user={:?} nickName={:?} faceURL={:?} roleLevel={:?} \
         ex={:?} request_id={} delivered={}",
        member.group_id,
        member.user_id,
        member.nick_name,
        member.face_url,
        member.role_level,
        member.ex,
        change.request_id().unwrap_or("-"),
        change.delivered,
    );
    Ok(())
}

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = setting("NATS_URL", "nats://127.0.0.1:4222");
    let stream = setting("WORKER_AFTER_STREAM", "OPENIM_AFTER");
    let durable = setting("WORKER_AFTER_DURABLE", "member-info-log");
    let client = connect("after-worker", &[url.parse()?]).await?;
    let report = AfterStreamBuilder::new(&stream, &durable)
        .commands(&[AFTER_SET_GROUP_MEMBER_INFO])
        .handle(on_member_info_changed)
        .run(client, shutdown::signal())
        .await?;
    eprintln!("stopped: {report:?}");
    Ok(())
}
