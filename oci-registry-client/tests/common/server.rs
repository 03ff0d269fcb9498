//! An in-process HTTP/1.1 server (hyper) whose answers a test scripts, for the registry
//! behaviour that distribution cannot show: quirks, faults, hostile answers.

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// A request as the handler sees it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or("")
    }
    pub fn query_all(&self, key: &str) -> Vec<String> {
        match reqwest::Url::parse(&format!("http://x{}", self.uri)) {
            Ok(u) => u
                .query_pairs()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    pub fn query(&self, key: &str) -> Option<String> {
        let u = reqwest::Url::parse(&format!("http://x{}", self.uri)).ok()?;
        let v = u
            .query_pairs()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned());
        v
    }
}

pub enum Body {
    Bytes(Bytes),
    /// Sends these bytes, then breaks the connection (Content-Length promises more).
    Abort(Bytes),
    /// No body and no Content-Length (chunked encoding).
    Unsized,
    /// These bytes with no Content-Length (chunked encoding).
    Chunked(Bytes),
    /// Sends these bytes, then stalls for ten seconds (a slow body).
    Stall(Bytes),
    /// Sends these bytes one at a time, one every interval (a peer that trickles).
    Drip(Bytes, std::time::Duration),
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Bytes::new()),
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Self {
        self.headers.push((k.to_owned(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Bytes>) -> Self {
        self.body = Body::Bytes(b.into());
        self
    }
    pub fn json(self, v: serde_json::Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(&v).unwrap())
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    /// Every request seen, in order.
    pub log: Arc<Mutex<Vec<Request>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub fn registry(&self) -> String {
        self.addr.to_string()
    }
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == method && r.uri.contains(path_part))
            .count()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn to_hyper(resp: Response) -> hyper::Response<BoxBody<Bytes, std::io::Error>> {
    let mut b = hyper::Response::builder().status(resp.status);
    for (k, v) in &resp.headers {
        b = b.header(k, v);
    }
    let body: BoxBody<Bytes, std::io::Error> = match resp.body {
        Body::Bytes(bytes) => Full::new(bytes)
            .map_err(|never: Infallible| match never {})
            .boxed(),
        Body::Abort(bytes) => {
            // Data first, then (after hyper has flushed it) a broken connection.
            let s = futures_util::stream::unfold(0u8, move |step| {
                let bytes = bytes.clone();
                async move {
                    match step {
                        0 => Some((Ok(Frame::data(bytes)), 1)),
                        1 => {
                            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
                            Some((
                                Err(std::io::Error::new(
                                    std::io::ErrorKind::ConnectionReset,
                                    "test: connection cut",
                                )),
                                2,
                            ))
                        }
                        _ => None,
                    }
                }
            });
            StreamBody::new(s).boxed()
        }
        Body::Stall(bytes) => {
            let s = futures_util::stream::unfold(0u8, move |step| {
                let bytes = bytes.clone();
                async move {
                    match step {
                        0 => Some((Ok::<_, std::io::Error>(Frame::data(bytes)), 1)),
                        _ => {
                            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
                            None
                        }
                    }
                }
            });
            StreamBody::new(s).boxed()
        }
        Body::Drip(bytes, every) => {
            let s = futures_util::stream::unfold(0usize, move |i| {
                let bytes = bytes.clone();
                async move {
                    if i >= bytes.len() {
                        return None;
                    }
                    tokio::time::sleep(every).await;
                    Some((
                        Ok::<_, std::io::Error>(Frame::data(bytes.slice(i..i + 1))),
                        i + 1,
                    ))
                }
            });
            StreamBody::new(s).boxed()
        }
        Body::Chunked(bytes) => {
            let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = bytes
                .chunks(64 * 1024)
                .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
                .collect();
            StreamBody::new(futures_util::stream::iter(frames)).boxed()
        }
        Body::Unsized => {
            let s = futures_util::stream::iter(Vec::<Result<Frame<Bytes>, std::io::Error>>::new());
            StreamBody::new(s).boxed()
        }
    };
    b.body(body).unwrap()
}

pub async fn serve(handler: impl Fn(&Request) -> Response + Send + Sync + 'static) -> Server {
    let handler: Handler = Arc::new(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log: Arc<Mutex<Vec<Request>>> = Arc::default();
    let log2 = log.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let handler = handler.clone();
            let log = log2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let handler = handler.clone();
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let r = Request {
                            method: parts.method.to_string(),
                            uri: parts.uri.to_string(),
                            headers: parts.headers,
                            body,
                        };
                        log.lock().unwrap().push(r.clone());
                        let resp = handler(&r);
                        Ok::<_, Infallible>(to_hyper(resp))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Server { addr, log, task }
}
