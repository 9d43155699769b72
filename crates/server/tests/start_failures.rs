//! A start that cannot work stops at once with one line on stderr saying what and where, and a
//! non-zero exit (issue 9): a port in use, a data directory of another cluster or of a format
//! version this binary does not read, a read-only disk and a full one.
//!
//! The disks are real: small tmpfs mounts, remounted read-only for that case. Root can write
//! through any file mode, so `chmod` would not make a read-only directory for the root user CI
//! runs as; a read-only mount stops root too. Mounting needs root, which CI and this project's
//! machines have (as `disk_full.rs` does); without it the test fails and says why.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const TALLY: &str = env!("CARGO_BIN_EXE_tally");

/// Runs `tally start` on `data_dir` with `flags`, expecting it to fail; returns its stderr's
/// `error:` line, after checking there is exactly one.
fn start_error(data_dir: &Path, flags: &[&str]) -> String {
    let output = Command::new(TALLY)
        .arg("start")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--graphql-address", "off", "--auto-peering-address", "off"])
        .args(flags)
        .output()
        .expect("run tally");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started:\n{stderr}");
    assert_eq!(output.status.code(), Some(1));
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line:\n{stderr}");
    errors[0].to_owned()
}

fn format(data_dir: &Path, cluster: &str) {
    let status = Command::new(TALLY)
        .args(["format", "--segment-mib", "2", "--cluster", cluster])
        .arg("--data-dir")
        .arg(data_dir)
        .status()
        .expect("run tally format");
    assert!(status.success());
}

/// A tmpfs mounted for the test's lifetime.
struct Mount {
    path: PathBuf,
}

impl Mount {
    fn tmpfs(path: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(path).expect("mount point");
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            path,
        );
        Mount {
            path: path.to_path_buf(),
        }
    }

    fn read_only(&self) {
        mount(&["-o", "remount,ro"], &self.path);
    }
}

fn mount(args: &[&str], path: &Path) {
    let status = Command::new("mount")
        .args(args)
        .arg(path)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mount {args:?} failed: this test needs root (it uses real read-only and full disks)"
    );
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_port_in_use_names_the_address_and_the_flag() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let line = start_error(&dir.path().join("data"), &["--addresses", &address]);
    assert!(
        line.starts_with(&format!(
            "error: cannot listen on {address} (--addresses): "
        )),
        "{line}"
    );
    assert!(line.contains("in use"), "{line}");
    let line = start_error(
        &dir.path().join("data"),
        &["--addresses", "127.0.0.1:0", "--metrics-address", &address],
    );
    assert!(line.contains("(--metrics-address)"), "{line}");
}

#[test]
fn a_data_directory_of_another_cluster_or_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    format(&data_dir, "7");
    let line = start_error(&data_dir, &["--addresses", "127.0.0.1:0"]);
    assert_eq!(
        line,
        format!(
            "error: {}: data directory belongs to cluster 7, not 0",
            data_dir.display()
        )
    );

    // The format marker's version field (bytes 56..60 of its 128-byte header), sealed again.
    let marker_path = data_dir.join("format");
    let mut marker = std::fs::read(&marker_path).expect("marker");
    marker[56..60].copy_from_slice(&99u32.to_le_bytes());
    let checksum = tally_checksum::checksum(&marker[16..128]);
    marker[..16].copy_from_slice(&checksum.to_le_bytes());
    std::fs::write(&marker_path, &marker).expect("write marker");
    let line = start_error(&data_dir, &["--addresses", "127.0.0.1:0", "--cluster", "7"]);
    assert!(line.contains(&marker_path.display().to_string()), "{line}");
    assert!(line.contains("format version 99"), "{line}");
}

#[test]
fn a_read_only_or_full_disk_names_the_path_and_the_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let read_only = Mount::tmpfs(&dir.path().join("read-only"), "8m");
    let formatted = read_only.path.join("data");
    format(&formatted, "0");
    read_only.read_only();
    for data_dir in [formatted, read_only.path.join("new")] {
        let line = start_error(&data_dir, &["--addresses", "127.0.0.1:0"]);
        assert!(line.contains(&data_dir.display().to_string()), "{line}");
        assert!(line.contains("Read-only file system"), "{line}");
    }

    let full = Mount::tmpfs(&dir.path().join("full"), "1m");
    let data_dir = full.path.join("data");
    let line = start_error(
        &data_dir,
        &["--addresses", "127.0.0.1:0", "--segment-mib", "2"],
    );
    assert!(line.contains(&data_dir.display().to_string()), "{line}");
    assert!(line.contains("No space left on device"), "{line}");
}
