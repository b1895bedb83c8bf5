//! Replays the fuzz inputs kept in the repository through the fuzz targets' own
//! checks (`fuzz/src/checks.rs`):
//!
//! - `fuzz/regressions/<target>/`: inputs that once found a bug; each must pass;
//! - `fuzz/seeds/<target>/`: the starting corpus; each must pass;
//! - `fuzz/known-bugs/<target>/`: inputs that find a bug not fixed yet; each must
//!   still fail, so that the fix is noticed and the input moved to `regressions/`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use crate::checks::for_target;

/// Every (target, file) under `fuzz/<folder>/`; a folder naming no target fails.
fn inputs(folder: &str) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(folder);
    let mut found = Vec::new();
    let Ok(targets) = std::fs::read_dir(&root) else {
        return found;
    };
    for target in targets {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        if !target.is_dir() {
            continue; // a README
        }
        assert!(
            for_target(&name).is_some(),
            "fuzz/{folder}/{name}/ names no target in fuzz/src/checks.rs TARGETS (see fuzz/README.md)"
        );
        for file in std::fs::read_dir(&target).unwrap() {
            found.push((name.clone(), file.unwrap().path()));
        }
    }
    found.sort();
    found
}

fn passes(target: &str, file: &Path) -> bool {
    let data = std::fs::read(file).unwrap();
    let check = for_target(target).expect("checked by inputs()");
    catch_unwind(AssertUnwindSafe(|| check(&data))).is_ok()
}

#[test]
fn regression_and_seed_inputs_pass() {
    let all: Vec<_> = inputs("regressions").into_iter().chain(inputs("seeds")).collect();
    assert!(
        !all.is_empty(),
        "fuzz/seeds/ holds a starting corpus for every target"
    );
    let failing: Vec<_> = all
        .iter()
        .filter(|(target, file)| !passes(target, file))
        .collect();
    assert!(
        failing.is_empty(),
        "fuzz inputs that fail their target's check: {failing:?}"
    );
}

#[test]
fn known_bug_inputs_still_fail() {
    let fixed: Vec<_> = inputs("known-bugs")
        .into_iter()
        .filter(|(target, file)| passes(target, file))
        .collect();
    assert!(
        fixed.is_empty(),
        "these inputs no longer find a bug: move them to fuzz/regressions/<target>/: {fixed:?}"
    );
}
