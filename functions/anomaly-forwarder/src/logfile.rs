//! CloudTrail log files: `AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz`,
//! gzip (possibly several members) of `{"Records":[...]}`.
//!
//! Streamed: the decompressor feeds the JSON reader, and each element of `Records` is handed to
//! the caller as it is read, so memory stays flat whatever the file size (the only thing that
//! grows is an 8-byte hash per `eventID`, for de-duplication). A truncated or corrupt file is an
//! error naming how far it got, after the records before the damage were delivered.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
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
    // Keyed per scan, so no one can choose ids that collide; the set then takes the hashes
    // as they are instead of hashing them again.
    let keys = RandomState::new();
    let mut seen = HashSet::<u64, BuildHasherDefault<PreHashed>>::default();
    let mut deliver = |raw: &str| {
        if let Some(id) = event_id(raw)
            && !seen.insert(keys.hash_one(id))
        {
            stats.duplicates += 1;
            return;
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

/// A hasher for keys that are hashes already.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64`s are hashed here (`write_u64`); anything else is folded in, never lost.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
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
/// nesting, without building anything: each element's bytes are copied once, into the batch
/// handed to the caller, which parses them. A malformed element is the record parser's to
/// reject; a file that ends inside the array, or holds no `Records`, is an error. Memory: one
/// batch at a time.
struct Splitter {
    /// Complete elements back to back, then the bytes of the element being read.
    records: Vec<u8>,
    /// Where each complete element in `records` ends.
    ends: Vec<usize>,
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
            records: Vec::with_capacity(BATCH_BYTES + 16 * 1024),
            ends: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            state: SplitState::Outside,
            key: Vec::new(),
            collecting_key: false,
        }
    }

    fn feed(&mut self, chunk: &[u8]) -> Result<(), SplitError> {
        let mut element_start = (self.state == SplitState::Element).then_some(0);
        let mut i = 0;
        while i < chunk.len() {
            if self.state == SplitState::Element {
                i = self.step_within_element(chunk, i);
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
                            self.records.extend_from_slice(&chunk[start..=i]);
                            self.emit();
                            self.state = SplitState::Between;
                        }
                        SplitState::Element if self.depth == 1 => {
                            // `]` right after a scalar element.
                            let start = element_start.take().unwrap_or(0);
                            self.records.extend_from_slice(&chunk[start..i]);
                            self.emit();
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
                    self.records.extend_from_slice(&chunk[start..i]);
                    self.emit();
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
            self.records.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    /// Inside an element, steps over everything that cannot end it (strings, nested brackets,
    /// the commas and colons within) with the state in locals, and returns the index of the
    /// byte that may end it (a bracket closing to the array's depth, or a comma at that depth),
    /// or the chunk's length. Most of a log file's bytes pass through here.
    fn step_within_element(&mut self, chunk: &[u8], mut i: usize) -> usize {
        let mut depth = self.depth;
        let mut in_string = self.in_string;
        let mut escaped = self.escaped;
        while i < chunk.len() {
            if in_string {
                if escaped {
                    escaped = false;
                    i += 1;
                    continue;
                }
                // Eight bytes at a time (most strings are short, so a vectorised search would
                // spend more on its setup than on the bytes).
                match find_quote_or_backslash(&chunk[i..]) {
                    Some(at) => {
                        i += at;
                        if chunk[i] == b'\\' {
                            escaped = true;
                        } else {
                            in_string = false;
                        }
                        i += 1;
                    }
                    None => i = chunk.len(),
                }
                continue;
            }
            // Only quotes, brackets and commas change anything: step over colons, numbers,
            // literals and whitespace.
            while i < chunk.len() && !STRUCTURAL[chunk[i] as usize] {
                i += 1;
            }
            let Some(&byte) = chunk.get(i) else { break };
            match byte {
                b'"' => in_string = true,
                b'{' | b'[' => depth += 1,
                // Closes the element (or, after a scalar element, the array): the caller's.
                b'}' | b']' if depth <= 3 => break,
                b'}' | b']' => depth -= 1,
                b',' if depth <= 2 => break,
                _ => {}
            }
            i += 1;
        }
        self.depth = depth;
        self.in_string = in_string;
        self.escaped = escaped;
        i
    }

    /// The element being read is complete. (It starts at a non-blank byte; a scalar element
    /// may end with blanks before its comma.)
    fn emit(&mut self) {
        while self.records.last().is_some_and(u8::is_ascii_whitespace) {
            self.records.pop();
        }
        self.ends.push(self.records.len());
    }

    /// The complete elements read so far, as text, leaving the element being read (if any)
    /// for the next batch. Elements are checked to be UTF-8 here, a batch at a time: on a
    /// failure, the batch holds the elements before the first bad byte, and the error follows.
    fn take_batch(&mut self, spare: Batch) -> (Batch, Option<SplitError>) {
        let mut next = spare.text.into_bytes();
        let mut next_ends = spare.ends;
        next.clear();
        next_ends.clear();
        let complete = self.ends.last().copied().unwrap_or(0);
        next.extend_from_slice(&self.records[complete..]);
        self.records.truncate(complete);
        let bytes = std::mem::replace(&mut self.records, next);
        let mut ends = std::mem::replace(&mut self.ends, next_ends);
        match String::from_utf8(bytes) {
            Ok(text) => (Batch { text, ends }, None),
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                ends.retain(|end| *end <= valid);
                let mut bytes = e.into_bytes();
                bytes.truncate(ends.last().copied().unwrap_or(0));
                let text = String::from_utf8(bytes).unwrap_or_default();
                (Batch { text, ends }, Some(SplitError::Utf8))
            }
        }
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
    // Hands over the complete records; false when that failed or the caller stopped
    // listening (its own error): stop reading.
    let hand_over = |splitter: &mut Splitter| {
        let spare = recycled.try_recv().unwrap_or_default();
        let (batch, bad_text) = splitter.take_batch(spare);
        if !batch.ends.is_empty() && out.send(Handover::Records(batch)).is_err() {
            return false;
        }
        match bad_text {
            Some(e) => {
                fail(e);
                false
            }
            None => true,
        }
    };
    loop {
        let read = match fill(&mut reader, &mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                if hand_over(&mut splitter) {
                    fail(SplitError::Io(e));
                }
                return;
            }
        };
        if let Err(e) = splitter.feed(&chunk[..read]) {
            // The records before the damage first (or bad text among them, found first).
            if hand_over(&mut splitter) {
                fail(e);
            }
            return;
        }
        if splitter.records.len() >= BATCH_BYTES && !hand_over(&mut splitter) {
            return;
        }
    }
    if !hand_over(&mut splitter) {
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
    fn records_are_the_same_wherever_the_chunks_are_cut() {
        let file = br#"{"Records":[{"eventID":"a","s":"}{][\"\\,","n":[1,[2,{"x":"]"}]]},
            "scalar, \"quoted\"", 12, {"eventID":"b","e":"\\","t":{"u":"\u00e9"}}]}"#;
        let split = |size: usize| {
            let mut splitter = Splitter::new();
            let mut records = Vec::new();
            for chunk in file.chunks(size) {
                splitter.feed(chunk).unwrap();
                // Hand over after every chunk, so elements are also cut across batches.
                let (batch, bad_text) = splitter.take_batch(Batch::default());
                assert!(bad_text.is_none());
                let mut start = 0;
                for end in batch.ends {
                    records.push(batch.text[start..end].to_owned());
                    start = end;
                }
            }
            assert_eq!(splitter.state, SplitState::Done, "chunks of {size}");
            records
        };
        let whole = split(file.len());
        assert_eq!(whole.len(), 4);
        for size in 1..=24 {
            assert_eq!(split(size), whole, "chunks of {size}");
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_damage_after_the_records_before_it() {
        let mut file = br#"{"Records":[{"eventID":"good"},{"eventID":"bad","x":""#.to_vec();
        file.extend_from_slice(&[0xff, 0xfe]);
        file.extend_from_slice(br#""},{"eventID":"after"}]}"#);
        let mut delivered = Vec::new();
        let err = scan(&file[..], |raw| delivered.push(raw.to_owned())).unwrap_err();
        assert_eq!(delivered, [r#"{"eventID":"good"}"#]);
        assert_eq!(
            err.to_string(),
            "the log file is damaged after 1 records: a record is not valid UTF-8"
        );
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
