//! `bitloop download`: fetch torrents into a folder and exit when every piece of
//! each is verified (0), after Ctrl+C (130), with a message when one cannot finish
//! (1), or at once for what cannot be done yet, such as a magnet link (2).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bitloop::client::download::{run_many, DownloadOptions, Outcome};
use bitloop::metainfo::Metainfo;

use super::info::{human_size, read_torrent};

pub struct Args {
    pub torrents: Vec<String>,
    pub output: PathBuf,
    pub port: u16,
    pub peers: Vec<String>,
    pub max_peers: usize,
    pub quiet: bool,
    pub timeout: u64,
}

/// Exit code for a request we understood but cannot carry out yet.
const UNSUPPORTED: u8 = 2;

pub fn run_download(args: Args) -> Result<ExitCode, String> {
    let mut torrents = Vec::new();
    for source in &args.torrents {
        if source.starts_with("magnet:") {
            eprintln!(
                "bitloop: {source}: magnet links need the torrent's metadata from peers, \
                 which bitloop cannot fetch yet (BEP 9); download the .torrent file instead"
            );
            return Ok(ExitCode::from(UNSUPPORTED));
        }
        let torrent = Metainfo::parse(&read_torrent(source)?).map_err(|e| format!("{source}: {e}"))?;
        if torrents
            .iter()
            .any(|t: &Metainfo| t.info_hash == torrent.info_hash)
        {
            return Err(format!("{source}: the same torrent is given twice"));
        }
        torrents.push(torrent);
    }
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
    let summary = run_many(&torrents, options)?;
    if let Err(busy) = &summary.report {
        eprintln!("bitloop: internal error: the loop did not close everything: {busy}");
        return Ok(ExitCode::from(70));
    }
    for (torrent, result) in torrents.iter().zip(&summary.torrents) {
        match &result.outcome {
            Outcome::Completed if !args.quiet => {
                let secs = summary.elapsed.as_secs_f64();
                eprintln!(
                    "done: {} ({}) in {secs:.1} s, every piece verified, saved in {}",
                    torrent.info.name,
                    human_size(torrent.total_length()),
                    args.output.display()
                );
            }
            Outcome::Failed(why) => eprintln!("bitloop: {}: {why}", torrent.info.name),
            _ => {}
        }
    }
    Ok(match summary.outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Interrupted => {
            if !args.quiet {
                eprintln!(
                    "interrupted: {} downloaded this run; run again to resume",
                    human_size(summary.downloaded)
                );
            }
            ExitCode::from(130)
        }
        Outcome::Failed(_) => ExitCode::FAILURE,
    })
}
