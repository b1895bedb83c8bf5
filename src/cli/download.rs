//! `bitloop download`: fetch a torrent into a folder and exit when every piece is
//! verified (0), after Ctrl+C (130), or with a message when it cannot finish (1).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bitloop::client::download::{run, DownloadOptions, Outcome};
use bitloop::metainfo::Metainfo;

use super::info::{human_size, read_torrent};

pub struct Args {
    pub torrent: String,
    pub output: PathBuf,
    pub port: u16,
    pub peers: Vec<String>,
    pub max_peers: usize,
    pub quiet: bool,
    pub timeout: u64,
}

pub fn run_download(args: Args) -> Result<ExitCode, String> {
    let torrent =
        Metainfo::parse(&read_torrent(&args.torrent)?).map_err(|e| format!("{}: {e}", args.torrent))?;
    let mut options = DownloadOptions::new(args.output.clone());
    options.listen = Some(SocketAddr::from(([0, 0, 0, 0], args.port)));
    options.progress = !args.quiet;
    options.timeout = Duration::from_secs(args.timeout.max(1));
    options.torrent.max_peers = args.max_peers.max(1);
    for peer in &args.peers {
        // Literal addresses only: a name lookup here would block.
        let addr: SocketAddr = peer
            .parse()
            .map_err(|_| format!("--peer {peer}: expected IP:PORT (for example 127.0.0.1:6881)"))?;
        options.peers.push(addr);
    }
    let summary = run(&torrent, options)?;
    if let Err(busy) = &summary.report {
        eprintln!("bitloop: internal error: the loop did not close everything: {busy}");
        return Ok(ExitCode::from(70));
    }
    Ok(match summary.outcome {
        Outcome::Completed => {
            if !args.quiet {
                let secs = summary.elapsed.as_secs_f64();
                eprintln!(
                    "done: {} ({}) in {secs:.1} s, every piece verified, saved in {}",
                    torrent.info.name,
                    human_size(torrent.total_length()),
                    args.output.display()
                );
            }
            ExitCode::SUCCESS
        }
        Outcome::Interrupted => {
            if !args.quiet {
                eprintln!(
                    "interrupted: {} downloaded this run; run again to resume",
                    human_size(summary.downloaded)
                );
            }
            ExitCode::from(130)
        }
        Outcome::Failed(why) => {
            eprintln!("bitloop: {}: {why}", torrent.info.name);
            ExitCode::FAILURE
        }
    })
}
