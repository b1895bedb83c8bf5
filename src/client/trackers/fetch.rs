//! Torrents by URL: what a fetched document must look like, and [`fetch_url`], a
//! blocking fetch for the command line that runs a small loop of its own (as
//! `bitloop announce` does). A session fetches on its own loop with
//! [`TrackerClient::fetch`] instead.

use std::time::Duration;

use super::{RequestId, TrackerClient, TrackerConfig};
use crate::client::Owner;
use crate::http::HttpResponse;
use crate::metainfo::MAX_TORRENT_BYTES;
use crate::reactor::{Event, HandleId, Handler, Reactor, RunMode};
use crate::tracker::TrackerError;

/// The body of a 200 answer, if it can be a torrent: not an HTML page, and a
/// bencoded dictionary (starting with `d`). Parsing it is the caller's job.
pub(super) fn check_document(response: HttpResponse) -> Result<Vec<u8>, TrackerError> {
    let html = response
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/html") || t.starts_with("application/xhtml"));
    let first = response.body.iter().find(|b| !b.is_ascii_whitespace());
    if html || first == Some(&b'<') {
        return Err(TrackerError::Malformed(
            "the server answered with an HTML page, not a torrent file".into(),
        ));
    }
    if response.body.first() != Some(&b'd') {
        return Err(TrackerError::Malformed(
            "the answer is not a torrent file (it does not start with a bencoded dictionary)".into(),
        ));
    }
    Ok(response.body)
}

/// What went wrong, in words for a fetch (the tracker wording does not fit).
fn describe(error: &TrackerError, timeout: Duration) -> String {
    match error {
        TrackerError::Status(code) => format!("the server answered HTTP {code}"),
        TrackerError::TooLarge => {
            format!("the answer is larger than {MAX_TORRENT_BYTES} bytes, the torrent limit")
        }
        TrackerError::Timeout | TrackerError::Cancelled => {
            format!("no complete answer within {} s", timeout.as_secs())
        }
        TrackerError::Malformed(why) | TrackerError::BadUrl(why) => why.clone(),
        TrackerError::Io(why) => format!("connection failed: {why}"),
        TrackerError::Resolve(why) => format!("cannot resolve the host: {why}"),
        other => other.to_string(),
    }
}

struct Fetcher {
    client: TrackerClient,
    id: Option<RequestId>,
    result: Option<Result<Vec<u8>, TrackerError>>,
}

impl Handler<Owner> for Fetcher {
    fn on_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, owner: Owner, event: Event) {
        self.client.on_event(rx, id, owner, event);
        self.collect(rx);
    }
}

impl Fetcher {
    fn collect(&mut self, rx: &mut Reactor<Owner>) {
        while let Some((id, result)) = self.client.poll_fetch() {
            if Some(id) == self.id {
                self.result = Some(result);
                self.client.close(rx);
            }
        }
    }
}

/// Fetches a torrent file from an `http://` or `https://` URL, blocking, with the
/// trackers' HTTP code (redirects, limits, TLS and trusted roots from `config`),
/// at most [`MAX_TORRENT_BYTES`] and within `config.http_timeout`. The error names
/// the URL and says what was wrong: a status other than 200, an HTML page, not a
/// torrent, too large, unreachable.
pub fn fetch_url(url: &str, config: &TrackerConfig) -> Result<Vec<u8>, String> {
    let fail = |why: String| format!("{url}: {why}");
    let mut rx: Reactor<Owner> = Reactor::new().map_err(|e| fail(e.to_string()))?;
    let mut fetcher = Fetcher {
        client: TrackerClient::new(config.clone(), 0),
        id: None,
        result: None,
    };
    fetcher.id = Some(fetcher.client.fetch(&mut rx, url, MAX_TORRENT_BYTES as usize));
    fetcher.collect(&mut rx);
    // The client's own deadline timer ends the request, so this run ends too.
    let run = rx.run(&mut fetcher, RunMode::Default);
    fetcher.client.close(&mut rx);
    rx.close_all_and_drain(&mut fetcher)
        .map_err(|e| fail(e.to_string()))?;
    rx.finish().map_err(|busy| fail(busy.to_string()))?;
    run.map_err(|e| fail(e.to_string()))?;
    match fetcher.result {
        Some(Ok(bytes)) => Ok(bytes),
        Some(Err(error)) => Err(fail(describe(&error, config.http_timeout))),
        None => Err(fail("no answer".into())),
    }
}
