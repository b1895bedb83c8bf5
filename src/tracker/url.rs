//! Tracker and torrent URLs: `http://host:port/path?query`, `https://…`,
//! `udp://host:port`, and the `Location` of a redirect resolved against them.
//!
//! Only what can be sent as-is is accepted: printable ASCII, a host that is a DNS
//! name or an IP literal, a decimal port. Nothing else reaches a request line, so a
//! CR, LF, space or other control byte in a URL or a `Location` is an error, never
//! a second header. Redirects resolve as RFC 3986 §5.2 says (absolute, scheme-relative
//! `//host/x`, absolute path, relative path, query only; dot segments removed). We
//! parse URLs ourselves rather than with the `url` crate: it would add 104 KiB to
//! the stripped binary even with its ASCII-only IDNA backend (236 KiB with the
//! default one), for forms trackers do not use.

use std::fmt;

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
        if !url.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("spaces, control bytes or non-ASCII in the URL"));
        }
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
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
        let ip_literal = authority.starts_with('[');
        let host_ok = if ip_literal {
            host.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        };
        if !host_ok {
            return Err(bad("bad host"));
        }
        let port = match port {
            Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) => return Err(bad("bad port")),
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
        Ok(TrackerUrl {
            scheme,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The URL a `Location` header points to, resolved against this one (RFC 3986
    /// §5.2). Whatever it resolves to is re-validated as a whole URL.
    pub fn redirect(&self, location: &str) -> Result<TrackerUrl, TrackerError> {
        let bad = |why: &str| TrackerError::BadUrl(format!("redirect to {location:?}: {why}"));
        if location.is_empty() || location.len() > MAX_URL_BYTES {
            return Err(bad("empty or too long"));
        }
        if !location.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("spaces, control bytes or non-ASCII in the location"));
        }
        let location = location.split_once('#').map_or(location, |(before, _)| before);
        let scheme_len = location
            .find(':')
            .filter(|&at| at > 0 && !location[..at].contains(['/', '?']));
        let resolved = if let Some(at) = scheme_len {
            let scheme = &location[..at];
            let valid = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.');
            if !valid {
                return Err(bad("not a URL"));
            }
            location.to_string()
        } else if location.starts_with("//") {
            format!("{}:{location}", self.scheme.name())
        } else {
            let (base_path, base_query) = split_query(&self.target);
            let (path, query) = split_query(location);
            let path = if location.starts_with('/') {
                path.to_string()
            } else if path.is_empty() {
                base_path.to_string()
            } else {
                let dir = &base_path[..base_path.rfind('/').map_or(0, |at| at + 1)];
                format!("{dir}{path}")
            };
            let query = match (path.is_empty() || !location.starts_with(['?']), query) {
                (_, Some(q)) => Some(q),
                (false, None) => base_query,
                (true, None) => None,
            };
            let mut target = remove_dot_segments(&path);
            if !target.starts_with('/') {
                target.insert(0, '/');
            }
            if let Some(query) = query {
                target.push('?');
                target.push_str(query);
            }
            format!("{}://{}{target}", self.scheme.name(), self.host_header())
        };
        TrackerUrl::parse(&resolved).map_err(|e| match e {
            TrackerError::BadUrl(why) => bad(&why),
            other => other,
        })
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

impl Scheme {
    /// The scheme as written in a URL.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
            Scheme::Udp => "udp",
        }
    }
}

impl fmt::Display for TrackerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = if self.scheme == Scheme::Udp && self.target == "/" {
            ""
        } else {
            &self.target
        };
        write!(f, "{}://{}{target}", self.scheme.name(), self.host_header())
    }
}

/// `path?query` → (path, query).
fn split_query(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// RFC 3986 §5.2.4: resolves `.` and `..` segments (never above the root).
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." | ".." => {
                if *segment == ".." && out.len() > 1 {
                    out.pop();
                }
                if last {
                    out.push(""); // "a/b/.." names the directory: keep the slash
                }
            }
            other => out.push(other),
        }
    }
    let joined = out.join("/");
    if path.starts_with('/') && !joined.starts_with('/') {
        format!("/{joined}")
    } else {
        joined
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
            "http://a\r\nb/",
            "http://a/\r\n",
            "http://a:+80/",
            "http://[::1/",
            "http://[zz]/",
            "http://h\u{e9}/",
        ] {
            assert!(TrackerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirects_resolve_in_every_form() {
        let u = TrackerUrl::parse("http://127.0.0.1:1/dir/a?k=1").unwrap();
        let to = |l: &str| u.redirect(l).map(|r| r.to_string());
        assert_eq!(to("/b?x=1").unwrap(), "http://127.0.0.1:1/b?x=1");
        assert_eq!(to("http://127.0.0.2:2/c").unwrap(), "http://127.0.0.2:2/c");
        assert_eq!(to("HTTPS://t.example/c").unwrap(), "https://t.example/c");
        assert_eq!(to("//t.example:8/x?y").unwrap(), "http://t.example:8/x?y");
        assert_eq!(to("relative").unwrap(), "http://127.0.0.1:1/dir/relative");
        assert_eq!(to("b/c?q=2").unwrap(), "http://127.0.0.1:1/dir/b/c?q=2");
        assert_eq!(to("../up").unwrap(), "http://127.0.0.1:1/up");
        assert_eq!(to("../../../../x").unwrap(), "http://127.0.0.1:1/x");
        assert_eq!(to("./here/.").unwrap(), "http://127.0.0.1:1/dir/here/");
        assert_eq!(to("?other=3").unwrap(), "http://127.0.0.1:1/dir/a?other=3");
        assert_eq!(to("/a#frag").unwrap(), "http://127.0.0.1:1/a");
        assert_eq!(
            to("/x/%0d%0a").unwrap(),
            "http://127.0.0.1:1/x/%0d%0a",
            "encoded stays encoded"
        );
    }

    #[test]
    fn hostile_locations_never_reach_a_request_line() {
        let u = TrackerUrl::parse("http://127.0.0.1:1/a").unwrap();
        for hostile in [
            "/a\r\nX-Injected: 1",
            "/a\nHost: evil",
            "/a b",
            "/a\tb",
            "/\u{0}",
            "/caf\u{e9}",
            "http://evil\r\n.example/",
            "//evil example/",
            "//[::1/",
            "//a:12x/",
            "javascript:alert(1)",
            "ftp://x/y",
            "1http://x/",
            "",
            "http:relative",
            "//",
        ] {
            assert!(u.redirect(hostile).is_err(), "{hostile:?} was accepted");
        }
        let long = format!("/{}", "a".repeat(MAX_URL_BYTES));
        assert!(u.redirect(&long).is_err());
    }

    #[test]
    fn dot_segments() {
        assert_eq!(remove_dot_segments("/a/b/c/./../../g"), "/a/g");
        assert_eq!(remove_dot_segments("mid/content=5/../6"), "mid/6");
        assert_eq!(remove_dot_segments("/.."), "/");
    }
}
