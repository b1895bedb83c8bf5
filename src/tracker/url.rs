//! Tracker URLs: `http://host:port/path?query`, `udp://host:port`, and `https://`
//! (recognised, and refused with a clear message until TLS lands).

use super::TrackerError;

/// Longest tracker URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Udp,
}

/// A parsed tracker URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackerUrl {
    pub scheme: Scheme,
    /// Host name or IP literal (without brackets).
    pub host: String,
    pub port: u16,
    /// For HTTP: path and query, starting with `/`.
    pub target: String,
}

impl TrackerUrl {
    pub fn parse(url: &str) -> Result<TrackerUrl, TrackerError> {
        let bad = |why: &str| TrackerError::BadUrl(format!("tracker URL {url:?}: {why}"));
        if url.len() > MAX_URL_BYTES {
            return Err(bad("too long"));
        }
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "udp" => Scheme::Udp,
            other => return Err(bad(&format!("scheme {other:?} is not a tracker scheme"))),
        };
        let (authority, target) = match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        // Drop user info; trackers do not use it.
        let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
        let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '%' || c == '/') {
            return Err(bad("bad host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
            None => match scheme {
                Scheme::Http => 80,
                Scheme::Https => 443,
                Scheme::Udp => return Err(bad("a UDP tracker needs a port")),
            },
        };
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if target.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(bad("spaces or control characters in the path"));
        }
        Ok(TrackerUrl {
            scheme,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The URL a `Location` header points to, relative to this one.
    pub fn redirect(&self, location: &str) -> Result<TrackerUrl, TrackerError> {
        if location.contains("://") {
            TrackerUrl::parse(location)
        } else if location.starts_with('/') {
            Ok(TrackerUrl {
                target: location.to_string(),
                ..self.clone()
            })
        } else {
            Err(TrackerError::BadUrl(format!(
                "unsupported redirect target {location:?}"
            )))
        }
    }

    /// `host:port` for the Host header (IPv6 literals bracketed).
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = matches!(
            (self.scheme, self.port),
            (Scheme::Http, 80) | (Scheme::Https, 443)
        );
        if default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let u = TrackerUrl::parse("http://tracker.example:6969/announce?passkey=ab").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.target.as_str()),
            (Scheme::Http, "tracker.example", 6969, "/announce?passkey=ab")
        );
        let u = TrackerUrl::parse("udp://[::1]:1337/announce").unwrap();
        assert_eq!((u.scheme, u.host.as_str(), u.port), (Scheme::Udp, "::1", 1337));
        assert_eq!(TrackerUrl::parse("http://a.example").unwrap().port, 80);
        assert_eq!(
            TrackerUrl::parse("HTTPS://a.example/x").unwrap().scheme,
            Scheme::Https
        );
        assert_eq!(
            TrackerUrl::parse("http://u:p@1.2.3.4:81").unwrap().host,
            "1.2.3.4"
        );
        assert_eq!(
            TrackerUrl::parse("http://[::1]:8080/a").unwrap().host_header(),
            "[::1]:8080"
        );
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            "tracker.example/announce",
            "ftp://a/b",
            "udp://a.example",
            "http://:80/",
            "http://a:0/",
            "http://a:99999/",
            "http://a b/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_against_the_current_url() {
        let u = TrackerUrl::parse("http://127.0.0.1:1/a").unwrap();
        assert_eq!(u.redirect("/b?x=1").unwrap().target, "/b?x=1");
        assert_eq!(u.redirect("http://127.0.0.2:2/c").unwrap().port, 2);
        assert!(u.redirect("relative").is_err());
    }
}
