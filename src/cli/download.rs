//! `bitloop download` and `bitloop seed`.
//!
//! `download` fetches torrents into a folder and exits when every piece of each is
//! verified (0), after Ctrl+C (130), with a message when one cannot finish (1), or
//! at once for what cannot be done yet, such as a magnet link (2). With
//! `--seed-ratio` or `--seed-time` it keeps seeding after completion.
//! `seed` checks the data in a folder and serves it until Ctrl+C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use bitloop::client::download::{run_many, DownloadOptions, Outcome, RunSummary};
use bitloop::metainfo::Metainfo;
use bitloop::swarm::parse_rate;

use super::info::{human_size, read_torrent};
use super::json;

/// Exit code for a request we understood but cannot carry out yet.
const UNSUPPORTED: u8 = 2;

/// What `download` and `seed` share: peers, the port, limits, output.
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// Port to listen on for incoming peers (0 picks one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// A peer to connect to, as IP:PORT (repeatable).
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Most peer connections at once, per torrent.
    #[arg(long, default_value_t = 50)]
    max_peers: usize,
    /// Most peer connections at once across all torrents, incoming ones waiting for
    /// their handshake included (default: what the open-file limit affords, at most 500).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Upload limit across all torrents, bytes per second (K, M: ×1024, ×1024²).
    #[arg(long, value_parser = rate)]
    max_upload_rate: Option<u64>,
    /// Download limit across all torrents, bytes per second (K, M: ×1024, ×1024²).
    #[arg(long, value_parser = rate)]
    max_download_rate: Option<u64>,
    /// Print nothing but errors.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// At the end, print a JSON summary on stdout: each torrent's outcome and
    /// figures, and what each peer gave and took.
    #[arg(long)]
    json: bool,
}

/// `bitloop download`.
#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// .torrent files (several download at once, through one port).
    #[arg(required = true)]
    torrents: Vec<String>,
    /// The folder to save into.
    #[arg(short = 'o', long = "output", default_value = ".")]
    output: PathBuf,
    #[command(flatten)]
    peer: PeerArgs,
    /// Give up on a torrent when no data arrives for it for this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// After completion, seed until the upload is this many times the torrent's size.
    #[arg(long)]
    seed_ratio: Option<f64>,
    /// After completion, seed for this long (for example 30m, 2h).
    #[arg(long, value_parser = humantime::parse_duration)]
    seed_time: Option<Duration>,
    /// Allocate the files at start, so a full disk fails then and not halfway.
    #[arg(long)]
    preallocate: bool,
}

/// `bitloop seed`.
#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file.
    torrent: String,
    /// The folder that holds the torrent's file or folder (as `-o` does for download).
    #[arg(long, short = 'd', default_value = ".")]
    data: PathBuf,
    #[command(flatten)]
    peer: PeerArgs,
}

/// A rate on the command line: bytes per second, K and M meaning ×1024 and ×1024².
pub(super) fn rate(text: &str) -> Result<u64, String> {
    parse_rate(text).map_err(|e| e.to_string())
}

fn options(output: PathBuf, peer: &PeerArgs) -> Result<DownloadOptions, String> {
    let mut options = DownloadOptions::new(output);
    options.listen = Some(SocketAddr::from(([0, 0, 0, 0], peer.port)));
    options.progress = !peer.quiet;
    options.torrent.max_peers = peer.max_peers.max(1);
    options.max_connections = peer.max_connections.map(|n| n.max(1));
    options.upload_rate = peer.max_upload_rate;
    options.download_rate = peer.max_download_rate;
    for text in &peer.peers {
        // Literal addresses only: a name lookup here would block.
        let addr: SocketAddr = text
            .parse()
            .map_err(|_| format!("--peer {text}: expected IP:PORT (for example 127.0.0.1:6881)"))?;
        options.peers.push(addr);
    }
    Ok(options)
}

/// Reads each torrent; `Err(code)` for a magnet link, which cannot be done yet.
fn torrents(sources: &[String]) -> Result<Result<Vec<Metainfo>, ExitCode>, String> {
    let mut torrents: Vec<Metainfo> = Vec::new();
    for source in sources {
        if source.starts_with("magnet:") {
            eprintln!(
                "bitloop: {source}: magnet links need the torrent's metadata from peers, \
                 which bitloop cannot fetch yet (BEP 9); download the .torrent file instead"
            );
            return Ok(Err(ExitCode::from(UNSUPPORTED)));
        }
        let torrent = Metainfo::parse(&read_torrent(source)?).map_err(|e| format!("{source}: {e}"))?;
        if torrents.iter().any(|t| t.info_hash == torrent.info_hash) {
            return Err(format!("{source}: the same torrent is given twice"));
        }
        torrents.push(torrent);
    }
    Ok(Ok(torrents))
}

pub fn run_download(args: DownloadArgs) -> Result<ExitCode, String> {
    let torrents = match torrents(&args.torrents)? {
        Ok(torrents) => torrents,
        Err(code) => return Ok(code),
    };
    let mut options = options(args.output.clone(), &args.peer)?;
    options.timeout = Duration::from_secs(args.timeout.max(1));
    options.seed_ratio = args.seed_ratio;
    options.seed_time = args.seed_time;
    options.preallocate = args.preallocate;
    let summary = run_many(&torrents, options)?;
    if args.peer.json {
        println!("{}", summary_json(&summary, &torrents));
    }
    Ok(finish(
        &summary,
        &torrents,
        args.peer.quiet,
        |name, size, secs| {
            eprintln!(
                "done: {name} ({size}) in {secs:.1} s, every piece verified, saved in {}",
                args.output.display()
            )
        },
    ))
}

pub fn run_seed(args: SeedArgs) -> Result<ExitCode, String> {
    let torrents = match torrents(std::slice::from_ref(&args.torrent))? {
        Ok(torrents) => torrents,
        Err(code) => return Ok(code),
    };
    let mut options = options(args.data.clone(), &args.peer)?;
    options.seed = true;
    options.require_complete = true;
    let summary = run_many(&torrents, options)?;
    if args.peer.json {
        println!("{}", summary_json(&summary, &torrents));
    }
    let uploaded = summary.torrents.iter().map(|t| t.stats.uploaded).sum::<u64>();
    let code = finish(&summary, &torrents, true, |_, _, _| {});
    if !args.peer.quiet && !matches!(summary.outcome, Outcome::Failed(_)) {
        eprintln!(
            "seeded {} to {} peers",
            human_size(uploaded),
            summary.peers.values().filter(|p| p.uploaded > 0).count()
        );
    }
    Ok(code)
}

/// Prints what became of each torrent and picks the exit code.
fn finish(
    summary: &RunSummary,
    torrents: &[Metainfo],
    quiet: bool,
    done: impl Fn(&str, String, f64),
) -> ExitCode {
    if let Err(busy) = &summary.report {
        eprintln!("bitloop: internal error: the loop did not close everything: {busy}");
        return ExitCode::from(70);
    }
    for (torrent, result) in torrents.iter().zip(&summary.torrents) {
        match &result.outcome {
            Outcome::Completed if !quiet => done(
                &torrent.info.name,
                human_size(torrent.total_length()),
                summary.elapsed.as_secs_f64(),
            ),
            Outcome::Failed(why) => eprintln!("bitloop: {}: {why}", torrent.info.name),
            _ => {}
        }
    }
    match summary.outcome {
        Outcome::Completed => ExitCode::SUCCESS,
        Outcome::Interrupted => {
            if !quiet {
                eprintln!(
                    "interrupted: {} downloaded this run; run again to resume",
                    human_size(summary.downloaded)
                );
            }
            ExitCode::from(130)
        }
        Outcome::Failed(_) => ExitCode::FAILURE,
    }
}

/// The run as one JSON object, for scripts and tests.
fn summary_json(summary: &RunSummary, torrents: &[Metainfo]) -> String {
    use std::fmt::Write;
    let mut out = String::from("{\"outcome\":");
    json::string(&mut out, outcome_name(&summary.outcome));
    let _ = write!(
        out,
        ",\"elapsed\":{:.3},\"peer_id\":",
        summary.elapsed.as_secs_f64()
    );
    json::string(&mut out, &String::from_utf8_lossy(&summary.peer_id.0));
    out.push_str(",\"torrents\":[");
    for (i, (torrent, result)) in torrents.iter().zip(&summary.torrents).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        json::string(&mut out, &torrent.info.name);
        out.push_str(",\"info_hash\":");
        json::string(&mut out, &torrent.info_hash.to_hex());
        out.push_str(",\"outcome\":");
        json::string(&mut out, outcome_name(&result.outcome));
        if let Outcome::Failed(why) = &result.outcome {
            out.push_str(",\"error\":");
            json::string(&mut out, why);
        }
        let s = &result.stats;
        let store = result.store.unwrap_or_default();
        let _ = write!(
            out,
            ",\"pieces\":{},\"downloaded\":{},\"uploaded\":{},\"wasted\":{},\"read_back\":{},\"hashed_in_order\":{},\"violations\":{}}}",
            result.pieces.len(),
            s.downloaded,
            s.uploaded,
            s.wasted,
            store.bytes_read_back,
            store.bytes_hashed_in_order,
            s.violations
        );
    }
    out.push_str("],\"peers\":[");
    let mut peers: Vec<_> = summary.peers.iter().collect();
    peers.sort_by_key(|(id, _)| id.0);
    for (i, (id, tally)) in peers.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"peer_id\":");
        json::string(&mut out, &String::from_utf8_lossy(&id.0));
        out.push_str(",\"addr\":");
        json::string(&mut out, &tally.addr.map(|a| a.to_string()).unwrap_or_default());
        let _ = write!(
            out,
            ",\"downloaded\":{},\"uploaded\":{}}}",
            tally.downloaded, tally.uploaded
        );
    }
    out.push_str("]}");
    out
}

fn outcome_name(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted",
        Outcome::Failed(_) => "failed",
    }
}
