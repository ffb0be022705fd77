//! One request over HTTP/1.1: a `callbackBeforeSetGroupMemberInfoCommand` POST on a
//! keep-alive connection, as OpenIM sends it, to the gateway or the direct server.
//!
//! A connection is a bare hyper HTTP/1.1 client connection over one TCP stream (`TCP_NODELAY`
//! set), so that "N connections" means exactly N sockets. The answer counts when its whole
//! body has been read; its source is the `X-Decision-Source` header. This module does not
//! check the answer's content beyond "200 and a JSON object".

use std::net::{SocketAddr, ToSocketAddrs};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    client::conn::http1::{handshake, SendRequest},
    header::{HeaderValue, CONTENT_TYPE, HOST},
    Method, Request, StatusCode, Uri,
};
use hyper_util::rt::TokioIo;
use openim_gateway_proto::headers::DECISION_SOURCE;
use tokio::net::TcpStream;

use crate::{
    body::{callback_body, operation_id, CALLBACK_PATH, CONTENT_TYPE as OPENIM_CONTENT_TYPE},
    intern_source,
    load::{CallError, Target},
};

/// Where the requests go.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// The resolved server address.
    address: SocketAddr,
    /// The `Host` header.
    authority: HeaderValue,
    /// The request path (OpenIM's shipped one unless the URL names another).
    path: Uri,
}

/// A URL the HTTP target cannot use.
#[derive(Debug, thiserror::Error)]
#[error("{url:?} is not a usable target: {reason} (expected http://HOST:PORT[/PATH])")]
pub struct BadUrl {
    url: String,
    reason: String,
}

impl HttpTarget {
    /// A target from `http://host:port[/path]`; without a path, OpenIM's shipped
    /// `/callbackExample/callbackBeforeSetGroupMemberInfoCommand`.
    pub fn new(url: &str) -> Result<Self, BadUrl> {
        let bad = |reason: &str| BadUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// is supported"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?.clone();
        let port = authority.port_u16().unwrap_or(80);
        let address = (authority.host(), port)
            .to_socket_addrs()
            .map_err(|error| bad(&format!("cannot resolve: {error}")))?
            .next()
            .ok_or_else(|| bad("resolves to no address"))?;
        let path = match uri.path() {
            "" | "/" => CALLBACK_PATH,
            path => path,
        };
        Ok(Self {
            address,
            authority: HeaderValue::from_str(authority.as_str())
                .map_err(|_| bad("bad host header"))?,
            path: path.parse().map_err(|_| bad("bad path"))?,
        })
    }
}

impl Target for HttpTarget {
    type Conn = SendRequest<Full<Bytes>>;

    async fn connect(&self) -> Result<Self::Conn, CallError> {
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|_| CallError::Connect)?;
        // Small requests and answers: Nagle would hold them back.
        stream.set_nodelay(true).map_err(|_| CallError::Connect)?;
        let (sender, connection) = handshake(TokioIo::new(stream))
            .await
            .map_err(|_| CallError::Connect)?;
        tokio::spawn(async move {
            // Ends when the sender is dropped or the server closes: nothing to report.
            let _ = connection.await;
        });
        Ok(sender)
    }

    fn is_usable(&self, conn: &Self::Conn) -> bool {
        !conn.is_closed()
    }

    async fn call(&self, conn: &mut Self::Conn, sequence: u64) -> Result<&'static str, CallError> {
        conn.ready().await.map_err(|_| CallError::Io)?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.path.clone())
            .header(HOST, self.authority.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static(OPENIM_CONTENT_TYPE))
            .header(crate::body::OPERATION_ID_HEADER, operation_id(sequence))
            .body(Full::new(Bytes::from(callback_body(sequence))))
            .map_err(|_| CallError::Io)?;
        let response = conn
            .send_request(request)
            .await
            .map_err(|_| CallError::Io)?;
        let status = response.status();
        let source = response
            .headers()
            .get(DECISION_SOURCE)
            .map_or("none", |value| intern_source(value.as_bytes()));
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|_| CallError::Io)?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(CallError::Status);
        }
        if !body.starts_with(b"{") {
            return Err(CallError::Body);
        }
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_default_to_openims_path() {
        let target = HttpTarget::new("http://127.0.0.1:10006").unwrap();
        assert_eq!(target.path, CALLBACK_PATH);
        assert_eq!(target.address.port(), 10006);
        let target = HttpTarget::new("http://127.0.0.1:1/x/y").unwrap();
        assert_eq!(target.path, "/x/y");
        assert!(HttpTarget::new("https://127.0.0.1:1").is_err());
        assert!(HttpTarget::new("nonsense").is_err());
    }
}
