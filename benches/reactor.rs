//! Reactor benchmarks: timer throughput with 100,000 timers, and loopback TCP
//! ping-pong round trips through the reactor next to the same exchange written
//! directly on mio.
//!
//! Run with `cargo bench --bench reactor`. Each figure is the median of several
//! runs, and the two ping-pong variants alternate run by run, so a noisy machine
//! affects both alike and their ratio stays meaningful.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bitloop::reactor::{Config, Event, HandleId, Handler, Reactor, RunMode};

const TIMERS: usize = 100_000;
const ROUND_TRIPS: usize = 20_000;
const RUNS: usize = 7;
const MESSAGE: [u8; 64] = [0xab; 64];

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    samples[samples.len() / 2]
}

struct Nothing;
impl Handler<u32> for Nothing {
    fn on_event(&mut self, _: &mut Reactor<u32>, _: HandleId, _: u32, _: Event) {}
}

struct CountTimers(usize);
impl Handler<u32> for CountTimers {
    fn on_event(&mut self, _: &mut Reactor<u32>, _: HandleId, _: u32, event: Event) {
        if matches!(event, Event::Timer) {
            self.0 += 1;
        }
    }
}

/// Starts and stops 100,000 timers; returns start+stop pairs per second.
fn timers_start_stop() -> f64 {
    let mut rx: Reactor<u32> = Reactor::with_config(Config {
        manual_clock: true,
        ..Config::default()
    })
    .unwrap();
    let ids: Vec<_> = (0..TIMERS as u32).map(|i| rx.timer(i).unwrap()).collect();
    let started = Instant::now();
    for (i, &id) in ids.iter().enumerate() {
        rx.timer_start(id, Duration::from_micros((i * 7919 % 100_000) as u64), None)
            .unwrap();
    }
    for &id in &ids {
        rx.timer_stop(id).unwrap();
    }
    let rate = TIMERS as f64 / started.elapsed().as_secs_f64();
    rx.close_all_and_drain(&mut Nothing).unwrap();
    rx.finish().unwrap();
    rate
}

/// Arms 100,000 timers over one simulated second and fires them all; returns expiries per second.
fn timers_expiry() -> f64 {
    let mut rx: Reactor<u32> = Reactor::with_config(Config {
        manual_clock: true,
        ..Config::default()
    })
    .unwrap();
    let ids: Vec<_> = (0..TIMERS as u32).map(|i| rx.timer(i).unwrap()).collect();
    for (i, &id) in ids.iter().enumerate() {
        rx.timer_start(id, Duration::from_micros((i * 7919 % 1_000_000) as u64), None)
            .unwrap();
    }
    let mut counter = CountTimers(0);
    let started = Instant::now();
    rx.advance(Duration::from_secs(1));
    rx.run(&mut counter, RunMode::NoWait).unwrap();
    let rate = counter.0 as f64 / started.elapsed().as_secs_f64();
    assert_eq!(counter.0, TIMERS);
    rx.close_all_and_drain(&mut counter).unwrap();
    rx.finish().unwrap();
    rate
}

/// Ping-pong through the reactor: the client sends 64 bytes, the server echoes
/// them, repeated `ROUND_TRIPS` times. Returns round trips per second.
fn reactor_ping_pong() -> f64 {
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Side {
        Listener,
        Server,
        Client,
    }
    struct PingPong {
        round_trips: usize,
        listener: HandleId,
    }
    impl Handler<Side> for PingPong {
        fn on_event(&mut self, rx: &mut Reactor<Side>, id: HandleId, side: Side, event: Event) {
            match (side, event) {
                (Side::Listener, Event::Accepted { stream, .. }) => {
                    rx.set_owner(stream, Side::Server).unwrap();
                    rx.tcp_set_nodelay(stream, true).unwrap();
                }
                (Side::Client, Event::Connected) => {
                    rx.tcp_set_nodelay(id, true).unwrap();
                    rx.tcp_write(id, &MESSAGE).unwrap();
                }
                (Side::Server, Event::Readable) => {
                    let n = rx.tcp_received(id).unwrap().len() / MESSAGE.len() * MESSAGE.len();
                    rx.tcp_consume(id, n).unwrap();
                    for _ in 0..n / MESSAGE.len() {
                        rx.tcp_write(id, &MESSAGE).unwrap();
                    }
                }
                (Side::Client, Event::Readable) => {
                    let n = rx.tcp_received(id).unwrap().len() / MESSAGE.len() * MESSAGE.len();
                    rx.tcp_consume(id, n).unwrap();
                    self.round_trips += n / MESSAGE.len();
                    if self.round_trips >= ROUND_TRIPS {
                        rx.close_all();
                    } else {
                        rx.tcp_write(id, &MESSAGE).unwrap();
                    }
                }
                (Side::Server, Event::Eof) => rx.close(id),
                _ => {}
            }
        }
    }
    let mut rx: Reactor<Side> = Reactor::new().unwrap();
    let listener = rx
        .tcp_listen("127.0.0.1:0".parse().unwrap(), Side::Listener)
        .unwrap();
    let addr = rx.local_addr(listener).unwrap();
    let mut app = PingPong {
        round_trips: 0,
        listener,
    };
    let started = Instant::now();
    rx.tcp_connect(addr, Side::Client, None).unwrap();
    rx.run(&mut app, RunMode::Default).unwrap();
    let rate = app.round_trips as f64 / started.elapsed().as_secs_f64();
    let _ = app.listener;
    rx.close_all_and_drain(&mut app).unwrap();
    rx.finish().unwrap();
    rate
}

/// The same exchange written directly on mio, with the usual hand-rolled state.
fn mio_ping_pong() -> f64 {
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};
    const LISTENER: Token = Token(0);
    const SERVER: Token = Token(1);
    const CLIENT: Token = Token(2);

    fn read_all(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Ok(()),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut listener = TcpListener::bind(addr).unwrap();
    let addr = listener.local_addr().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let started = Instant::now();
    let mut client = TcpStream::connect(addr).unwrap();
    poll.registry()
        .register(&mut client, CLIENT, Interest::READABLE | Interest::WRITABLE)
        .unwrap();
    let mut server: Option<TcpStream> = None;
    let (mut server_buf, mut client_buf) = (Vec::new(), Vec::new());
    let mut connected = false;
    let mut round_trips = 0;
    while round_trips < ROUND_TRIPS {
        poll.poll(&mut events, None).unwrap();
        for event in events.iter() {
            match event.token() {
                LISTENER => {
                    let (mut stream, _) = listener.accept().unwrap();
                    stream.set_nodelay(true).unwrap();
                    poll.registry()
                        .register(&mut stream, SERVER, Interest::READABLE)
                        .unwrap();
                    server = Some(stream);
                }
                SERVER => {
                    let stream = server.as_mut().unwrap();
                    read_all(stream, &mut server_buf).unwrap();
                    let n = server_buf.len() / MESSAGE.len() * MESSAGE.len();
                    for _ in 0..n / MESSAGE.len() {
                        stream.write_all(&MESSAGE).unwrap();
                    }
                    server_buf.drain(..n);
                }
                CLIENT => {
                    if !connected && event.is_writable() {
                        connected = true;
                        client.set_nodelay(true).unwrap();
                        client.write_all(&MESSAGE).unwrap();
                    }
                    if event.is_readable() {
                        read_all(&mut client, &mut client_buf).unwrap();
                        let n = client_buf.len() / MESSAGE.len() * MESSAGE.len();
                        client_buf.drain(..n);
                        round_trips += n / MESSAGE.len();
                        if n > 0 && round_trips < ROUND_TRIPS {
                            client.write_all(&MESSAGE).unwrap();
                        }
                    }
                }
                _ => unreachable!(),
            }
        }
    }
    round_trips as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us too, and a
    // quick smoke run is enough there.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { RUNS };

    let start_stop = median((0..runs).map(|_| timers_start_stop()).collect());
    let expiry = median((0..runs).map(|_| timers_expiry()).collect());
    println!(
        "timers, {TIMERS} at once: start+stop {:.2} M/s, expiry {:.2} M/s",
        start_stop / 1e6,
        expiry / 1e6
    );

    let (mut ours, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(reactor_ping_pong());
        raw.push(mio_ping_pong());
    }
    let (ours, raw) = (median(ours), median(raw));
    println!(
        "tcp ping-pong, 64-byte messages: reactor {:.0} round trips/s, raw mio {:.0} round trips/s, ratio {:.2}",
        ours,
        raw,
        ours / raw
    );
}
