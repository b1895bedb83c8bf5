//! `bitloop demo`: one seeder and three leechers on one loop, over loopback; it
//! needs no network and no other program, verifies every copy, and cleans up.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use bitloop::client::demo::{run as run_demo, DemoOptions};
use bitloop::swarm::parse_rate;

use super::download::rate;

/// `bitloop demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Payload size (K, M, G: ×1024, ×1024², ×1024³).
    #[arg(long, default_value = "64M", value_parser = size)]
    size: u64,
    /// How many leechers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=16))]
    leechers: u64,
    /// Upload limit of each member of the swarm, bytes per second (K, M: ×1024,
    /// ×1024²): a swarm slow enough to watch.
    #[arg(long, value_parser = rate)]
    max_upload_rate: Option<u64>,
}

fn size(text: &str) -> Result<u64, String> {
    let bytes = parse_rate(text).map_err(|e| e.to_string())?;
    if bytes == 0 {
        return Err("the payload must not be empty".into());
    }
    Ok(bytes)
}

pub fn run(args: DemoArgs) -> Result<ExitCode, String> {
    let terminal = std::io::stderr().is_terminal();
    let options = DemoOptions {
        size: args.size,
        leechers: args.leechers as usize,
        upload_rate: args.max_upload_rate,
        interval: Duration::from_millis(if terminal { 200 } else { 1000 }),
    };
    let hello = || {
        println!(
            "bitloop demo: one seeder and {} leechers, {:.1} MiB, on one event loop in one thread, over loopback",
            options.leechers,
            options.size as f64 / (1 << 20) as f64
        );
    };
    let mut drawn = 0;
    let demo = run_demo(&options, hello, |lines| {
        let mut err = std::io::stderr().lock();
        if terminal && drawn > 0 {
            let _ = write!(err, "\x1b[{drawn}F");
        }
        for line in lines {
            let _ = writeln!(err, "{}{line}", if terminal { "\x1b[2K" } else { "" });
        }
        drawn = lines.len();
    })?;
    let mut all_good = !demo.interrupted;
    for (name, same, from_seeder, from_leechers) in &demo.copies {
        let mib = |b: &u64| *b as f64 / (1 << 20) as f64;
        println!(
            "{name}: {} ({:.1} MiB from the seeder, {:.1} MiB from other leechers)",
            if *same {
                "copy verified, byte for byte"
            } else {
                "copy NOT complete"
            },
            mib(from_seeder),
            mib(from_leechers)
        );
        all_good &= *same;
    }
    match &demo.report {
        Ok(report) => println!("shutdown: {report}"),
        Err(busy) => {
            println!("shutdown left handles alive: {busy}");
            return Ok(ExitCode::from(70));
        }
    }
    println!(
        "done in {:.2} s; temporary files removed",
        demo.elapsed.as_secs_f64()
    );
    Ok(if demo.interrupted {
        ExitCode::from(130)
    } else if all_good {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
