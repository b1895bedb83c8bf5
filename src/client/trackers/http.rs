//! HTTP and HTTPS legs: connect (trying the next address if a connect fails), send
//! the GET, read the response through the one [`ResponseReader`] (through TLS for
//! `https://`), and follow redirects, at most [`MAX_REDIRECTS`].
//!
//! A redirect's `Location` is resolved and re-validated as a whole URL by
//! [`TrackerUrl::redirect`]; it may go from HTTP to HTTPS but not back (a passkey
//! in the URL must not leave TLS), and never to a UDP tracker.

use std::net::{IpAddr, SocketAddr};

use log::{debug, trace};

use super::{Done, Job, Phase, TrackerClient};
use crate::client::{Owner, TrackerHandle};
use crate::http::{HttpResponse, ResponseReader};
use crate::reactor::{Event, HandleId, Reactor};
use crate::tracker::http::{
    announce_request, get_request, parse_announce, parse_scrape, scrape_request, MAX_REDIRECTS,
};
use crate::tracker::udp::{Outcome, Purpose};
use crate::tracker::url::Scheme;
use crate::tracker::TrackerError;

/// One HTTP(S) exchange on one TCP stream.
pub(super) struct HttpLeg {
    pub(super) stream: HandleId,
    reader: ResponseReader,
    #[cfg(feature = "https")]
    tls: Option<Box<super::tls::Session>>,
}

/// What a read from the stream came to.
type Read = Option<Result<HttpResponse, TrackerError>>;

impl TrackerClient {
    /// Connects leg `leg` of request `key` to `ip` and queues its request bytes.
    pub(super) fn connect_http(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize, ip: IpAddr) {
        let now = rx.now();
        let request = &self.requests[key];
        let url = &request.legs[leg].url;
        let addr = SocketAddr::new(ip, url.port);
        let timeout = request.deadline.map(|d| d.saturating_duration_since(now));
        let (bytes, body_limit) = match &request.job {
            Job::Tracker(Purpose::Announce(announce)) => (announce_request(url, announce), None),
            Job::Tracker(Purpose::Scrape(hashes)) => (scrape_request(url, hashes), None),
            Job::Fetch(max) => (get_request(url, &url.target), Some(*max)),
        };
        #[cfg(feature = "https")]
        let tls = if url.scheme == Scheme::Https {
            match self.tls.session(&url.host, url.port) {
                Ok(session) => Some(Box::new(session)),
                Err(error) => return self.end_leg(rx, key, leg, Err(error)),
            }
        } else {
            None
        };
        let stream = match rx.tcp_connect(addr, self.tag(TrackerHandle::Http(key)), timeout) {
            Ok(stream) => stream,
            Err(e) => return self.end_leg(rx, key, leg, Err(TrackerError::Io(e.to_string()))),
        };
        trace!("tracker request {key}: GET {url} via {addr} on {stream}");
        #[cfg_attr(not(feature = "https"), allow(unused_mut))]
        let mut http = HttpLeg {
            stream,
            reader: body_limit.map_or_else(ResponseReader::new, ResponseReader::with_body_limit),
            #[cfg(feature = "https")]
            tls,
        };
        // Plain HTTP: the request goes out as it is (the loop queues it until the
        // connect completes). HTTPS: it waits inside the TLS session for the
        // handshake, and the ClientHello goes out first.
        #[cfg(feature = "https")]
        let bytes = match http.tls.as_mut() {
            Some(tls) => match tls.send(&bytes) {
                Ok(()) => tls.outgoing(),
                Err(error) => {
                    self.requests[key].legs[leg].phase = Phase::Http(http);
                    self.end_leg(rx, key, leg, Err(error));
                    return;
                }
            },
            None => bytes,
        };
        self.requests[key].legs[leg].phase = Phase::Http(http);
        if let Err(e) = rx.tcp_write(stream, &bytes) {
            self.end_leg(rx, key, leg, Err(TrackerError::Io(e.to_string())));
        }
    }

    /// The leg of request `key` whose stream is `id`, if it is still ours.
    fn http_leg(&mut self, key: usize, id: HandleId) -> Option<(usize, &mut HttpLeg)> {
        let request = self.requests.get_mut(key)?;
        request
            .legs
            .iter_mut()
            .enumerate()
            .find_map(|(at, leg)| match &mut leg.phase {
                Phase::Http(http) if http.stream == id => Some((at, http)),
                _ => None,
            })
    }

    pub(super) fn on_http_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, key: usize, event: Event) {
        let Some((leg, http)) = self.http_leg(key, id) else {
            return; // an event for a stream we already let go of
        };
        let done: Read = match event {
            Event::Readable => {
                let data = rx.tcp_received(id).unwrap_or_default();
                let used = data.len();
                #[cfg(feature = "https")]
                let (read, outgoing) = match http.tls.as_mut() {
                    Some(tls) => (tls.receive(data, &mut http.reader), tls.outgoing()),
                    None => (http.reader.push(data), Vec::new()),
                };
                #[cfg(not(feature = "https"))]
                let (read, outgoing) = (http.reader.push(data), Vec::<u8>::new());
                let _ = rx.tcp_consume(id, used);
                if !outgoing.is_empty() {
                    if let Err(e) = rx.tcp_write(id, &outgoing) {
                        return self.end_leg(rx, key, leg, Err(TrackerError::Io(e.to_string())));
                    }
                }
                read.transpose()
            }
            Event::Eof => {
                #[cfg(feature = "https")]
                let read = match http.tls.as_mut() {
                    Some(tls) => tls.eof(&mut http.reader),
                    None => http.reader.finish(),
                };
                #[cfg(not(feature = "https"))]
                let read = http.reader.finish();
                Some(read)
            }
            Event::ConnectFailed(e) => {
                let spare = &mut self.requests[key].legs[leg].spare;
                if !spare.is_empty() {
                    let next = spare.remove(0);
                    debug!("tracker request {key}: connect failed ({e}); trying {next}");
                    rx.close(id);
                    return self.connect_http(rx, key, leg, next);
                }
                Some(Err(TrackerError::Io(e.to_string())))
            }
            Event::Error(e) => Some(Err(TrackerError::Io(e.to_string()))),
            Event::Closed(_) => Some(Err(TrackerError::Cancelled)),
            _ => None,
        };
        match done {
            None => {}
            Some(Err(error)) => self.end_leg(rx, key, leg, Err(error)),
            Some(Ok(response)) => self.on_response(rx, key, leg, response),
        }
    }

    /// A complete response: a redirect to follow, an error status, or the body.
    fn on_response(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize, response: HttpResponse) {
        let request = &mut self.requests[key];
        let current = &mut request.legs[leg];
        if let (300..=399, Some(location)) = (response.status, &response.location) {
            if current.redirects == MAX_REDIRECTS {
                return self.end_leg(rx, key, leg, Err(TrackerError::TooManyRedirects));
            }
            let next = match current.url.redirect(location) {
                Ok(next) if next.scheme == Scheme::Udp => Err(TrackerError::BadUrl(format!(
                    "redirect from {} to a UDP tracker refused",
                    current.url
                ))),
                Ok(next) if current.url.scheme == Scheme::Https && next.scheme == Scheme::Http => {
                    Err(TrackerError::BadUrl(format!(
                        "redirect from {} to plain HTTP ({next}) refused",
                        current.url
                    )))
                }
                Ok(next) if next.scheme == Scheme::Https && !cfg!(feature = "https") => {
                    Err(TrackerError::BadUrl(format!(
                        "redirect to {next}: HTTPS needs bitloop built with the `https` feature"
                    )))
                }
                other => other,
            };
            return match next {
                Ok(url) => {
                    debug!("tracker request {key}: {} redirected to {url}", current.url);
                    current.redirects += 1;
                    current.url = url;
                    let old = std::mem::replace(&mut current.phase, Phase::Starting);
                    self.release(rx, old);
                    self.resolve(rx, key, leg);
                }
                Err(error) => self.end_leg(rx, key, leg, Err(error)),
            };
        }
        if response.status != 200 {
            return self.end_leg(rx, key, leg, Err(TrackerError::Status(response.status)));
        }
        // The one parse of the body: its peer list goes out with the result.
        let result = match &request.job {
            Job::Tracker(Purpose::Announce(_)) => {
                parse_announce(&response.body).map(|r| Done::Tracker(Outcome::Announced(r)))
            }
            Job::Tracker(Purpose::Scrape(hashes)) => {
                parse_scrape(&response.body, hashes).map(|s| Done::Tracker(Outcome::Scraped(s)))
            }
            Job::Fetch(_) => super::fetch::check_document(response).map(Done::Fetched),
        };
        self.end_leg(rx, key, leg, result);
    }
}
