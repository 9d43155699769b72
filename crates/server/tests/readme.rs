//! The README's quickstart, run as written against a real `tally start` (issue 9), so that its
//! examples cannot rot: every `sh` and `python` block of the "Quickstart" section, in order, with
//! only the README's ports replaced by the test server's. The signed example runs against a
//! second server started with `TALLY_ADMIN_API_SECRET`, the variable the example signs with.

#[allow(dead_code)]
mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "readme-secret";

/// One fenced block of the quickstart.
struct Block {
    language: String,
    text: String,
}

/// The `sh` and `python` blocks between `### Quickstart` and the next heading.
fn quickstart_blocks() -> Vec<Block> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let start = readme.find("### Quickstart").expect("a Quickstart section");
    let section = &readme[start + 1..];
    let section = &section[..section.find("\n#").unwrap_or(section.len())];
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for line in section.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(language)) => {
                current = Some(Block {
                    language: language.trim().to_owned(),
                    text: String::new(),
                })
            }
            (Some(_), Some(_)) => blocks.extend(current.take()),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// A `tally start` child on ephemeral ports.
struct Tally {
    child: Child,
    native_port: u16,
    graphql_port: u16,
}

impl Drop for Tally {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tally {
    fn start(data_dir: &Path, secret: Option<&str>) -> Tally {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .arg("start")
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--addresses",
                "127.0.0.1:0",
                "--graphql-address",
                "127.0.0.1:0",
            ])
            .args(["--auto-peering-address", "off", "--segment-mib", "4"])
            .env_remove("TALLY_ADMIN_API_SECRET")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(secret) = secret {
            command.env("TALLY_ADMIN_API_SECRET", secret);
        }
        let mut child = command.spawn().expect("spawn tally");
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut port = |prefix: &str| loop {
            let line = lines.next().expect("a line").expect("text");
            if let Some(address) = line.strip_prefix(prefix) {
                let address: std::net::SocketAddr = address.parse().expect("address");
                break address.port();
            }
        };
        let native_port = port("listening on ");
        let graphql_port = port("graphql listening on ");
        Tally {
            child,
            native_port,
            graphql_port,
        }
    }

    /// Runs a block with the README's ports replaced by this server's; its stdout.
    fn run(&self, block: &Block) -> String {
        let text = block
            .text
            .replace(
                "localhost:3001",
                &format!("localhost:{}", self.graphql_port),
            )
            .replace("\"3000\"", &format!("\"{}\"", self.native_port));
        let mut command = match block.language.as_str() {
            "sh" => {
                let mut command = Command::new("bash");
                command.args(["-euo", "pipefail", "-c", &text]);
                command
            }
            "python" => {
                let mut command = Command::new("python3");
                command.args(["-c", &text]);
                command
            }
            other => panic!("a {other} block in the quickstart"),
        };
        let output = command
            .env("TALLY_ADMIN_API_SECRET", SECRET)
            .output()
            .expect("run the block");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "README block failed ({}):\n{text}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!stdout.contains("\"errors\""), "{text}\n{stdout}");
        stdout
    }
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    common::ensure_official_client();
    let blocks = quickstart_blocks();
    assert!(blocks.len() >= 5, "the quickstart's blocks were not found");
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = Tally::start(&dir.path().join("plain"), None);
    let signed = Tally::start(&dir.path().join("signed"), Some(SECRET));
    // Signatures must be timestamped after the server's start plus the allowance for clocks
    // ahead (docs/graphql.md, "Signing").
    std::thread::sleep(Duration::from_millis(
        tally_graphql::FUTURE_SKEW_MS_MAX + 100,
    ));
    let outputs: Vec<String> = blocks
        .iter()
        .map(|block| {
            let server = if block.text.contains("signature:") {
                &signed
            } else {
                &plain
            };
            server.run(block)
        })
        .collect();
    let all = outputs.concat();
    for expected in [
        "\"createAsset\":{\"asset\":{",
        "\"depositAssetLiquidity\":{\"success\":true}",
        "\"assets\":{\"edges\":[",
        "CREATED",
        "tally_graphql_operations_total{operation=\"createAsset\",code=\"ok\"} 1",
        "tally_native_requests_total{operation=\"create_accounts\"} 1",
    ] {
        assert!(all.contains(expected), "{expected} not in:\n{all}");
    }
}
