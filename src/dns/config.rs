//! Where names come from: `/etc/hosts` entries and `/etc/resolv.conf` name servers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Names and servers the resolver uses.
#[derive(Clone, Debug)]
pub struct ResolverConfig {
    pub hosts: HashMap<String, Vec<IpAddr>>,
    pub nameservers: Vec<SocketAddr>,
    /// Wait per query before trying again (resolv.conf `options timeout:`).
    pub timeout: Duration,
    /// Tries per server (resolv.conf `options attempts:`).
    pub attempts: u32,
}

impl ResolverConfig {
    /// Reads `/etc/hosts` and `/etc/resolv.conf` (once, at start-up: small local files).
    pub fn system() -> ResolverConfig {
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        ResolverConfig::from_texts(&hosts, &resolv)
    }

    pub fn from_texts(hosts: &str, resolv: &str) -> ResolverConfig {
        let mut config = ResolverConfig {
            hosts: parse_hosts(hosts),
            nameservers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 2,
        };
        for line in resolv.lines() {
            let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        config.nameservers.push(SocketAddr::new(ip, 53));
                    }
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("timeout:").and_then(|n| n.parse().ok()) {
                            config.timeout = Duration::from_secs(u64::clamp(n, 1, 30));
                        }
                        if let Some(n) = option.strip_prefix("attempts:").and_then(|n| n.parse().ok()) {
                            config.attempts = u32::clamp(n, 1, 5);
                        }
                    }
                }
                _ => {}
            }
        }
        if config.nameservers.is_empty() {
            config.nameservers.push(SocketAddr::from(([127, 0, 0, 1], 53)));
        }
        config
    }
}

fn parse_hosts(text: &str) -> HashMap<String, Vec<IpAddr>> {
    let mut hosts: HashMap<String, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
        let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) else {
            continue;
        };
        for name in words {
            let entry = hosts.entry(name.to_ascii_lowercase()).or_default();
            if !entry.contains(&ip) {
                entry.push(ip);
            }
        }
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_resolv_conf() {
        let config = ResolverConfig::from_texts(
            "127.0.0.1 localhost Box # comment\n::1 localhost\nbad line\n",
            "# x\nnameserver 127.0.0.53\nnameserver not-an-ip\noptions timeout:2 attempts:9\n",
        );
        assert_eq!(
            config.hosts["localhost"],
            vec!["127.0.0.1".parse::<IpAddr>().unwrap(), "::1".parse().unwrap()]
        );
        assert!(config.hosts.contains_key("box"));
        assert_eq!(config.nameservers, vec!["127.0.0.53:53".parse().unwrap()]);
        assert_eq!((config.timeout, config.attempts), (Duration::from_secs(2), 5));
    }
}
