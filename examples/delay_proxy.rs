//! A delay line for benchmarks: a TCP proxy on bitloop's reactor that holds every
//! byte for D milliseconds in each direction before passing it on.
//!
//! It buffers without limit, on purpose: a real long link also has a long TCP
//! window, and a proxy that pushed back would measure its own buffer instead. With
//! nothing throttling the bytes in between, what decides the throughput is how many
//! requests the client keeps in flight, which is what `benches/links.sh` measures.
//!
//! ```text
//! cargo run --release --example delay_proxy -- --target 127.0.0.1:6881 --delay-ms 100
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:0`). It prints `listening on ADDR`
//! once ready and runs until SIGINT or SIGTERM; then it closes every connection,
//! proves the loop empty and prints what it carried.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitloop::reactor::{Config, Event, HandleId, Handler, Reactor, RunMode};
use slab::Slab;

/// Who owns a handle: the listener, the signal watch, one side of a proxied
/// connection (0: the client who connected to us, 1: the target), or a pair's timer.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    Listener,
    Signals,
    Side(usize, usize),
    Timer(usize),
}

/// Bytes read from one side on their way to the other, each with its release time.
#[derive(Default)]
struct Line {
    chunks: VecDeque<(Instant, Vec<u8>)>,
    /// The side ended its stream: pass the end on at this time, after the bytes.
    eof_at: Option<Instant>,
    eof_passed: bool,
}

impl Line {
    fn next_due(&self) -> Option<Instant> {
        match self.chunks.front() {
            Some((at, _)) => Some(*at),
            None if !self.eof_passed => self.eof_at,
            None => None,
        }
    }
}

/// One proxied connection: both streams, their timer, both directions.
struct Pair {
    sides: [HandleId; 2],
    timer: HandleId,
    /// `lines[i]` carries what side `i` sent to side `1 - i`.
    lines: [Line; 2],
    /// Handles of the pair not yet closed (the pair goes when this reaches 0).
    open: usize,
    closing: bool,
}

struct Proxy {
    target: SocketAddr,
    delay: Duration,
    listener: Option<HandleId>,
    signals: Option<HandleId>,
    pairs: Slab<Pair>,
    carried: [u64; 2],
    accepted: u64,
}

impl Proxy {
    /// A connection came in: connect to the target and pair the two.
    fn accept(&mut self, rx: &mut Reactor<Owner>, stream: HandleId) {
        let key = self.pairs.vacant_key();
        let upstream = match rx.tcp_connect(self.target, Owner::Side(key, 1), Some(Duration::from_secs(10))) {
            Ok(id) => id,
            Err(e) => {
                eprintln!("delay_proxy: cannot connect to {}: {e}", self.target);
                rx.close(stream);
                return;
            }
        };
        let Ok(timer) = rx.timer(Owner::Timer(key)) else {
            rx.close(stream);
            rx.close(upstream);
            return;
        };
        rx.set_owner(stream, Owner::Side(key, 0)).expect("just accepted");
        // No Nagle: a delay line must not add its own delays to small messages.
        let _ = rx.tcp_set_nodelay(stream, true);
        let _ = rx.tcp_set_nodelay(upstream, true);
        self.accepted += 1;
        self.pairs.insert(Pair {
            sides: [stream, upstream],
            timer,
            lines: [Line::default(), Line::default()],
            open: 3,
            closing: false,
        });
    }

    /// Side `side` of pair `key` sent bytes: they leave after the delay.
    fn received(&mut self, rx: &mut Reactor<Owner>, key: usize, side: usize) {
        let Some(pair) = self.pairs.get_mut(key) else {
            return;
        };
        let id = pair.sides[side];
        let Ok(bytes) = rx.tcp_received(id) else { return };
        let bytes = bytes.to_vec();
        let _ = rx.tcp_consume(id, bytes.len());
        self.carried[side] += bytes.len() as u64;
        let line = &mut pair.lines[side];
        let was_idle = line.chunks.is_empty();
        line.chunks.push_back((rx.now() + self.delay, bytes));
        if self.delay.is_zero() {
            self.release(rx, key);
        } else if was_idle {
            // Otherwise the timer is armed for an earlier chunk of this line already.
            self.rearm(rx, key);
        }
    }

    /// Writes out everything that is due on both lines of `key`.
    fn release(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let now = rx.now();
        let Some(pair) = self.pairs.get_mut(key) else {
            return;
        };
        for from in 0..2 {
            let to = pair.sides[1 - from];
            let line = &mut pair.lines[from];
            while line.chunks.front().is_some_and(|(at, _)| *at <= now) {
                let (_, bytes) = line.chunks.pop_front().expect("checked");
                if rx.tcp_write(to, &bytes).is_err() {
                    // The other side is gone: the pair ends.
                    return self.close_pair(rx, key);
                }
            }
            if line.chunks.is_empty() && !line.eof_passed && line.eof_at.is_some_and(|at| at <= now) {
                line.eof_passed = true;
                let _ = rx.tcp_shutdown(to);
            }
        }
        if pair.lines.iter().all(|l| l.eof_passed) {
            // Both ends finished; closing now would cancel bytes still queued, so
            // close once both write queues are empty (`Drained` brings us back).
            let drained = pair.sides.iter().all(|s| rx.tcp_unsent(*s).unwrap_or(0) == 0);
            if drained {
                return self.close_pair(rx, key);
            }
        }
        self.rearm(rx, key);
    }

    /// Arms the pair's timer for the earliest release on either line.
    fn rearm(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let Some(pair) = self.pairs.get(key) else { return };
        let next = pair.lines.iter().filter_map(Line::next_due).min();
        if let Some(at) = next {
            let _ = rx.timer_start(pair.timer, at.saturating_duration_since(rx.now()), None);
        }
    }

    fn ended(&mut self, rx: &mut Reactor<Owner>, key: usize, side: usize) {
        let Some(pair) = self.pairs.get_mut(key) else {
            return;
        };
        pair.lines[side].eof_at = Some(rx.now() + self.delay);
        if self.delay.is_zero() {
            self.release(rx, key);
        } else {
            self.rearm(rx, key);
        }
    }

    fn close_pair(&mut self, rx: &mut Reactor<Owner>, key: usize) {
        let Some(pair) = self.pairs.get_mut(key) else {
            return;
        };
        if pair.closing {
            return;
        }
        pair.closing = true;
        pair.lines = [Line::default(), Line::default()];
        for id in pair.sides {
            rx.close(id);
        }
        rx.close(pair.timer);
    }

    fn handle_closed(&mut self, key: usize) {
        if let Some(pair) = self.pairs.get_mut(key) {
            pair.open -= 1;
            if pair.open == 0 {
                self.pairs.remove(key);
            }
        }
    }
}

impl Handler<Owner> for Proxy {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, _id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            (Owner::Listener, Event::Accepted { stream, .. }) => self.accept(rx, stream),
            (Owner::Signals, Event::Signal(_)) => {
                for id in [self.listener.take(), self.signals.take()].into_iter().flatten() {
                    rx.close(id);
                }
                let keys: Vec<usize> = self.pairs.iter().map(|(k, _)| k).collect();
                for key in keys {
                    self.close_pair(rx, key);
                }
            }
            (Owner::Side(key, side), Event::Readable) => self.received(rx, key, side),
            (Owner::Side(key, side), Event::Eof) => self.ended(rx, key, side),
            (Owner::Side(key, _), Event::Drained) => self.release(rx, key),
            (Owner::Side(key, _), Event::ConnectFailed(_) | Event::Error(_)) => self.close_pair(rx, key),
            (Owner::Timer(key), Event::Timer) => self.release(rx, key),
            (Owner::Side(key, _) | Owner::Timer(key), Event::Closed(_)) => self.handle_closed(key),
            _ => {}
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: delay_proxy --target ADDR --delay-ms N [--listen ADDR]");
    std::process::exit(2);
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut target = None;
    let mut delay_ms = None;
    let mut listen: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--target" => target = Some(value.parse::<SocketAddr>().unwrap_or_else(|_| usage())),
            "--delay-ms" => delay_ms = Some(value.parse::<u64>().unwrap_or_else(|_| usage())),
            "--listen" => listen = value.parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    let (Some(target), Some(delay_ms)) = (target, delay_ms) else {
        usage()
    };

    // What is in flight is limited by the endpoints, not by us (see the top).
    let config = Config {
        write_queue_limit: usize::MAX / 2,
        ..Config::default()
    };
    let mut rx = Reactor::with_config(config)?;
    let listener = rx
        .tcp_listen(listen, Owner::Listener)
        .map_err(std::io::Error::other)?;
    let signals = rx
        .signal_watch(
            &[signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM],
            Owner::Signals,
        )
        .map_err(std::io::Error::other)?;
    let bound = rx.local_addr(listener).map_err(std::io::Error::other)?;
    println!("listening on {bound}");
    let mut proxy = Proxy {
        target,
        delay: Duration::from_millis(delay_ms),
        listener: Some(listener),
        signals: Some(signals),
        pairs: Slab::new(),
        carried: [0; 2],
        accepted: 0,
    };
    rx.run(&mut proxy, RunMode::Default)?;
    rx.close_all_and_drain(&mut proxy)?;
    let report = rx
        .finish()
        .map_err(|busy| std::io::Error::other(busy.to_string()))?;
    eprintln!(
        "delay_proxy: {} connections, {} bytes to the target, {} bytes back; {report}",
        proxy.accepted, proxy.carried[0], proxy.carried[1]
    );
    Ok(())
}
