//! A small real HTTP tracker for tests, on 127.0.0.1 and ::1 at the same port,
//! because Debian's opentracker is built IPv4-only ("V4 Tracker is V4 only!").
//!
//! It keeps a swarm per info hash: each announce records the announcer's source IP
//! with its `port` parameter (removed on `event=stopped`, which is answered with no
//! peers, as opentracker does) and answers with the other members, IPv4 ones as compact `peers` and IPv6 ones as `peers6` (BEP 7),
//! whichever family the announce came over. Every wait is bounded: accepts poll a
//! non-blocking listener until the tracker is dropped, reads have timeouts.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

type Swarms = Arc<Mutex<HashMap<[u8; 20], Vec<SocketAddr>>>>;

/// The running tracker; stopped and joined when dropped.
pub struct MiniTracker {
    pub port: u16,
    swarms: Swarms,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl MiniTracker {
    /// Listens on 127.0.0.1:P and [::1]:P for a free P.
    pub fn start() -> MiniTracker {
        let (v4, v6) = (0..50)
            .find_map(|_| {
                let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
                let port = v4.local_addr().unwrap().port();
                TcpListener::bind(("::1", port)).ok().map(|v6| (v4, v6))
            })
            .expect("no port free on both 127.0.0.1 and ::1 (is IPv6 up on loopback?)");
        let port = v4.local_addr().unwrap().port();
        let swarms: Swarms = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [v4, v6]
            .into_iter()
            .map(|listener| {
                let (swarms, stop) = (swarms.clone(), stop.clone());
                std::thread::spawn(move || serve(listener, &swarms, &stop))
            })
            .collect();
        MiniTracker {
            port,
            swarms,
            stop,
            threads,
        }
    }

    /// The announce URL over IPv4.
    pub fn url_v4(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// The announce URL over IPv6.
    pub fn url_v6(&self) -> String {
        format!("http://[::1]:{}/announce", self.port)
    }

    /// Adds members to a swarm as if they had announced (dead peers, for tests
    /// of what a client does with them); later announcers are listed after them.
    pub fn add_peers(&self, info_hash: [u8; 20], peers: &[SocketAddr]) {
        self.swarms
            .lock()
            .unwrap()
            .entry(info_hash)
            .or_default()
            .extend_from_slice(peers);
    }

    /// The members of a swarm.
    pub fn peers(&self, info_hash: [u8; 20]) -> Vec<SocketAddr> {
        self.swarms
            .lock()
            .unwrap()
            .get(&info_hash)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for MiniTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, swarms: &Swarms, stop: &AtomicBool) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, from)) => answer(stream, from.ip(), swarms),
            // Polling a non-blocking accept until the tracker is dropped.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("mini tracker accept: {e}"),
        }
    }
}

fn answer(mut stream: TcpStream, from: IpAddr, swarms: &Swarms) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let query = line
        .split(' ')
        .nth(1)
        .and_then(|target| target.split_once('?'))
        .map_or("", |(_, q)| q)
        .to_string();
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(unescape)
    };
    let body = match (param("info_hash"), param("port")) {
        (Some(hash), Some(port)) if hash.len() == 20 => {
            let hash: [u8; 20] = hash.try_into().unwrap();
            let port: u16 = String::from_utf8_lossy(&port).parse().unwrap_or(0);
            let me = SocketAddr::new(from, port);
            let mut swarms = swarms.lock().unwrap();
            let swarm = swarms.entry(hash).or_default();
            swarm.retain(|p| *p != me);
            // A leaving peer gets no peers back, as from opentracker.
            if param("event").as_deref() == Some(b"stopped") {
                compact([].iter())
            } else {
                swarm.push(me);
                compact(swarm.iter().filter(|p| **p != me))
            }
        }
        _ => b"d14:failure reason17:bad announce URLe".to_vec(),
    };
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let _ = stream.write_all(&response);
}

fn compact<'a>(peers: impl Iterator<Item = &'a SocketAddr>) -> Vec<u8> {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for peer in peers {
        match peer {
            SocketAddr::V4(p) => {
                v4.extend_from_slice(&p.ip().octets());
                v4.extend_from_slice(&p.port().to_be_bytes());
            }
            SocketAddr::V6(p) => {
                v6.extend_from_slice(&p.ip().octets());
                v6.extend_from_slice(&p.port().to_be_bytes());
            }
        }
    }
    let mut body = format!("d8:intervali30e5:peers{}:", v4.len()).into_bytes();
    body.extend_from_slice(&v4);
    body.extend_from_slice(format!("6:peers6{}:", v6.len()).as_bytes());
    body.extend_from_slice(&v6);
    body.push(b'e');
    body
}

/// Percent-decoding of a query value (`+` is left alone: trackers get `%20`).
fn unescape(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push(high << 4 | low);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}
