//! UDP legs (BEP 15): one shared socket per address family, transactions told
//! apart by tracker address and transaction id; connection ids cached per tracker.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{family, unspecified, Done, Job, Phase, TrackerClient};
use crate::client::{Owner, TrackerHandle};
use crate::reactor::{Event, HandleId, Reactor};
use crate::tracker::udp::{Progress, UdpTransaction, CONNECTION_ID_LIFETIME, MAX_DATAGRAM};
use crate::tracker::TrackerError;

impl TrackerClient {
    /// Starts leg `leg` of request `key` as a BEP 15 transaction with `ip`.
    pub(super) fn connect_udp(&mut self, rx: &mut Reactor<Owner>, key: usize, leg: usize, ip: IpAddr) {
        let now = rx.now();
        let request = &self.requests[key];
        let addr = SocketAddr::new(ip, request.legs[leg].url.port);
        let Job::Tracker(purpose) = request.job.clone() else {
            let error = TrackerError::BadUrl("only http:// and https:// URLs can be fetched".into());
            return self.end_leg(rx, key, leg, Err(error));
        };
        if let Err(e) = self.udp_socket(rx, ip) {
            return self.end_leg(rx, key, leg, Err(TrackerError::Io(e)));
        }
        let cached = self.connection_ids.get(&addr).copied();
        let transaction = UdpTransaction::new(now, purpose, ip.is_ipv6(), self.config.udp_retry_base, cached);
        self.requests[key].legs[leg].phase = Phase::Udp {
            tracker: addr,
            transaction,
        };
    }

    fn udp_socket(&mut self, rx: &mut Reactor<Owner>, ip: IpAddr) -> Result<HandleId, String> {
        if let Some(id) = self.udp[family(ip)] {
            return Ok(id);
        }
        let id = rx
            .udp_bind(unspecified(ip.is_ipv6()), self.tag(TrackerHandle::Udp))
            .map_err(|e| e.to_string())?;
        self.udp[family(ip)] = Some(id);
        Ok(id)
    }

    pub(super) fn on_udp_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, event: Event) {
        match event {
            Event::Readable => {
                self.datagram.resize(MAX_DATAGRAM, 0);
                while let Ok(Some((n, from))) = rx.udp_recv_from(id, &mut self.datagram) {
                    let now = rx.now();
                    let data = std::mem::take(&mut self.datagram);
                    self.on_tracker_datagram(rx, now, from, &data[..n]);
                    self.datagram = data;
                }
            }
            Event::Closed(_) => {
                for slot in &mut self.udp {
                    if *slot == Some(id) {
                        *slot = None;
                    }
                }
            }
            _ => {}
        }
    }

    fn on_tracker_datagram(&mut self, rx: &mut Reactor<Owner>, now: Instant, from: SocketAddr, data: &[u8]) {
        let tid = data
            .get(4..8)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let found = self.requests.iter().find_map(|(key, r)| {
            r.legs
                .iter()
                .position(|leg| match &leg.phase {
                    Phase::Udp { tracker, transaction } => {
                        *tracker == from && Some(transaction.transaction_id()) == tid
                    }
                    _ => false,
                })
                .map(|leg| (key, leg))
        });
        let Some((key, leg)) = found else {
            self.stray_datagrams += 1;
            return;
        };
        let Phase::Udp { transaction, .. } = &mut self.requests[key].legs[leg].phase else {
            unreachable!("found above")
        };
        match transaction.handle_datagram(now, data) {
            Progress::Ignored => self.stray_datagrams += 1,
            Progress::Connected { connection_id } => {
                self.connection_ids
                    .retain(|_, (_, at)| now.saturating_duration_since(*at) < CONNECTION_ID_LIFETIME);
                self.connection_ids.insert(from, (connection_id, now));
            }
            Progress::Done(outcome) => self.end_leg(rx, key, leg, Ok(Done::Tracker(outcome))),
            Progress::Failed(error) => self.end_leg(rx, key, leg, Err(error)),
        }
    }

    /// Sends what the UDP transactions want sent.
    pub(super) fn flush_udp(&mut self, rx: &mut Reactor<Owner>) {
        let mut failed = Vec::new();
        for (key, request) in self.requests.iter_mut() {
            for (at, leg) in request.legs.iter_mut().enumerate() {
                let Phase::Udp { tracker, transaction } = &mut leg.phase else {
                    continue;
                };
                if let Some(datagram) = transaction.poll_transmit() {
                    // The socket is opened in `connect_udp`; if it has been closed
                    // since, the leg fails rather than the process.
                    let sent = match self.udp[family(tracker.ip())] {
                        Some(socket) => rx
                            .udp_send_to(socket, &datagram, *tracker)
                            .map_err(|e| e.to_string()),
                        None => Err("the tracker socket is closed".to_string()),
                    };
                    if let Err(why) = sent {
                        failed.push((key, at, TrackerError::Io(why)));
                    }
                }
            }
        }
        for (key, leg, error) in failed {
            self.end_leg(rx, key, leg, Err(error));
        }
    }
}
