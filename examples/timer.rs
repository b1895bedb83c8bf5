//! A repeating timer that closes itself after five ticks.
//!
//! Run with `cargo run --example timer` (add `RUST_LOG=bitloop::reactor=trace`
//! to watch every phase and handle transition).

use std::time::{Duration, Instant};

use bitloop::reactor::{Event, HandleId, Handler, Reactor, RunMode};

/// Our owner tag: which of our things a handle belongs to. One timer, one tag.
#[derive(Clone, Copy, Debug)]
struct Ticker;

/// The application state. The loop lends it to us for one event at a time.
struct App {
    ticks: u32,
    started: Instant,
}

impl Handler<Ticker> for App {
    fn on_event(&mut self, reactor: &mut Reactor<Ticker>, id: HandleId, _owner: Ticker, event: Event) {
        match event {
            // The timer fired: count it, and close it after the fifth tick.
            Event::Timer => {
                self.ticks += 1;
                println!("tick {} at {:?}", self.ticks, self.started.elapsed());
                if self.ticks == 5 {
                    reactor.close(id);
                }
            }
            // The closing phase freed the timer; its id names nothing any more.
            Event::Closed(_) => println!("timer {id} closed"),
            // Timers get no other events.
            _ => {}
        }
    }
}

fn main() -> std::io::Result<()> {
    env_logger::init();
    let mut reactor = Reactor::new()?;
    let mut app = App {
        ticks: 0,
        started: Instant::now(),
    };

    let timer = reactor.timer(Ticker).expect("a new loop accepts handles");
    let period = Duration::from_millis(100);
    reactor
        .timer_start(timer, period, Some(period))
        .expect("the timer is open");

    // Runs until nothing is active: here, until the timer closed itself.
    reactor.run(&mut app, RunMode::Default)?;

    // Close whatever is left (nothing) and prove the loop is empty.
    reactor.close_all_and_drain(&mut app)?;
    match reactor.finish() {
        Ok(report) => println!("{report}"),
        Err(busy) => panic!("{busy}"),
    }
    Ok(())
}
