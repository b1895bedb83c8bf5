//! The resolver's sockets: a fresh UDP socket for every query it puts on the wire
//! (so each goes out from a fresh port the kernel picks at random), closed when the
//! query ends. A datagram reaches the resolver together with the query whose
//! socket it arrived on, so an answer on any other socket cannot count.

use super::{unspecified, Phase, TrackerClient};
use crate::client::{Owner, TrackerHandle};
use crate::reactor::{Event, HandleId, Reactor};
use crate::tracker::TrackerError;

/// The largest DNS message over UDP we read (EDNS0 sizes included).
const MAX_DNS_DATAGRAM: usize = 4096;

impl TrackerClient {
    /// Sends the resolver's new queries, each from a socket of its own, and closes
    /// the sockets of queries that ended.
    pub(super) fn flush_dns(&mut self, rx: &mut Reactor<Owner>) {
        self.close_ended_queries(rx);
        while let Some(transmit) = self.resolver.poll_transmit() {
            let slot = transmit.query.slot();
            let tag = self.tag(TrackerHandle::Dns(slot));
            match rx.udp_bind(unspecified(transmit.server.is_ipv6()), tag) {
                Ok(socket) => {
                    // A failed send is a lost datagram: the query's timeout retries it.
                    let _ = rx.udp_send_to(socket, &transmit.datagram, transmit.server);
                    if let Some((_, stale)) = self.dns.insert(slot, (transmit.query, socket)) {
                        rx.close(stale); // cannot happen: a slot's query ends first
                    }
                }
                Err(e) => log::debug!("no socket for a DNS query: {e}; it will time out"),
            }
        }
    }

    fn close_ended_queries(&mut self, rx: &mut Reactor<Owner>) {
        while let Some(query) = self.resolver.poll_ended() {
            if self.dns.get(&query.slot()).is_some_and(|(q, _)| *q == query) {
                let (_, socket) = self.dns.remove(&query.slot()).expect("checked");
                rx.close(socket);
            }
        }
    }

    /// Shutdown: every query socket closes.
    pub(super) fn close_dns(&mut self, rx: &mut Reactor<Owner>) {
        while self.resolver.poll_ended().is_some() {}
        for (_, (_, socket)) in self.dns.drain() {
            rx.close(socket);
        }
    }

    pub(super) fn on_dns_event(&mut self, rx: &mut Reactor<Owner>, id: HandleId, slot: usize, event: Event) {
        let Some(&(query, socket)) = self.dns.get(&slot) else {
            return;
        };
        if socket != id {
            return; // a socket of a query that already ended
        }
        match event {
            Event::Readable => {
                let mut buf = [0u8; MAX_DNS_DATAGRAM];
                while let Ok(Some((n, from))) = rx.udp_recv_from(id, &mut buf) {
                    self.resolver.handle_datagram(rx.now(), query, from, &buf[..n]);
                }
                self.take_lookups(rx);
                self.close_ended_queries(rx);
            }
            Event::Closed(_) => {
                self.dns.remove(&slot);
            }
            _ => {}
        }
    }

    /// Continues legs whose names resolved.
    pub(super) fn take_lookups(&mut self, rx: &mut Reactor<Owner>) {
        while let Some((lookup, result)) = self.resolver.poll_result() {
            let found = self.requests.iter().find_map(|(key, r)| {
                r.legs
                    .iter()
                    .position(|leg| matches!(leg.phase, Phase::Resolving(l) if l == lookup))
                    .map(|leg| (key, leg))
            });
            let Some((key, leg)) = found else { continue };
            self.requests[key].legs[leg].phase = Phase::Starting;
            match result {
                Ok(ips) => self.resolved(rx, key, leg, ips),
                Err(why) => self.end_leg(rx, key, leg, Err(TrackerError::Resolve(why))),
            }
        }
    }
}
