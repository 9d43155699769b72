//! Format versions: a marker of a version this binary does not read is refused with the version
//! found and the versions read; a checkpoint of such a version is passed over, naming both.

use std::fs;

use tally_checksum::checksum;
use tally_journal::{CheckpointProblem, Journal, JournalError, FORMAT_VERSION, FORMAT_VERSION_MIN};

use crate::common::{append_standard, formatted, options};

/// Sets the version field (at `offset`) of a 128-byte header and seals its checksum again.
fn version_set(bytes: &mut [u8], offset: usize, version: u32) {
    bytes[offset..offset + 4].copy_from_slice(&version.to_le_bytes());
    let sum = checksum(&bytes[16..128]);
    bytes[..16].copy_from_slice(&sum.to_le_bytes());
}

#[test]
fn an_unknown_format_version_is_refused_by_name() {
    let (_temporary, directory) = formatted();
    let path = directory.join("format");
    let mut marker = fs::read(&path).expect("read");
    version_set(&mut marker, 56, 7);
    fs::write(&path, &marker).expect("write");
    match Journal::open(&directory, options()) {
        Err(error @ JournalError::FormatVersion { version: 7, .. }) => {
            let expected = format!(
                "format version 7, this binary reads {FORMAT_VERSION_MIN}..={FORMAT_VERSION}"
            );
            assert!(error.to_string().contains(&expected), "{error}");
        }
        Err(error) => panic!("expected FormatVersion, got {error}"),
        Ok(_) => panic!("opened a journal of format version 7"),
    }
}

#[test]
fn a_checkpoint_of_an_unknown_version_is_passed_over_by_name() {
    let (_temporary, directory) = formatted();
    let (mut journal, _) = Journal::open(&directory, options()).expect("open");
    append_standard(&mut journal, 100);
    journal.write_checkpoint(1, b"state").expect("checkpoint");
    drop(journal);
    let path = directory.join("checkpoint-a");
    let mut bytes = fs::read(&path).expect("read");
    version_set(&mut bytes, 96, 9);
    fs::write(&path, &bytes).expect("write");
    let (_, recovery) = Journal::open(&directory, options()).expect("open");
    assert!(recovery.checkpoint.is_none());
    let problem = &recovery.checkpoints_rejected[0].problem;
    assert_eq!(*problem, CheckpointProblem::Version { version: 9 });
    assert!(problem
        .to_string()
        .contains("format version 9, this binary reads"));
}
