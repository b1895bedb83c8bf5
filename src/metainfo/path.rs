//! File path safety: a torrent decides file names, and a hostile one must not be
//! able to write outside the download folder.

use std::path::PathBuf;

use super::error::MetainfoError;

/// Longest accepted path component (the common filesystem limit).
const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in one file's path.
pub const MAX_PATH_DEPTH: usize = 64;

/// Checks one component of a file path from a torrent.
pub fn check_component(component: &str, whole: &str) -> Result<(), MetainfoError> {
    let refuse = |reason| {
        Err(MetainfoError::UnsafePath {
            path: whole.to_string(),
            reason,
        })
    };
    if component.is_empty() {
        return refuse("empty path component");
    }
    if component == "." || component == ".." {
        return refuse("`.` or `..` component");
    }
    if component.contains('/') || component.contains('\\') {
        return refuse("component contains a path separator");
    }
    if component.contains('\0') {
        return refuse("component contains NUL");
    }
    if component.len() > MAX_COMPONENT_BYTES {
        return refuse("component longer than 255 bytes");
    }
    Ok(())
}

/// Validates a torrent's relative path (its components) and joins it.
pub fn safe_relative_path(components: &[String]) -> Result<PathBuf, MetainfoError> {
    let whole = components.join("/");
    if components.is_empty() {
        return Err(MetainfoError::UnsafePath {
            path: whole,
            reason: "empty path",
        });
    }
    if components.len() > MAX_PATH_DEPTH {
        return Err(MetainfoError::UnsafePath {
            path: whole,
            reason: "path nests too deep",
        });
    }
    for component in components {
        check_component(component, &whole)?;
    }
    Ok(components.iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> Result<PathBuf, MetainfoError> {
        safe_relative_path(&parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn ordinary_paths_pass() {
        assert_eq!(path(&["a", "b.txt"]).unwrap(), PathBuf::from("a/b.txt"));
        assert_eq!(path(&["..."]).unwrap(), PathBuf::from("..."));
        assert_eq!(
            path(&["ünïcödé", ".hidden"]).unwrap(),
            PathBuf::from("ünïcödé/.hidden")
        );
    }

    #[test]
    fn escapes_are_refused_with_the_path_named() {
        for bad in [
            vec![".."],
            vec!["a", "..", "b"],
            vec!["."],
            vec![""],
            vec!["/etc", "passwd"],
            vec!["a/../../b"],
            vec!["c:\\windows"],
            vec!["nul\0byte"],
        ] {
            let err = path(&bad).unwrap_err();
            assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{bad:?}: {err}");
            let text = err.to_string();
            assert!(
                text.starts_with("unsafe file path") && text.contains(&format!("{:?}", bad.join("/"))),
                "{text}"
            );
        }
        assert!(path(&[]).is_err());
        assert!(path(&["x"; MAX_PATH_DEPTH + 1]).is_err());
        assert!(path(&[&"x".repeat(256)]).is_err());
    }
}
