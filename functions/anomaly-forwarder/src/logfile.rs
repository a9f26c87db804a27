//! CloudTrail log files: `AWSLogs/[<org-id>/]<account>/CloudTrail/<region>/YYYY/MM/DD/*.json.gz`,
//! gzip (possibly several members) of `{"Records":[...]}`.
//!
//! Streamed: the decompressor feeds the JSON reader, and each element of `Records` is handed to
//! the caller as it is read, so memory stays flat whatever the file size (the only thing that
//! grows is an 8-byte hash per `eventID`, for de-duplication). A truncated or corrupt file is an
//! error naming how far it got, after the records before the damage were delivered.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, Read};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BUFFER: usize = 256 * 1024;

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
pub fn scan<R: Read>(
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
    let mut deliver = |raw: &RawValue| {
        if let Some(id) = event_id(raw.get()) {
            let mut hasher = DefaultHasher::new();
            id.hash(&mut hasher);
            if !seen.insert(hasher.finish()) {
                stats.duplicates += 1;
                return;
            }
        }
        stats.records += 1;
        on_record(raw.get());
    };
    let result = if gzip {
        let decoder = flate2::read::MultiGzDecoder::new(input);
        read_records(BufReader::with_capacity(BUFFER, decoder), &mut deliver)
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

/// Only the position and kind of a JSON error: never the text around it.
fn describe(e: &serde_json::Error) -> String {
    if e.is_io() {
        // Decompression errors (truncated member, bad CRC) arrive as I/O errors.
        let text = e.to_string();
        let cut = text.find(" at line").unwrap_or(text.len());
        text[..cut].to_owned()
    } else {
        format!(
            "{:?} error at line {}, column {}",
            e.classify(),
            e.line(),
            e.column()
        )
    }
}

/// The `eventID` of a raw record, found without parsing the whole record.
fn event_id(raw: &str) -> Option<&str> {
    let at = raw.find("\"eventID\"")?;
    let rest = raw[at + 9..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// Returns whether a `Records` array was found.
fn read_records<R: Read>(
    reader: R,
    deliver: &mut dyn FnMut(&RawValue),
) -> Result<bool, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let found = deserializer.deserialize_map(Top { deliver })?;
    deserializer.end()?;
    Ok(found)
}

struct Top<'f> {
    deliver: &'f mut dyn FnMut(&RawValue),
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a CloudTrail log file object with `Records`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "Records" {
                map.next_value_seed(RecordsSeed {
                    deliver: &mut *self.deliver,
                })?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

struct RecordsSeed<'f> {
    deliver: &'f mut dyn FnMut(&RawValue),
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of CloudTrail records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(record) = seq.next_element::<Box<RawValue>>()? {
            (self.deliver)(&record);
        }
        Ok(())
    }
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
