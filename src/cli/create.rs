//! `bitloop create`: hash a file or folder into a .torrent, with progress on a terminal.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use bitloop::metainfo::create::{create_torrent, CreateOptions};
use bitloop::metainfo::Metainfo;

use super::info::human_size;

/// How often the progress line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

pub fn run(source: &Path, options: &CreateOptions, output: &Path) -> Result<(), String> {
    let terminal = std::io::stderr().is_terminal();
    let mut last_draw = Instant::now() - REDRAW;
    let mut progress = |done: u64, total: u64| {
        if terminal && (last_draw.elapsed() >= REDRAW || done == total) {
            last_draw = Instant::now();
            let percent = (done * 100).checked_div(total).unwrap_or(100);
            eprint!(
                "\rhashing: {percent:3}% ({} of {})   ",
                human_size(done),
                human_size(total)
            );
            let _ = std::io::stderr().flush();
        }
    };
    let bytes = create_torrent(source, options, &mut progress).map_err(|e| e.to_string())?;
    if terminal {
        eprintln!();
    }
    // Parse what we wrote: the same checks any client will apply, and the info hash to show.
    let torrent =
        Metainfo::parse(&bytes).map_err(|e| format!("internal error, created torrent is invalid: {e}"))?;
    std::fs::write(output, &bytes).map_err(|e| format!("{}: {e}", output.display()))?;
    println!(
        "created {}: {} ({} in {} pieces of {}), info hash {}",
        output.display(),
        torrent.info.name,
        human_size(torrent.total_length()),
        torrent.info.pieces.len(),
        human_size(torrent.info.piece_length),
        torrent.info_hash
    );
    Ok(())
}
