//! `bitloop info`: what a torrent file (a path or an `http(s)://` URL) or magnet link
//! describes, as text or JSON.

use std::fmt::Write;
use std::io::Read;

use bitloop::metainfo::{Magnet, Metainfo, MAX_TORRENT_BYTES};

use super::json;

pub fn run(target: &str, as_json: bool) -> Result<(), String> {
    if target.starts_with("magnet:") || target.starts_with("MAGNET:") {
        let magnet = Magnet::parse(target).map_err(|e| e.to_string())?;
        print!(
            "{}",
            if as_json {
                magnet_json(&magnet)
            } else {
                magnet_text(&magnet)
            }
        );
        return Ok(());
    }
    let bytes = read_torrent(target)?;
    let torrent = Metainfo::parse(&bytes).map_err(|e| format!("{target}: {e}"))?;
    print!(
        "{}",
        if as_json {
            torrent_json(&torrent)
        } else {
            torrent_text(&torrent)
        }
    );
    Ok(())
}

/// Whether `target` names a torrent by URL rather than a file.
pub fn is_url(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Reads a torrent file, refusing an oversized one before reading it. An `http://`
/// or `https://` URL is fetched instead (redirects, the same limit, TLS with the
/// system's roots or `SSL_CERT_FILE`).
pub fn read_torrent(path: &str) -> Result<Vec<u8>, String> {
    if is_url(path) {
        return bitloop::client::trackers::fetch_url(path, &bitloop::client::TrackerConfig::default());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let size = file.metadata().map_err(|e| format!("{path}: {e}"))?.len();
    if size > MAX_TORRENT_BYTES {
        return Err(format!(
            "{path}: {size} bytes is too large for a torrent (limit {MAX_TORRENT_BYTES})"
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_TORRENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(bytes)
}

/// 1536 → "1.5 KiB".
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn torrent_text(t: &Metainfo) -> String {
    let mut out = String::new();
    let info = &t.info;
    let _ = writeln!(out, "name:       {}", info.name);
    let _ = writeln!(out, "info hash:  {}", t.info_hash);
    let _ = writeln!(
        out,
        "size:       {} ({} bytes)",
        human_size(t.total_length()),
        t.total_length()
    );
    let _ = writeln!(
        out,
        "pieces:     {} x {}",
        info.pieces.len(),
        human_size(info.piece_length)
    );
    let _ = writeln!(out, "private:    {}", if info.private { "yes" } else { "no" });
    if let Some(comment) = &t.comment {
        let _ = writeln!(out, "comment:    {comment}");
    }
    if let Some(created_by) = &t.created_by {
        let _ = writeln!(out, "created by: {created_by}");
    }
    let _ = writeln!(out, "files ({}):", info.files.len());
    for file in &info.files {
        let _ = writeln!(out, "  {}  ({})", file.path.display(), human_size(file.length));
    }
    if t.trackers.is_empty() {
        let _ = writeln!(out, "trackers:   none");
    } else {
        let _ = writeln!(out, "trackers:");
        for (i, tier) in t.trackers.iter().enumerate() {
            let _ = writeln!(out, "  tier {}: {}", i + 1, tier.join(", "));
        }
    }
    out
}

fn torrent_json(t: &Metainfo) -> String {
    let mut out = String::from("{\"info_hash\":");
    json::string(&mut out, &t.info_hash.to_hex());
    out.push_str(",\"name\":");
    json::string(&mut out, &t.info.name);
    let _ = write!(
        out,
        ",\"total_length\":{},\"piece_length\":{},\"piece_count\":{},\"private\":{},\"files\":[",
        t.total_length(),
        t.info.piece_length,
        t.info.pieces.len(),
        t.info.private
    );
    for (i, file) in t.info.files.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"path\":");
        let components: Vec<String> = file
            .path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        json::strings(&mut out, components.iter().map(String::as_str));
        let _ = write!(out, ",\"length\":{}}}", file.length);
    }
    out.push_str("],\"trackers\":[");
    for (i, tier) in t.trackers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::strings(&mut out, tier.iter().map(String::as_str));
    }
    out.push_str("],\"url_list\":");
    json::strings(&mut out, t.url_list.iter().map(String::as_str));
    for (key, value) in [("comment", &t.comment), ("created_by", &t.created_by)] {
        if let Some(value) = value {
            let _ = write!(out, ",\"{key}\":");
            json::string(&mut out, value);
        }
    }
    if let Some(date) = t.creation_date {
        let _ = write!(out, ",\"creation_date\":{date}");
    }
    out.push_str("}\n");
    out
}

fn magnet_text(m: &Magnet) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "name:       {}",
        m.name
            .as_deref()
            .unwrap_or("(unknown until the metadata arrives)")
    );
    let _ = writeln!(out, "info hash:  {}", m.info_hash);
    let _ = writeln!(out, "size:       unknown until the metadata arrives");
    if m.trackers.is_empty() {
        let _ = writeln!(out, "trackers:   none");
    } else {
        let _ = writeln!(out, "trackers:");
        for (i, tracker) in m.trackers.iter().enumerate() {
            let _ = writeln!(out, "  tier {}: {tracker}", i + 1);
        }
    }
    for peer in &m.peers {
        let _ = writeln!(out, "peer:       {peer}");
    }
    out
}

fn magnet_json(m: &Magnet) -> String {
    let mut out = String::from("{\"info_hash\":");
    json::string(&mut out, &m.info_hash.to_hex());
    out.push_str(",\"name\":");
    match &m.name {
        Some(name) => json::string(&mut out, name),
        None => out.push_str("null"),
    }
    out.push_str(",\"trackers\":[");
    for (i, tracker) in m.trackers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        json::strings(&mut out, [tracker.as_str()]);
    }
    out.push_str("],\"peers\":");
    json::strings(&mut out, m.peers.iter().map(String::as_str));
    out.push_str(",\"magnet\":true}\n");
    out
}
