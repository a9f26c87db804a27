//! CloudTrail log files: `AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz`,
//! gzip (possibly several members) of `{"Records":[...]}`.
//!
//! Streamed: the decompressor feeds the JSON reader, and each element of `Records` is handed to
//! the caller as it is read, so memory stays flat whatever the file size (the only thing that
//! grows is an 8-byte hash per `eventID`, for de-duplication). A truncated or corrupt file is an
//! error naming how far it got, after the records before the damage were delivered.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUFFER: usize = 256 * 1024;

/// Bytes of `word` equal to `byte`: the high bit of each matching byte (and possibly of bytes
/// above the first match, which [`find_quote_or_backslash`] never looks past).
#[inline]
fn matching_bytes(word: u64, byte: u8) -> u64 {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = word ^ (LOW * u64::from(byte));
    x.wrapping_sub(LOW) & !x & HIGH
}

/// The first `"` or `\` in `bytes`, eight bytes at a time.
#[inline]
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        let word = u64::from_le_bytes(word);
        let hits = matching_bytes(word, b'"') | matching_bytes(word, b'\\');
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|b| *b == b'"' || *b == b'\\')
        .map(|p| p + at)
}

/// The bytes that matter to the splitter inside a record.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'"' as usize] = true;
    table[b'{' as usize] = true;
    table[b'}' as usize] = true;
    table[b'[' as usize] = true;
    table[b']' as usize] = true;
    table[b',' as usize] = true;
    table
};

/// Whether an S3 key is a CloudTrail log file (digest and Insights files are not).
pub fn is_log_file_key(key: &str) -> bool {
    key.contains("/CloudTrail/") && key.ends_with(".json.gz")
}

#[derive(Debug, thiserror::Error)]
pub enum LogFileError {
    #[error("the log file is damaged after {records} records: {message}")]
    Damaged { records: u64, message: String },
    #[error("the log file has no `Records` array")]
    NoRecords,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScanStats {
    /// Records handed to the caller.
    pub records: u64,
    /// Records skipped because an earlier record had the same `eventID`.
    pub duplicates: u64,
}

/// Calls `on_record` with the raw JSON of every distinct record of a log file (gzip or plain).
///
/// Decompression runs on a second thread, a few buffers ahead of the splitter and `on_record`
/// (which parses and matches): the two halves of the work overlap where the machine has more
/// than one core, and memory stays bounded by the buffers in flight.
pub fn scan<R: Read + Send>(
    reader: R,
    mut on_record: impl FnMut(&str),
) -> Result<ScanStats, LogFileError> {
    let mut input = BufReader::with_capacity(BUFFER, reader);
    let gzip = input
        .fill_buf()
        .map(|b| b.starts_with(&GZIP_MAGIC))
        .unwrap_or(false);
    let mut stats = ScanStats::default();
    let mut seen = HashSet::new();
    let mut deliver = |raw: &str| {
        if let Some(id) = event_id(raw) {
            let mut hasher = DefaultHasher::new();
            id.hash(&mut hasher);
            if !seen.insert(hasher.finish()) {
                stats.duplicates += 1;
                return;
            }
        }
        stats.records += 1;
        on_record(raw);
    };
    let result = if gzip {
        read_records(flate2::read::MultiGzDecoder::new(input), &mut deliver)
    } else {
        read_records(input, &mut deliver)
    };
    match result {
        Ok(true) => Ok(stats),
        Ok(false) => Err(LogFileError::NoRecords),
        Err(e) => Err(LogFileError::Damaged {
            records: stats.records + stats.duplicates,
            message: describe(&e),
        }),
    }
}

/// What went wrong, never the bytes around it.
fn describe(e: &SplitError) -> String {
    match e {
        // Decompression errors (truncated member, bad CRC) arrive as I/O errors.
        SplitError::Io(e) => format!("decompression failed: {e}"),
        SplitError::Utf8 => "a record is not valid UTF-8".into(),
        SplitError::Structure(what) => (*what).into(),
    }
}

/// The `eventID` of a raw record, found without parsing the whole record.
fn event_id(raw: &str) -> Option<&str> {
    static KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"eventID\""));
    let at = KEY.find(raw.as_bytes())?;
    let rest = raw[at + 9..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Splits the top-level `Records` array into its elements while tracking JSON strings and
/// nesting, without building anything: each element's bytes go to `deliver`, which parses them.
/// A malformed element is the record parser's to reject; a file that ends inside the array, or
/// holds no `Records`, is an error. Memory: one element at a time.
struct Splitter {
    /// Bytes of the element being read (or of the key being read, before the array).
    current: Vec<u8>,
    depth: u32,
    in_string: bool,
    escaped: bool,
    state: SplitState,
    /// The last complete string key at depth 1, to recognise `"Records"`.
    key: Vec<u8>,
    collecting_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SplitState {
    /// Outside the `Records` array.
    Outside,
    /// `"Records"` was read at depth 1: waiting for its `[`.
    AwaitArray,
    /// Inside the array, between elements.
    Between,
    /// Inside an element.
    Element,
    /// The array closed.
    Done,
}

#[derive(Debug)]
enum SplitError {
    Io(std::io::Error),
    Utf8,
    Structure(&'static str),
}

impl Splitter {
    fn new() -> Self {
        Self {
            current: Vec::with_capacity(16 * 1024),
            depth: 0,
            in_string: false,
            escaped: false,
            state: SplitState::Outside,
            key: Vec::new(),
            collecting_key: false,
        }
    }

    fn feed(&mut self, chunk: &[u8], deliver: &mut dyn FnMut(&str)) -> Result<(), SplitError> {
        let mut element_start = (self.state == SplitState::Element).then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            if !self.in_string && self.state == SplitState::Element {
                // Inside a record, only quotes, brackets and commas change anything: step over
                // keys' colons, numbers, literals and whitespace in a tight loop.
                while i < chunk.len() && !STRUCTURAL[chunk[i] as usize] {
                    i += 1;
                }
                if i == chunk.len() {
                    break;
                }
            }
            let byte = chunk[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if byte == b'\\' {
                    self.escaped = true;
                } else if byte == b'"' {
                    self.in_string = false;
                    if self.collecting_key {
                        self.collecting_key = false;
                    }
                } else if self.collecting_key {
                    self.key.push(byte);
                }
                // Fast-forward through ordinary string bytes.
                if self.in_string && !self.escaped && !self.collecting_key {
                    // Eight bytes at a time (most strings are short, so a vectorised
                    // search would spend more on its setup than on the bytes).
                    let rest = &chunk[i + 1..];
                    let found = find_quote_or_backslash(rest);
                    match found {
                        Some(skip) => i += skip,
                        None => i = chunk.len() - 1,
                    }
                }
                i += 1;
                continue;
            }
            match byte {
                b'"' => {
                    self.in_string = true;
                    if self.state == SplitState::Outside && self.depth == 1 {
                        self.key.clear();
                        self.collecting_key = true;
                    }
                    if self.state == SplitState::Between {
                        // A string element (not a record): read it as an element.
                        self.state = SplitState::Element;
                        element_start = Some(i);
                    }
                }
                b'{' | b'[' => {
                    if self.state == SplitState::AwaitArray {
                        if byte != b'[' {
                            return Err(SplitError::Structure("`Records` is not an array"));
                        }
                        self.state = SplitState::Between;
                    } else if self.state == SplitState::Between {
                        self.state = SplitState::Element;
                        element_start = Some(i);
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err(SplitError::Structure("unbalanced brackets"));
                    }
                    self.depth -= 1;
                    match self.state {
                        SplitState::Element if self.depth == 2 => {
                            let start = element_start.take().unwrap_or(0);
                            self.current.extend_from_slice(&chunk[start..=i]);
                            self.emit(deliver)?;
                            self.state = SplitState::Between;
                        }
                        SplitState::Element if self.depth == 1 => {
                            // `]` right after a scalar element.
                            let start = element_start.take().unwrap_or(0);
                            self.current.extend_from_slice(&chunk[start..i]);
                            self.emit(deliver)?;
                            self.state = SplitState::Done;
                        }
                        SplitState::Between if self.depth == 1 => self.state = SplitState::Done,
                        _ => {}
                    }
                }
                b':' if self.state == SplitState::Outside
                    && self.depth == 1
                    && self.key == b"Records" =>
                {
                    self.state = SplitState::AwaitArray;
                }
                b',' if self.state == SplitState::Element && self.depth == 2 => {
                    // End of a scalar element.
                    let start = element_start.take().unwrap_or(0);
                    self.current.extend_from_slice(&chunk[start..i]);
                    self.emit(deliver)?;
                    self.state = SplitState::Between;
                }
                b',' | b' ' | b'\n' | b'\r' | b'\t' => {}
                _ => {
                    if self.state == SplitState::Between {
                        self.state = SplitState::Element;
                        element_start = Some(i);
                    }
                }
            }
            i += 1;
        }
        if let Some(start) = element_start {
            self.current.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    fn emit(&mut self, deliver: &mut dyn FnMut(&str)) -> Result<(), SplitError> {
        let text = std::str::from_utf8(&self.current).map_err(|_| SplitError::Utf8)?;
        deliver(text.trim());
        self.current.clear();
        Ok(())
    }
}

/// Batches in flight between the reading thread and the caller's.
const BATCHES: usize = 3;
/// Records are handed over in batches of about this many bytes.
const BATCH_BYTES: usize = 256 * 1024;

/// Fills `buf` as far as the reader goes; 0 only at the end.
fn fill<R: Read>(reader: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Complete records, back to back, and where each ends.
#[derive(Default)]
struct Batch {
    text: String,
    ends: Vec<usize>,
}

enum Handover {
    Records(Batch),
    /// The reader or the splitter failed after the batches before it.
    Failed(SplitError),
    /// The input ended; whether it held a `Records` array.
    Finished(bool),
}

/// The reading thread: decompresses, splits and validates, and hands over whole records.
fn produce<R: Read>(
    mut reader: R,
    out: &std::sync::mpsc::SyncSender<Handover>,
    recycled: &std::sync::mpsc::Receiver<Batch>,
) {
    let fail = |e: SplitError| {
        let _ = out.send(Handover::Failed(e));
    };
    let mut splitter = Splitter::new();
    let mut chunk = vec![0u8; BUFFER];
    let mut batch = Batch::default();
    loop {
        let read = match fill(&mut reader, &mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return fail(SplitError::Io(e)),
        };
        let fed = splitter.feed(&chunk[..read], &mut |raw: &str| {
            batch.text.push_str(raw);
            batch.ends.push(batch.text.len());
        });
        if let Err(e) = fed {
            let _ = out.send(Handover::Records(std::mem::take(&mut batch)));
            return fail(e);
        }
        if batch.text.len() >= BATCH_BYTES {
            let mut next = recycled.try_recv().unwrap_or_default();
            next.text.clear();
            next.ends.clear();
            let full = std::mem::replace(&mut batch, next);
            // The caller stopped listening (its own error): stop reading.
            if out.send(Handover::Records(full)).is_err() {
                return;
            }
        }
    }
    if !batch.ends.is_empty() && out.send(Handover::Records(batch)).is_err() {
        return;
    }
    let _ = out.send(match splitter.state {
        SplitState::Done if splitter.depth == 0 && !splitter.in_string => Handover::Finished(true),
        SplitState::Outside if splitter.depth == 0 && !splitter.in_string => {
            Handover::Finished(false)
        }
        _ => Handover::Failed(SplitError::Structure(
            "the file ends inside the `Records` array",
        )),
    });
}

/// Returns whether a `Records` array was found. Decompression and splitting run on a second
/// thread, a few batches ahead of `deliver` (which parses and matches): the two halves of the
/// work overlap where the machine has more than one core, and memory stays bounded by the
/// batches in flight.
fn read_records<R: Read + Send>(
    reader: R,
    deliver: &mut dyn FnMut(&str),
) -> Result<bool, SplitError> {
    std::thread::scope(|scope| {
        let (out, handed) = std::sync::mpsc::sync_channel::<Handover>(BATCHES);
        let (recycle, recycled) = std::sync::mpsc::channel::<Batch>();
        scope.spawn(move || produce(reader, &out, &recycled));
        for handover in handed {
            match handover {
                Handover::Records(batch) => {
                    let mut start = 0;
                    for &end in &batch.ends {
                        deliver(&batch.text[start..end]);
                        start = end;
                    }
                    let _ = recycle.send(batch);
                }
                Handover::Failed(e) => return Err(e),
                Handover::Finished(found) => return Ok(found),
            }
        }
        Err(SplitError::Structure(
            "the reading thread stopped unexpectedly",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(parts: &[&str]) -> Vec<u8> {
        // One gzip member per part: CloudTrail files may hold several.
        let mut out = Vec::new();
        for part in parts {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            encoder.write_all(part.as_bytes()).unwrap();
            out.extend(encoder.finish().unwrap());
        }
        out
    }

    #[test]
    fn the_word_search_finds_the_first_quote_or_backslash() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..2000 {
            let len = rng.usize(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.u8(0..10) {
                    0 => b'"',
                    1 => b'\\',
                    2 => 0x80 | rng.u8(..),
                    _ => rng.u8(0x20..0x7f),
                })
                .collect();
            let expected = bytes.iter().position(|b| *b == b'"' || *b == b'\\');
            assert_eq!(find_quote_or_backslash(&bytes), expected, "{bytes:?}");
        }
    }

    #[test]
    fn streams_multi_member_gzip_and_drops_duplicate_event_ids() {
        let file = gzip(&[
            r#"{"Records":[{"eventID":"a","eventName":"GetSecretValue"},"#,
            r#"{"eventID":"b"},{"eventID" : "a"},{"noId":true}]}"#,
        ]);
        let mut seen = Vec::new();
        let stats = scan(&file[..], |raw| seen.push(raw.to_owned())).unwrap();
        assert_eq!(
            stats,
            ScanStats {
                records: 3,
                duplicates: 1
            }
        );
        assert_eq!(seen[1], r#"{"eventID":"b"}"#);
    }

    #[test]
    fn damage_is_reported_after_the_good_records() {
        let mut file = gzip(&[r#"{"Records":[{"eventID":"a"},{"eventID":"b"},{"eventID":"c"}]}"#]);
        file.truncate(file.len() - 12);
        let mut delivered = 0;
        let err = scan(&file[..], |_| delivered += 1).unwrap_err();
        assert!(matches!(err, LogFileError::Damaged { .. }), "{err}");
        let plain = br#"{"Records":[{"eventID":"a"},{"eventID":"b"}"#;
        let err = scan(&plain[..], |_| {}).unwrap_err().to_string();
        assert!(err.contains("after 2 records"), "{err}");
        assert!(matches!(
            scan(&br#"{"Other":[]}"#[..], |_| {}),
            Err(LogFileError::NoRecords)
        ));
    }

    #[test]
    fn strings_escapes_nesting_and_other_keys_do_not_confuse_the_splitter() {
        let file = r#" { "Other": {"Records": [{"not":"these"}]}, "Records" : [
            {"eventID":"x1","a":"}{][\"\\","b":[{"c":[1,2,{"d":"]"}]}]} ,
            7, "text, with a comma", null,
            {"eventID":"x2","unicode":"\u00e9 é"}
          ], "Trailer": "]}" } "#;
        let mut seen = Vec::new();
        let stats = scan(file.as_bytes(), |raw| seen.push(raw.to_owned())).unwrap();
        assert_eq!(stats.records, 5);
        // Every element is exactly what a JSON parser sees in the array.
        let reference: serde_json::Value = serde_json::from_str(file).unwrap();
        let expected = reference["Records"].as_array().unwrap();
        for (raw, value) in seen.iter().zip(expected) {
            assert_eq!(
                &serde_json::from_str::<serde_json::Value>(raw).unwrap(),
                value,
                "{raw}"
            );
        }
    }

    #[test]
    fn mutated_files_never_panic() {
        let good = r#"{"Records":[{"eventID":"a","x":"}\"{"},{"eventID":"b","y":[1,{"z":"]"}]}]}"#;
        let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let mut bytes = good.as_bytes().to_vec();
            for _ in 0..rng.usize(1..4) {
                let at = rng.usize(0..bytes.len());
                let symbols = br#"{}[]",:\ a"#;
                match rng.u8(0..3) {
                    0 => bytes[at] = symbols[rng.usize(0..symbols.len())],
                    1 => bytes.insert(at, symbols[rng.usize(0..symbols.len())]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let _ = scan(&bytes[..], |raw| {
                let _ = crate::record::Record::parse(raw);
            });
        }
    }

    #[test]
    fn only_log_files_are_scanned() {
        assert!(is_log_file_key(
            "AWSLogs/o-abc/123456789012/CloudTrail/eu-west-1/2026/11/22/123456789012_CloudTrail_eu-west-1_20261122T1205Z_abc.json.gz"
        ));
        assert!(!is_log_file_key(
            "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2026/11/22/x.json.gz"
        ));
        assert!(!is_log_file_key(
            "AWSLogs/123456789012/CloudTrail-Insight/eu-west-1/2026/11/22/x.json.gz"
        ));
    }
}
