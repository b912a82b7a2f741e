//! A hostile Atlas: a raw HTTP/1.1 server on 127.0.0.1 (ephemeral port) that answers the client's
//! routes the way a broken or malicious server (or a proxy in front of Atlas) might: an oversized
//! body (with or without `Content-Length`), an endless chunked body, a listing whose `next` link
//! points back to itself, a token error that echoes the request's `Authorization` header, a token
//! that expires at once. Everything else it answers sanely, so one hostile route can be tried at a
//! time.
//!
//! Self-contained (no `super::`), so a benchmark can include it with `#[path]`:
//!
//! ```ignore
//! let server = Hostile::start(HostileConfig { listing: Listing::Endless, ..Default::default() }).await;
//! let base_url = server.base_url();
//! ```
//!
//! Each connection carries one request and is closed after the answer (`Connection: close`), which
//! keeps the framing of the endless and close-delimited answers simple.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How a body's end is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `Content-Length` (truthful) then the body.
    ContentLength,
    /// `Transfer-Encoding: chunked`: no length up front.
    Chunked,
    /// Neither: the body ends when the server closes the connection.
    CloseDelimited,
}

/// What a listing (`GET .../privateLinkConnections`) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    /// `{"results":[],"totalCount":0}`: nothing exists.
    Empty,
    /// A 200 whose body is `bytes` long (JSON with a long padding string), framed as told.
    Oversized { bytes: u64, framing: Framing },
    /// A 200 with a chunked body that never ends: connection objects, 64 KiB a chunk, until the
    /// client hangs up.
    Endless,
    /// One connection, and a `next` link whose `href` is the request's own URL, no `totalCount`:
    /// the same page, whatever `pageNum` asks for.
    NextPointsToItself,
}

/// What the token endpoint (`POST /api/oauth/token`) gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    /// A 200 with a fresh token (`hostile-token-<n>`) and this `expires_in`.
    Issue { expires_in: u64 },
    /// A 401 whose OAuth JSON error quotes the request's `Authorization` header back, in
    /// `error_description` and in `reason`.
    RejectEchoingAuthorization,
}

#[derive(Debug, Clone)]
pub(crate) struct HostileConfig {
    pub(crate) token: Token,
    pub(crate) listing: Listing,
}

impl Default for HostileConfig {
    fn default() -> Self {
        HostileConfig {
            token: Token::Issue { expires_in: 3600 },
            listing: Listing::Empty,
        }
    }
}

/// What the server has seen and sent.
#[derive(Debug, Default)]
struct Counts {
    token: AtomicU64,
    list: AtomicU64,
    create: AtomicU64,
    revoke: AtomicU64,
    other: AtomicU64,
    /// Body bytes written to clients, all routes.
    body_bytes: AtomicU64,
}

/// A running hostile server; stops accepting when dropped.
pub(crate) struct Hostile {
    addr: std::net::SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The last token issued, as tests look for it in output: `hostile-token-<n>`.
pub(crate) fn token_text(n: u64) -> String {
    format!("hostile-token-{n:08}")
}

/// `base64(id:secret)`, the credential HTTP Basic sends (and a token error may echo), for tests to
/// look for in output.
pub(crate) fn basic_credential(id: &str, secret: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
}

impl Hostile {
    /// Binds 127.0.0.1:0 and serves `config` on the current runtime.
    pub(crate) async fn start(config: HostileConfig) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let counts = Arc::new(Counts::default());
        let config = Arc::new(config);
        let task = {
            let counts = counts.clone();
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let counts = counts.clone();
                    let config = config.clone();
                    tokio::spawn(async move {
                        // A client hanging up mid-answer is the point of some answers.
                        let _ = serve(stream, &config, &counts).await;
                    });
                }
            })
        };
        Hostile { addr, counts, task }
    }

    /// `http://127.0.0.1:<port>`, for `atlas.base_url`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn token_requests(&self) -> u64 {
        self.counts.token.load(Ordering::SeqCst)
    }

    pub(crate) fn list_requests(&self) -> u64 {
        self.counts.list.load(Ordering::SeqCst)
    }

    pub(crate) fn create_requests(&self) -> u64 {
        self.counts.create.load(Ordering::SeqCst)
    }

    pub(crate) fn revoke_requests(&self) -> u64 {
        self.counts.revoke.load(Ordering::SeqCst)
    }

    /// Body bytes written to clients so far (what the socket accepted, not what a client read).
    pub(crate) fn body_bytes_sent(&self) -> u64 {
        self.counts.body_bytes.load(Ordering::SeqCst)
    }
}

struct Request {
    method: String,
    target: String,
    authorization: Option<String>,
}

/// Reads one request head (and discards its body).
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let mut authorization = None;
    let mut content_length = 0usize;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.to_owned());
            } else if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            }
        }
    }
    let mut have = buf.len() - head_end;
    while have < content_length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        have += n;
    }
    Ok(Some(Request {
        method,
        target,
        authorization,
    }))
}

async fn serve(
    mut stream: TcpStream,
    config: &HostileConfig,
    counts: &Counts,
) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let path = req.target.split('?').next().unwrap_or_default().to_owned();
    let connections = path.ends_with("/streams/privateLinkConnections");
    match (req.method.as_str(), path.as_str()) {
        ("POST", "/api/oauth/token") => {
            let n = counts.token.fetch_add(1, Ordering::SeqCst) + 1;
            match &config.token {
                Token::Issue { expires_in } => {
                    let body = serde_json::json!({
                        "access_token": token_text(n),
                        "token_type": "Bearer",
                        "expires_in": expires_in,
                    });
                    json(&mut stream, counts, 200, &body).await
                }
                Token::RejectEchoingAuthorization => {
                    let auth = req.authorization.unwrap_or_default();
                    let body = serde_json::json!({
                        "error": "invalid_client",
                        "error_description": format!("Invalid client credentials in `Authorization: {auth}`"),
                        "reason": auth,
                    });
                    json(&mut stream, counts, 401, &body).await
                }
            }
        }
        ("POST", "/api/oauth/revoke") => {
            counts.revoke.fetch_add(1, Ordering::SeqCst);
            json(&mut stream, counts, 200, &serde_json::json!({})).await
        }
        ("GET", _) if connections => {
            counts.list.fetch_add(1, Ordering::SeqCst);
            listing(&mut stream, config, counts, &req.target).await
        }
        ("POST", _) if connections => {
            let n = counts.create.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({ "_id": format!("{:024x}", 0x00c0_ffee_0000_u64 + n) });
            json(&mut stream, counts, 201, &body).await
        }
        _ => {
            counts.other.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({"error": 404, "errorCode": "RESOURCE_NOT_FOUND"});
            json(&mut stream, counts, 404, &body).await
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        401 => "Unauthorized",
        _ => "Not Found",
    }
}

async fn json(
    stream: &mut TcpStream,
    counts: &Counts,
    status: u16,
    body: &serde_json::Value,
) -> std::io::Result<()> {
    let body = body.to_string();
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    counts
        .body_bytes
        .fetch_add(body.len() as u64, Ordering::SeqCst);
    stream.shutdown().await
}

const ONE_CONNECTION: &str = r#"{"_id":"65a1b2c3d4e5f60718293a4b","provider":"AWS","vendor":"S3","region":"us-east-1","serviceEndpointId":"com.amazonaws.vpce.us-east-1.vpce-svc-hostile","state":"DONE"},"#;

async fn listing(
    stream: &mut TcpStream,
    config: &HostileConfig,
    counts: &Counts,
    target: &str,
) -> std::io::Result<()> {
    match &config.listing {
        Listing::Empty => {
            let body = serde_json::json!({"results": [], "totalCount": 0, "links": []});
            json(stream, counts, 200, &body).await
        }
        Listing::NextPointsToItself => {
            let href = format!("http://atlas.invalid{target}");
            let body = serde_json::json!({
                "links": [{"rel": "self", "href": href}, {"rel": "next", "href": href}],
                "results": [serde_json::from_str::<serde_json::Value>(ONE_CONNECTION.trim_end_matches(','))
                    .expect("ONE_CONNECTION is JSON")],
            });
            json(stream, counts, 200, &body).await
        }
        Listing::Oversized { bytes, framing } => {
            let prefix = br#"{"results":[],"pad":""#;
            let suffix = br#""}"#;
            let pad = bytes.saturating_sub((prefix.len() + suffix.len()) as u64);
            let mut head = String::from(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n",
            );
            match framing {
                Framing::ContentLength => head.push_str(&format!("Content-Length: {bytes}\r\n")),
                Framing::Chunked => head.push_str("Transfer-Encoding: chunked\r\n"),
                Framing::CloseDelimited => {}
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            let mut body = Body::new(*framing, counts);
            body.write(stream, prefix).await?;
            let block = vec![b'x'; 64 * 1024];
            let mut left = pad;
            while left > 0 {
                let n = left.min(block.len() as u64) as usize;
                body.write(stream, &block[..n]).await?;
                left -= n as u64;
            }
            body.write(stream, suffix).await?;
            body.finish(stream).await?;
            stream.shutdown().await
        }
        Listing::Endless => {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
            stream.write_all(head.as_bytes()).await?;
            let mut body = Body::new(Framing::Chunked, counts);
            body.write(stream, br#"{"results":["#).await?;
            let block: Vec<u8> = ONE_CONNECTION
                .as_bytes()
                .iter()
                .copied()
                .cycle()
                .take(ONE_CONNECTION.len() * (64 * 1024 / ONE_CONNECTION.len()))
                .collect();
            loop {
                body.write(stream, &block).await?;
            }
        }
    }
}

/// Writes a body in the framing its head announced, counting what the socket took.
struct Body<'a> {
    framing: Framing,
    counts: &'a Counts,
}

impl<'a> Body<'a> {
    fn new(framing: Framing, counts: &'a Counts) -> Body<'a> {
        Body { framing, counts }
    }

    async fn write(&mut self, stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.framing == Framing::Chunked {
            stream
                .write_all(format!("{:x}\r\n", bytes.len()).as_bytes())
                .await?;
            stream.write_all(bytes).await?;
            stream.write_all(b"\r\n").await?;
        } else {
            stream.write_all(bytes).await?;
        }
        self.counts
            .body_bytes
            .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    async fn finish(&mut self, stream: &mut TcpStream) -> std::io::Result<()> {
        if self.framing == Framing::Chunked {
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Ok(())
    }
}
