//! From a typed handler to the bytes of a reply.
//!
//! A worker writes `Fn(Request, &Context) -> Result<Answer, HandlerError>` (or its async
//! form); this module parses the body into `Request`, calls the handler, serialises the
//! answer, and turns every way that can fail into a [`Response::ServiceError`] (400 when the
//! body is not the command's request, 500 when the handler fails or its answer cannot be
//! sent), so that the gateway answers its default at once instead of waiting for its timeout.
//! Nothing here touches the network, so all of it is tested without a server.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::Bytes;
use openim_gateway_proto::answer::MIN_REJECT_ERR_CODE;
use openim_gateway_proto::CommonAnswer;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a handler knows about the message besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// The OpenIM command, e.g. `callbackBeforeSetGroupMemberInfoCommand`.
    pub command: String,
    /// `X-Request-Id`: log it with the decision to tie the worker's line to the gateway's.
    pub request_id: Option<String>,
    /// `X-Operation-Id`, OpenIM's id for the user's operation, when OpenIM gave one.
    pub operation_id: Option<String>,
    /// `X-Deadline-Unix-Ms`: a handler doing I/O can bound it by this.
    pub deadline_unix_ms: Option<u64>,
    /// W3C `traceparent` to put on what the handler sends on (HTTP calls, NATS messages):
    /// the kit's span of this request when it exports traces, else the gateway's; `None`
    /// when the request carried none.
    pub traceparent: Option<String>,
}

/// A handler that cannot decide. The gateway receives a `Nats-Service-Error` (code 500) and
/// answers its default at once; the message is logged and sent in that header, so it must not
/// contain anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
}

impl HandlerError {
    /// A failure described by `message` (lowercase, no final period).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// The `Nats-Service-Error-Code` of a reply to a body that is not a request.
pub const BAD_REQUEST_CODE: u16 = 400;
/// The `Nats-Service-Error-Code` of a handler failure or an answer that cannot be sent.
pub const INTERNAL_ERROR_CODE: u16 = 500;

/// What to send back for one request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The answer as JSON, to publish without headers.
    Answer(Bytes),
    /// An error reply in the NATS service API convention: these two headers, empty body.
    ServiceError {
        /// `Nats-Service-Error-Code`.
        code: u16,
        /// `Nats-Service-Error`; never contains a line break (header values cannot).
        description: String,
    },
}

impl Response {
    fn service_error(code: u16, description: &str) -> Self {
        Self::ServiceError {
            code,
            description: description.replace(['\r', '\n'], " "),
        }
    }
}

/// A boxed future, so endpoints of different request types share one list.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One command's handler with its types erased: body and context in, response out.
pub(crate) trait Handle: Send + Sync {
    fn respond(&self, payload: Bytes, context: Context) -> BoxFuture<Response>;
}

/// A typed async handler and the request type it parses.
pub(crate) struct Typed<Request, F> {
    handler: F,
    request: PhantomData<fn() -> Request>,
}

impl<Request, F> Typed<Request, F> {
    pub(crate) fn new(handler: F) -> Self {
        Self {
            handler,
            request: PhantomData,
        }
    }
}

impl<Request, Answer, F, Fut> Handle for Typed<Request, F>
where
    Request: DeserializeOwned + Send + 'static,
    Answer: Serialize + Send + 'static,
    F: Fn(Request, Context) -> Fut + Send + Sync,
    Fut: Future<Output = Result<Answer, HandlerError>> + Send + 'static,
{
    fn respond(&self, payload: Bytes, context: Context) -> BoxFuture<Response> {
        let request = match serde_json::from_slice::<Request>(&payload) {
            Ok(request) => request,
            Err(error) => {
                let description = bad_request_description(&context.command, &error);
                return Box::pin(std::future::ready(Response::service_error(
                    BAD_REQUEST_CODE,
                    &description,
                )));
            }
        };
        let decided = (self.handler)(request, context);
        Box::pin(async move { encode(decided.await) })
    }
}

/// The answer's JSON, or the service error saying why there is none.
pub(crate) fn encode<Answer: Serialize>(decided: Result<Answer, HandlerError>) -> Response {
    let answer = match decided {
        Ok(answer) => answer,
        Err(error) => {
            return Response::service_error(INTERNAL_ERROR_CODE, &format!("cannot decide: {error}"))
        }
    };
    let body = match serde_json::to_vec(&answer) {
        Ok(body) => body,
        Err(error) => {
            return Response::service_error(
                INTERNAL_ERROR_CODE,
                &format!("internal error: cannot serialise the answer: {error}"),
            )
        }
    };
    // The gateway refuses a reject whose code is under 100 (OpenIM would mangle it); saying
    // so here puts the mistake in this worker's log instead of a silent default.
    match serde_json::from_slice::<CommonAnswer>(&body) {
        Ok(common) if common.is_reject() && common.err_code < MIN_REJECT_ERR_CODE => {
            Response::service_error(
                INTERNAL_ERROR_CODE,
                &format!(
                    "cannot decide: a reject needs an errCode of at least {MIN_REJECT_ERR_CODE}, \
                     the handler gave {}",
                    common.err_code
                ),
            )
        }
        Ok(_) => Response::Answer(Bytes::from(body)),
        Err(_) => Response::service_error(
            INTERNAL_ERROR_CODE,
            "internal error: the handler's answer is not a JSON object with OpenIM's common fields",
        ),
    }
}

/// A short reason naming what is wrong and where, without echoing any of the body: serde's
/// messages quote values from the input, and this text travels in a header and in logs.
pub(crate) fn bad_request_description(command: &str, error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Data => format!("body is not a {command} request"),
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            "body is not valid JSON".to_owned()
        }
        serde_json::error::Category::Io => "body cannot be read".to_owned(),
    };
    format!(
        "bad request: {what} (line {}, column {})",
        error.line(),
        error.column()
    )
}

#[cfg(test)]
mod tests {
    use openim_gateway_proto::group_member::SetGroupMemberInfoRequest;

    use super::*;
    use crate::Decision;

    const COMMAND: &str = "callbackBeforeSetGroupMemberInfoCommand";

    fn context() -> Context {
        Context {
            command: COMMAND.to_owned(),
            request_id: None,
            operation_id: None,
            deadline_unix_ms: None,
            traceparent: None,
        }
    }

    async fn respond_with(
        body: &[u8],
        decide: fn(SetGroupMemberInfoRequest) -> Result<Decision, HandlerError>,
    ) -> Response {
        let handler = Typed::new(move |request, _context| std::future::ready(decide(request)));
        handler
            .respond(Bytes::copy_from_slice(body), context())
            .await
    }

    fn allow(_: SetGroupMemberInfoRequest) -> Result<Decision, HandlerError> {
        Ok(Decision::allow())
    }

    fn service_error(response: &Response) -> (u16, &str) {
        match response {
            Response::ServiceError { code, description } => (*code, description),
            Response::Answer(_) => panic!("expected a service error, got {response:?}"),
        }
    }

    #[tokio::test]
    async fn a_request_is_parsed_decided_and_serialised() {
        let body =
            include_bytes!("../../../fixtures/openim/before_set_group_member_info.role_only.json");
        assert_eq!(
            respond_with(body, allow).await,
            Response::Answer(Bytes::from_static(
                br#"{"actionCode":0,"errCode":0,"errMsg":"","errDlt":"","nextCode":0}"#
            ))
        );
    }

    #[tokio::test]
    async fn bodies_that_are_not_requests_get_a_400_service_error() {
        let not_json = "bad request: body is not valid JSON";
        let not_request =
            "bad request: body is not a callbackBeforeSetGroupMemberInfoCommand request";
        for (body, reason) in [
            (&b""[..], not_json),
            (b"not json", not_json),
            (b"{\"groupID\":", not_json),
            (b"\xff\xfe", not_json),
            (b"{\"nickName\":\"\xff\"}", not_json),
            (b"null", not_request),
            (b"[]", not_request),
            (b"{}", not_request),
            (
                br#"{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":"60"}"#,
                not_request,
            ),
            (
                br#"{"callbackCommand":"c","groupID":"g","userID":"u","roleLevel":4294967296}"#,
                not_request,
            ),
        ] {
            let response = respond_with(body, allow).await;
            let (code, description) = service_error(&response);
            assert_eq!(code, 400, "{body:?}");
            assert!(description.starts_with(reason), "{body:?}: {description}");
        }
    }

    #[tokio::test]
    async fn the_bad_request_reason_does_not_echo_the_body() {
        let body = br#"{"callbackCommand":"c","groupID":"g","userID":"u","nickName":["s3cret"]}"#;
        let response = respond_with(body, allow).await;
        let (_, description) = service_error(&response);
        assert!(!description.contains("s3cret"), "{description}");
    }

    #[tokio::test]
    async fn a_failing_handler_gets_a_500_service_error_on_one_line() {
        let body =
            include_bytes!("../../../fixtures/openim/before_set_group_member_info.role_only.json");
        let response = respond_with(body, |_| {
            Err(HandlerError::new("the policy store\nis down"))
        })
        .await;
        assert_eq!(
            service_error(&response),
            (500, "cannot decide: the policy store is down")
        );
    }

    #[tokio::test]
    async fn a_reject_under_100_becomes_a_service_error() {
        let body =
            include_bytes!("../../../fixtures/openim/before_set_group_member_info.role_only.json");
        let response = respond_with(body, |_| Ok(Decision::reject(42, "no"))).await;
        let (code, description) = service_error(&response);
        assert_eq!(code, 500);
        assert!(description.contains("at least 100"), "{description}");
    }

    #[test]
    fn an_answer_that_is_not_an_object_is_refused() {
        let (code, _) = service_error(&encode(Ok("allow")));
        assert_eq!(code, 500);
    }
}
