//! The command line: arguments (clap), one function per subcommand, exit codes.

mod announce;
mod create;
mod demo;
mod download;
mod info;
mod json;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// bitloop: a small, fast BitTorrent client on one event loop.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a torrent file or magnet link describes.
    Info {
        /// A .torrent file or a magnet: link.
        target: String,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download torrents into a folder; exits when every piece of each is verified.
    Download(download::DownloadArgs),
    /// Seed a torrent from the data in a folder until Ctrl+C.
    Seed(download::SeedArgs),
    /// A whole swarm on one loop: one seeder and three leechers over loopback.
    Demo(demo::DemoArgs),
    /// Ask the torrent's trackers for peers and print what they answer.
    Announce {
        /// A .torrent file.
        torrent: String,
        /// The event to announce.
        #[arg(long, value_enum, default_value = "started")]
        event: EventArg,
        /// The port to tell the trackers we listen on.
        #[arg(long, default_value_t = 6881)]
        port: u16,
        /// Give up on trackers that have not answered after this many seconds.
        #[arg(long, default_value_t = 15)]
        timeout: u64,
        /// Ask for the torrent's figures (seeders, leechers, downloads) instead of peers.
        #[arg(long)]
        scrape: bool,
    },
    /// Make a v1 .torrent for a file or folder.
    Create {
        /// The file or folder to share.
        path: PathBuf,
        /// Tracker announce URL; repeat for more (each becomes its own tier).
        #[arg(long = "tracker", short = 't')]
        trackers: Vec<String>,
        /// Piece length in bytes (default: a power of two giving 1,000-2,000 pieces).
        #[arg(long)]
        piece_length: Option<u64>,
        /// Mark the torrent private (BEP 27): trackers only, no DHT or PEX.
        #[arg(long)]
        private: bool,
        /// A comment stored in the torrent.
        #[arg(long)]
        comment: Option<String>,
        /// Where to write the .torrent file.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EventArg {
    Started,
    Stopped,
    Completed,
    /// A periodic announce without an event.
    None,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that run a loop choose their own exit codes (130 after Ctrl+C,
    // 2 for what is not supported yet); the others succeed or fail.
    let done = |result: Result<(), String>| result.map(|()| ExitCode::SUCCESS);
    let result = match cli.command {
        Command::Download(args) => download::run_download(args),
        Command::Seed(args) => download::run_seed(args),
        Command::Demo(args) => demo::run(args),
        Command::Info { target, json } => done(info::run(&target, json)),
        Command::Announce {
            torrent,
            event,
            port,
            timeout,
            scrape,
        } => {
            let event = match event {
                EventArg::Started => bitloop::tracker::AnnounceEvent::Started,
                EventArg::Stopped => bitloop::tracker::AnnounceEvent::Stopped,
                EventArg::Completed => bitloop::tracker::AnnounceEvent::Completed,
                EventArg::None => bitloop::tracker::AnnounceEvent::None,
            };
            done(announce::run(
                &torrent,
                event,
                port,
                std::time::Duration::from_secs(timeout),
                scrape,
            ))
        }
        Command::Create {
            path,
            trackers,
            piece_length,
            private,
            comment,
            output,
        } => {
            let options = bitloop::metainfo::create::CreateOptions {
                trackers,
                piece_length,
                private,
                comment,
                created_by: Some(format!("bitloop {}", env!("CARGO_PKG_VERSION"))),
                creation_date: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs() as i64),
            };
            done(create::run(&path, &options, &output))
        }
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("bitloop: {message}");
            ExitCode::FAILURE
        }
    }
}
