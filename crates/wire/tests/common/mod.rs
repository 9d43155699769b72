//! Loading the captures of real TigerBeetle traffic in `shared/tools/tbwire/captures` (spec
//! §10). The directory sits beside the checkout in every environment that runs these tests, so
//! a missing file is a failure, never a skip.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use tally_wire::{FrameError, FrameReader, Header};

pub(crate) fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools/tbwire/captures")
}

pub(crate) fn read_capture_file(relative: &str) -> Vec<u8> {
    let path = captures_dir().join(relative);
    std::fs::read(&path).unwrap_or_else(|error| {
        panic!(
            "capture {} must exist beside the checkout: {error}",
            path.display()
        )
    })
}

/// The single-frame examples, by file name, in name order.
pub(crate) fn examples() -> BTreeMap<String, Vec<u8>> {
    let dir = captures_dir().join("examples");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("{} must exist: {error}", dir.display()));
    let mut examples = BTreeMap::new();
    for entry in entries {
        let path = entry.expect("readable directory").path();
        let name = path
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".bin") {
            examples.insert(name, std::fs::read(&path).expect("readable capture"));
        }
    }
    examples
}

/// A proxy capture (`tbproxy.py`): `connN.c2s.bin`, `connN.s2c.bin`, `chunks.jsonl`.
pub(crate) struct Capture {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Capture {
    pub(crate) fn from_dir(relative: &str) -> Capture {
        let dir = captures_dir().join(relative);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{} must exist: {error}", dir.display()));
        let mut files = BTreeMap::new();
        for entry in entries {
            let path = entry.expect("readable directory").path();
            let name = path
                .file_name()
                .expect("file")
                .to_string_lossy()
                .into_owned();
            files.insert(name, std::fs::read(&path).expect("readable capture"));
        }
        Capture { files }
    }

    /// A capture packed as a `.tar.gz` of one directory; read into memory.
    pub(crate) fn from_tar_gz(relative: &str) -> Capture {
        let packed = read_capture_file(relative);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&packed[..]));
        let mut files = BTreeMap::new();
        for entry in archive.entries().expect("tar archive") {
            let mut entry = entry.expect("tar entry");
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().expect("entry path").into_owned();
            let name = path
                .file_name()
                .expect("file")
                .to_string_lossy()
                .into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("entry bytes");
            files.insert(name, bytes);
        }
        Capture { files }
    }

    pub(crate) fn connections(&self) -> Vec<u32> {
        let mut connections: Vec<u32> = self
            .files
            .keys()
            .filter_map(|name| {
                name.strip_prefix("conn")?
                    .strip_suffix(".c2s.bin")?
                    .parse()
                    .ok()
            })
            .collect();
        connections.sort_unstable();
        connections
    }

    pub(crate) fn stream(&self, connection: u32, direction: Direction) -> &[u8] {
        let name = format!("conn{connection}.{}.bin", direction.name());
        self.files
            .get(&name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .as_slice()
    }

    /// The TCP segments as the proxy received them: `(offset, size, time)` per direction.
    pub(crate) fn chunks(&self, connection: u32, direction: Direction) -> Vec<(usize, usize, f64)> {
        let log = std::str::from_utf8(&self.files["chunks.jsonl"]).expect("utf-8 log");
        let mut chunks = Vec::new();
        for line in log.lines() {
            let event: serde_json::Value = serde_json::from_str(line).expect("json line");
            let Some(size) = event.get("len") else {
                continue;
            };
            if event["conn"].as_u64() == Some(connection as u64)
                && event["dir"].as_str() == Some(direction.name())
            {
                chunks.push((
                    event["off"].as_u64().expect("off") as usize,
                    size.as_u64().expect("len") as usize,
                    event["t"].as_f64().expect("t"),
                ));
            }
        }
        chunks
    }

    /// Splits one stream with [`FrameReader`], fed segment by segment as the proxy saw them.
    /// Each frame carries the time of the segment that completed it.
    pub(crate) fn split(&self, connection: u32, direction: Direction, cluster: u128) -> Split {
        let stream = self.stream(connection, direction);
        let mut chunks = self.chunks(connection, direction);
        if chunks.is_empty() && !stream.is_empty() {
            chunks.push((0, stream.len(), 0.0));
        }
        let mut reader = FrameReader::new(cluster);
        let mut split = Split {
            frames: Vec::new(),
            error: None,
            remainder_size: 0,
        };
        let mut offset = 0;
        for (chunk_offset, chunk_size, time) in chunks {
            assert_eq!(chunk_offset, offset, "segments are contiguous");
            let mut chunk = &stream[chunk_offset..chunk_offset + chunk_size];
            offset += chunk_size;
            while !chunk.is_empty() {
                let taken = reader.feed(chunk);
                chunk = &chunk[taken..];
                loop {
                    match reader.next_message() {
                        Ok(Some(message)) => split.frames.push(Frame {
                            connection,
                            time,
                            header: message.header.clone(),
                            bytes: message.to_vec(),
                        }),
                        Ok(None) => break,
                        Err(error) => {
                            split.error = Some(error);
                            return split;
                        }
                    }
                }
            }
        }
        assert_eq!(offset, stream.len(), "segments cover the stream");
        split.remainder_size = reader.buffered_size();
        split
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Direction {
    ClientToServer,
    ServerToClient,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::ClientToServer => "c2s",
            Direction::ServerToClient => "s2c",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Frame {
    pub connection: u32,
    pub time: f64,
    pub header: Header,
    pub bytes: Vec<u8>,
}

impl Frame {
    pub(crate) fn body(&self) -> &[u8] {
        &self.bytes[tally_wire::HEADER_SIZE..]
    }
}

pub(crate) struct Split {
    pub frames: Vec<Frame>,
    /// Why the reader gave up, if it did: the server closes the connection there.
    pub error: Option<FrameError>,
    /// Bytes of an incomplete last message.
    pub remainder_size: usize,
}
