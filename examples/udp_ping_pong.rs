//! Two UDP sockets on one loop playing ping-pong five times.
//!
//! Run with `cargo run --example udp_ping_pong`.

use std::net::SocketAddr;

use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Player {
    Ping,
    Pong,
}

struct Game {
    rallies: u32,
    sockets: Vec<HandleId>,
}

const RALLIES: u32 = 5;

impl Handler<Player> for Game {
    fn on_event(&mut self, reactor: &mut Reactor<Player>, id: HandleId, player: Player, event: Event) {
        match event {
            // Datagrams are waiting: read until there are none left.
            Event::Readable => {
                let mut buf = [0u8; 64];
                while let Ok(Some((n, from))) = reactor.udp_recv_from(id, &mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    println!("{player:?} got {text:?} from {from}");
                    if player == Player::Ping {
                        self.rallies += 1;
                    }
                    if self.rallies == RALLIES {
                        // Game over: close both sockets; `run` returns once they are gone.
                        for &socket in &self.sockets {
                            reactor.close(socket);
                        }
                        return;
                    }
                    let reply: &[u8] = if player == Player::Ping { b"ping" } else { b"pong" };
                    reactor.udp_send_to(id, reply, from).expect("socket is open");
                }
            }
            Event::Closed(_) => println!("{player:?} socket {id} closed"),
            _ => {}
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut reactor = Reactor::new()?;
    let any_port: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let ping = reactor.udp_bind(any_port, Player::Ping).expect("bind");
    let pong = reactor.udp_bind(any_port, Player::Pong).expect("bind");
    let pong_addr = reactor.local_addr(pong).expect("bound");
    let mut game = Game {
        rallies: 0,
        sockets: vec![ping, pong],
    };

    // Serve: the first ping starts the rally.
    reactor.udp_send_to(ping, b"ping", pong_addr).expect("open");
    reactor.run(&mut game, RunMode::Default)?;
    println!("{} rallies played", game.rallies);

    reactor.close_all_and_drain(&mut game)?;
    match reactor.finish() {
        Ok(report) => println!("{report}"),
        Err(busy) => panic!("{busy}"),
    }
    Ok(())
}
