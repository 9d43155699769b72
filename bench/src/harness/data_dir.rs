//! The server's data directory: a fresh temp dir on the real disk, removed at the end unless
//! kept, and the filesystem it is on (fsync costs nothing on tmpfs, so the reports name it).

use std::path::{Path, PathBuf};

use crate::harness::options::ServerArgs;
use crate::harness::report;

/// The data directory: `PARENT/SCENARIO-data-XXXX` (a temp dir, removed on drop unless kept).
pub(crate) struct DataDir {
    /// Its path.
    pub path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl DataDir {
    /// A fresh, empty directory under `--data-dir` (default: the target directory); `tally
    /// start` formats it on first start.
    pub(crate) fn new(server: &ServerArgs, scenario: &str) -> DataDir {
        let parent = match &server.data_dir {
            Some(parent) => parent.clone(),
            None => report::out_dir()
                .parent()
                .expect("out_dir is <target>/bench")
                .to_path_buf(),
        };
        std::fs::create_dir_all(&parent)
            .unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        let temp = tempfile::Builder::new()
            .prefix(&format!("{scenario}-data-"))
            .tempdir_in(&parent)
            .unwrap_or_else(|e| panic!("temp dir in {}: {e}", parent.display()));
        if server.keep_data {
            let path = temp.keep();
            DataDir { path, _temp: None }
        } else {
            DataDir {
                path: temp.path().to_path_buf(),
                _temp: Some(temp),
            }
        }
    }

    /// The filesystem type it is on.
    pub(crate) fn filesystem(&self) -> String {
        filesystem_type(&self.path)
    }
}

/// The filesystem type of `path` from /proc/self/mounts (longest matching mount point).
fn filesystem_type(path: &Path) -> String {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(mount_point)
                .then(|| (mount_point.len(), kind.to_string()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}
