//! A TCP echo server and a client that talks to it, on one loop.
//!
//! The client connects, sends three lines, shuts its write side and waits for
//! the echo to end; the server echoes what it reads and shuts down its side when
//! the client's ends. Then everything closes and the loop proves it is empty.
//!
//! Run with `cargo run --example tcp_echo`.

use std::net::SocketAddr;
use std::time::Duration;

use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};

/// Who owns a handle. Accepted streams start owned by the listener and are
/// handed to `Server` with `set_owner`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    Listener,
    Server,
    Client,
}

#[derive(Default)]
struct Echo {
    listener: Option<HandleId>,
    echoed: Vec<u8>,
}

const MESSAGE: &[u8] = b"one\ntwo\nthree\n";

impl Handler<Owner> for Echo {
    fn on_event(&mut self, reactor: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        match (owner, event) {
            // A client connected: the new stream becomes the server's.
            (Owner::Listener, Event::Accepted { stream, peer }) => {
                println!("server: accepted {peer}");
                reactor.set_owner(stream, Owner::Server).expect("just accepted");
            }
            // Bytes arrived at the server: send them back and mark them used.
            (Owner::Server, Event::Readable) => {
                let data = reactor.tcp_received(id).expect("open").to_vec();
                reactor.tcp_consume(id, data.len()).expect("open");
                if let Err(e) = reactor.tcp_write(id, &data) {
                    println!("server: write failed: {e}");
                }
            }
            // The client finished sending: shut our side once the echo is flushed.
            // Closing now would cancel echo bytes still queued, so close only if
            // none are; otherwise `Drained` tells us when they are out.
            (Owner::Server, Event::Eof) => {
                reactor.tcp_shutdown(id).expect("open");
                if reactor.tcp_unsent(id).expect("open") == 0 {
                    reactor.close(id);
                }
            }
            (Owner::Server, Event::Drained) => reactor.close(id),
            // The client's connect completed.
            (Owner::Client, Event::Connected) => println!("client: connected"),
            // The echo arrived (maybe in pieces): collect it.
            (Owner::Client, Event::Readable) => {
                let data = reactor.tcp_received(id).expect("open").to_vec();
                reactor.tcp_consume(id, data.len()).expect("open");
                self.echoed.extend_from_slice(&data);
            }
            // The server finished: we have everything. Close the client and the
            // listener; with nothing active, `run` returns.
            (Owner::Client, Event::Eof) => {
                println!("client: got {:?}", String::from_utf8_lossy(&self.echoed));
                reactor.close(id);
                if let Some(listener) = self.listener {
                    reactor.close(listener);
                }
            }
            (Owner::Client, Event::ConnectFailed(e)) => println!("client: connect failed: {e}"),
            (_, Event::Closed(closed)) => println!("{owner:?}: {} {id} closed", closed.kind.name()),
            (_, other) => println!("{owner:?}: {other:?}"),
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut reactor = Reactor::new()?;
    let mut echo = Echo::default();

    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let listener = reactor.tcp_listen(any_port, Owner::Listener).expect("bind");
    let addr = reactor.local_addr(listener).expect("bound");
    echo.listener = Some(listener);
    println!("server: listening on {addr}");

    // Writes made while connecting are queued and flushed once connected.
    let client = reactor
        .tcp_connect(addr, Owner::Client, Some(Duration::from_secs(5)))
        .expect("connect");
    reactor.tcp_write(client, MESSAGE).expect("queued");
    reactor.tcp_shutdown(client).expect("open");

    reactor.run(&mut echo, RunMode::Default)?;
    assert_eq!(echo.echoed, MESSAGE);

    reactor.close_all_and_drain(&mut echo)?;
    match reactor.finish() {
        Ok(report) => println!("{report}"),
        Err(busy) => panic!("{busy}"),
    }
    Ok(())
}
