//! JSONL file source for `deprovd simulate`: one alert document per line.
//!
//! Lines are returned as bytes, not strings, so that the normalizer reports a bad line the same way
//! it reports a bad Kafka message (as invalid JSON, with its line number), instead of this reader
//! failing the whole replay on one non-UTF-8 line.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

/// [`read_jsonl`], where the path `-` means standard input (`deprovd simulate --alerts -`).
/// Numbered lines, as [`read_jsonl`] yields them, from a file or standard input.
pub(crate) type Lines = Box<dyn Iterator<Item = Result<(usize, Vec<u8>), io::Error>>>;

pub(crate) fn read_jsonl_or_stdin(path: &Path) -> Lines {
    if path == Path::new("-") {
        Box::new(read_lines(
            Ok(Box::new(BufReader::new(io::stdin())) as Box<dyn BufRead>),
            "standard input".to_string(),
        ))
    } else {
        Box::new(read_jsonl(path))
    }
}

/// Reads `path` lazily and yields `(line number, line bytes)` for every line that holds a document.
///
/// Line numbers are 1-based and count every physical line, so they match an editor. Blank lines and
/// lines whose first non-blank byte is `#` are skipped (fixture files carry comments). The trailing
/// `\n` / `\r\n` is removed. An I/O error (including failing to open the file) is yielded once and
/// ends the iteration, so the caller sees the error rather than a silently short replay.
pub(crate) fn read_jsonl(
    path: &Path,
) -> impl Iterator<Item = Result<(usize, Vec<u8>), io::Error>> + use<> {
    let name = path.display().to_string();
    let reader = File::open(path)
        .map(|f| Box::new(BufReader::new(f)) as Box<dyn BufRead>)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {name}: {e}")));
    read_lines(reader, name)
}

fn read_lines(
    mut reader: io::Result<Box<dyn BufRead>>,
    name: String,
) -> impl Iterator<Item = Result<(usize, Vec<u8>), io::Error>> {
    let mut line_no = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let r = match reader.as_mut() {
            Ok(r) => r,
            Err(e) => {
                done = true;
                return Some(Err(io::Error::new(e.kind(), e.to_string())));
            }
        };
        loop {
            let mut buf = Vec::new();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) => {
                    done = true;
                    return None;
                }
                Ok(_) => {
                    line_no += 1;
                    while matches!(buf.last(), Some(b'\n' | b'\r')) {
                        buf.pop();
                    }
                    match buf.iter().find(|b| !b.is_ascii_whitespace()) {
                        None | Some(b'#') => continue,
                        Some(_) => return Some(Ok((line_no, buf))),
                    }
                }
                Err(e) => {
                    done = true;
                    let e = io::Error::new(
                        e.kind(),
                        format!("reading {name} after line {line_no}: {e}"),
                    );
                    return Some(Err(e));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    #[test]
    fn skips_blank_and_comment_lines_keeping_physical_line_numbers() {
        let f = file_with(
            b"# fixtures\n{\"a\":1}\r\n\n   \n  # indented comment\n{\"b\":2}\n{\"c\":3}",
        );
        let lines: Vec<_> = read_jsonl(f.path()).map(Result::unwrap).collect();
        assert_eq!(
            lines,
            vec![
                (2, b"{\"a\":1}".to_vec()),
                (6, b"{\"b\":2}".to_vec()),
                (7, b"{\"c\":3}".to_vec()),
            ]
        );
    }

    #[test]
    fn non_utf8_line_is_passed_through_for_the_normalizer_to_reject() {
        let f = file_with(b"{\"a\":1}\n\xff\xfe\n");
        let lines: Vec<_> = read_jsonl(f.path()).map(Result::unwrap).collect();
        assert_eq!(lines[1], (2, vec![0xff, 0xfe]));
    }

    #[test]
    fn missing_file_yields_one_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.jsonl");
        let items: Vec<_> = read_jsonl(&path).collect();
        assert_eq!(items.len(), 1);
        let err = items.into_iter().next().unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope.jsonl"), "{err}");
    }

    #[test]
    fn empty_file_yields_nothing() {
        let f = file_with(b"");
        assert_eq!(read_jsonl(f.path()).count(), 0);
    }
}
