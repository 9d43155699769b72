//! The command-line options every scenario that runs a `tally start` child shares, flattened
//! into its own `Args` (`#[command(flatten)]`), so that they read the same everywhere: the data
//! directory, the `tally` binary, the segment size and `--smoke`.

use std::path::PathBuf;

/// The journal segment size `tally start` uses by default, MiB.
const SEGMENT_MIB: u64 = 256;
/// The segment size with `--smoke`, MiB: small data directories.
const SMOKE_SEGMENT_MIB: u64 = 8;

/// Where the server's data goes and which `tally` runs.
#[derive(clap::Args, Debug)]
pub(crate) struct ServerArgs {
    /// Parent directory of the data directory [default: a temp dir under the target directory;
    /// it must be on the real disk, not tmpfs, for fsync to cost what it costs]
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Keep the data directory afterwards
    #[arg(long)]
    pub keep_data: bool,
    /// The `tally` binary [default: next to this one, else built with cargo]
    #[arg(long)]
    pub tally: Option<PathBuf>,
    /// Journal segment size, MiB [default: 256 (the server's); 8 with --smoke]
    #[arg(long)]
    segment_mib: Option<u64>,
    /// Tiny sizes (for CI: checks that the harness works; the figures mean nothing)
    #[arg(long)]
    pub smoke: bool,
}

impl ServerArgs {
    /// `--segment-mib`, else the default for a smoke run or a real one.
    pub(crate) fn segment_mib(&self) -> u64 {
        self.segment_mib.unwrap_or(if self.smoke {
            SMOKE_SEGMENT_MIB
        } else {
            SEGMENT_MIB
        })
    }
}
