//! An HTTP tracker on a thread that records the `event` of each of bitloop's
//! announces (`started`, `stopped`, …) and answers with no peers: enough to see
//! that a torrent that fails still says goodbye. Its thread ends when dropped.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::bounded::join_within;

pub struct EventTracker {
    pub url: String,
    events: Receiver<String>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventTracker {
    pub fn start() -> EventTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/announce", listener.local_addr().unwrap());
        let (tx, events) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5)); // polling, so the thread can end
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut request = Vec::new();
                let mut buf = [0u8; 2048];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                if text.contains("peer_id=-BL0001-") {
                    let event = text
                        .split(['&', ' ', '?'])
                        .find_map(|p| p.strip_prefix("event="))
                        .unwrap_or("")
                        .to_string();
                    let _ = tx.send(event);
                }
                let body = b"d8:intervali1800e5:peers0:e";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        EventTracker {
            url,
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Every event recorded so far, in order ("" for a periodic announce).
    pub fn events(&self) -> Vec<String> {
        self.events.try_iter().collect()
    }
}

impl Drop for EventTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if !std::thread::panicking() {
                join_within(thread, Duration::from_secs(10), "the event tracker");
            }
        }
    }
}
