//! A scripted HTTP (and, with the `https` feature, HTTPS) server on loopback for
//! tracker, redirect and fetch tests: one scripted response per connection, in
//! order, recording each request line. Every wait is bounded: `accept` polls a
//! non-blocking listener until a deadline or until the test says stop, reads have
//! timeouts, and `finish` joins a thread that is known to end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for each connection before giving up.
const ACCEPT_DEADLINE: Duration = Duration::from_secs(20);
/// How long it waits for a request's bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// The request head: request line and headers, CRLF-separated.
    Request(String),
    /// The connection failed before a whole request arrived (e.g. a refused
    /// certificate ended the TLS handshake); the text says why.
    Failed(String),
}

/// The server's thread and how to stop it.
pub struct Scripted {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Seen>>,
}

impl Scripted {
    /// Stops waiting for more connections and returns what each one saw.
    pub fn finish(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("scripted server panicked")
    }

    /// The request lines seen (connections that failed are left out).
    pub fn requests(self) -> Vec<String> {
        self.heads()
            .iter()
            .map(|head| head.lines().next().unwrap_or_default().to_string())
            .collect()
    }

    /// The request heads seen (connections that failed are left out).
    pub fn heads(self) -> Vec<String> {
        self.finish()
            .into_iter()
            .filter_map(|s| match s {
                Seen::Request(head) => Some(head),
                Seen::Failed(_) => None,
            })
            .collect()
    }
}

/// A plain HTTP server on 127.0.0.1 answering with `responses`, one per connection.
pub fn serve(responses: Vec<Vec<u8>>) -> Scripted {
    serve_on(TcpListener::bind("127.0.0.1:0").unwrap(), responses, None)
}

/// TLS configuration for [`serve_on`] (a rustls server config), when HTTPS is built.
#[cfg(feature = "https")]
pub type Tls = Option<Arc<rustls::ServerConfig>>;
/// Without HTTPS there is no TLS to configure.
#[cfg(not(feature = "https"))]
pub type Tls = Option<()>;

/// Serves `responses` on `listener`, through TLS when `tls` is given.
pub fn serve_on(listener: TcpListener, responses: Vec<Vec<u8>>, tls: Tls) -> Scripted {
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for response in responses {
            let Some(stream) = accept(&listener, &stopped) else {
                break;
            };
            stream.set_nonblocking(false).unwrap();
            stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(READ_TIMEOUT)).unwrap();
            seen.push(exchange(stream, &response, &tls));
        }
        seen
    });
    Scripted { addr, stop, thread }
}

/// The next connection, or `None` once stopped or past the deadline.
fn accept(listener: &TcpListener, stop: &AtomicBool) -> Option<TcpStream> {
    let deadline = Instant::now() + ACCEPT_DEADLINE;
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Some(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accept: {e}"),
        }
        if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
            return None;
        }
        // Polling a non-blocking accept until a bounded deadline, not synchronising.
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(feature = "https")]
fn exchange(stream: TcpStream, response: &[u8], tls: &Tls) -> Seen {
    match tls {
        Some(config) => {
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let seen = talk(&mut tls, response);
            tls.conn.send_close_notify();
            let _ = tls.flush();
            seen
        }
        None => talk(&mut { stream }, response),
    }
}

#[cfg(not(feature = "https"))]
fn exchange(mut stream: TcpStream, response: &[u8], _tls: &Tls) -> Seen {
    talk(&mut stream, response)
}

/// Reads one request head, answers with `response`.
fn talk(stream: &mut (impl Read + Write), response: &[u8]) -> Seen {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return Seen::Failed("closed before a whole request".into()),
            Ok(n) => request.extend_from_slice(&buf[..n]),
            Err(e) => return Seen::Failed(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&request).into_owned();
    let _ = stream.write_all(response); // the client may hang up first (size limits)
    let _ = stream.flush();
    Seen::Request(head)
}

/// A response with a `Content-Length` body.
pub fn response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A tracker body with compact IPv4 `peers`.
pub fn tracker_body(peers: &[SocketAddr]) -> Vec<u8> {
    let mut compact = Vec::new();
    let mut compact6 = Vec::new();
    for peer in peers {
        match peer {
            SocketAddr::V4(v4) => {
                compact.extend_from_slice(&v4.ip().octets());
                compact.extend_from_slice(&v4.port().to_be_bytes());
            }
            SocketAddr::V6(v6) => {
                compact6.extend_from_slice(&v6.ip().octets());
                compact6.extend_from_slice(&v6.port().to_be_bytes());
            }
        }
    }
    let mut body = format!("d8:intervali1800e5:peers{}:", compact.len()).into_bytes();
    body.extend_from_slice(&compact);
    body.extend_from_slice(format!("6:peers6{}:", compact6.len()).as_bytes());
    body.extend_from_slice(&compact6);
    body.push(b'e');
    body
}
