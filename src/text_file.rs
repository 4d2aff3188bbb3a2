//! Reading a configuration file (a scenario, canned responses, a policy) or `decode`'s input
//! whole, up to a size: a wrong path such as /dev/zero, or a log given by mistake, must not take
//! the machine's memory.

use std::io::{self, Read};
use std::path::Path;

/// The text of `path`, failing with `InvalidData` when it holds more than `limit` bytes (or is
/// not UTF-8).
pub fn read_at_most(path: &Path, limit: u64) -> io::Result<String> {
    let bytes = read_bytes_at_most(std::fs::File::open(path)?, limit)?;
    String::from_utf8(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

/// All of `input`, failing with `InvalidData` when it holds more than `limit` bytes, having
/// read no more than one byte past the limit.
pub fn read_bytes_at_most(input: impl Read, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, the most read"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_limit_is_refused_after_reading_no_more() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("text");
        std::fs::write(&path, "0123456789").expect("writes");
        assert_eq!(read_at_most(&path, 10).expect("fits"), "0123456789");
        let error = read_at_most(&path, 9).expect_err("over");
        assert_eq!(error.to_string(), "larger than 9 bytes, the most read");
        std::fs::write(&path, [0xff, 0xfe]).expect("writes");
        assert_eq!(
            read_at_most(&path, 10).expect_err("not UTF-8").kind(),
            io::ErrorKind::InvalidData
        );
        if Path::new("/dev/zero").exists() {
            let error = read_at_most(Path::new("/dev/zero"), 1 << 20).expect_err("endless");
            assert!(error.to_string().starts_with("larger than"), "{error}");
        }
    }
}
