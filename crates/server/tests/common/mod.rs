//! What the server's end-to-end test binaries share: the official Python client they drive,
//! and reading the server's log.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The official TigerBeetle client release the tests drive.
pub(crate) const CLIENT_VERSION: &str = "0.17.9";

/// The Python scripts the tests run.
pub(crate) fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python")
}

/// Makes sure `python3` imports the official client at `CLIENT_VERSION`, installing it with pip
/// if not (once per test binary). Panics (fails the test) if that is impossible.
pub(crate) fn ensure_official_client() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(error) = READY.get_or_init(install_official_client) {
        panic!("the official TigerBeetle Python client {CLIENT_VERSION} is unavailable: {error}");
    }
}

fn install_official_client() -> Result<(), String> {
    if client_version().as_deref() == Ok(CLIENT_VERSION) {
        return Ok(());
    }
    let requirement = format!("tigerbeetle=={CLIENT_VERSION}");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet"])
            .args(extra)
            .arg(&requirement)
            .output()
            .map_err(|error| format!("cannot run python3 -m pip: {error}"))
    };
    let mut output = pip(&[])?;
    if !output.status.success()
        && String::from_utf8_lossy(&output.stderr).contains("externally-managed-environment")
    {
        output = pip(&["--break-system-packages"])?;
    }
    if !output.status.success() {
        return Err(format!(
            "pip install {requirement} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    match client_version() {
        Ok(version) if version == CLIENT_VERSION => Ok(()),
        Ok(version) => Err(format!(
            "pip installed {requirement}, python3 imports {version}"
        )),
        Err(error) => Err(format!("pip installed {requirement}, but: {error}")),
    }
}

/// The version of the `tigerbeetle` package that `python3` imports.
fn client_version() -> Result<String, String> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata, tigerbeetle; print(importlib.metadata.version('tigerbeetle'))",
        ])
        .output()
        .map_err(|error| format!("cannot run python3: {error}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "import tigerbeetle failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A log line without its ANSI colour sequences.
pub(crate) fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
