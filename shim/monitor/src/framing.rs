//! CRI log records: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n`.
//!
//! A [`Framer`] per stream turns the bytes read from a pipe into records. A line (up to its
//! newline, which is not part of the content) becomes one `F` record; a line longer than
//! [`MAX_RECORD`] bytes (containerd's limit) becomes `P` records of exactly that size and a last
//! `F` record with the rest; bytes left without a newline at EOF become an `F` record. A line of
//! exactly [`MAX_RECORD`] bytes is one `F` record (the framer waits for the next byte to decide),
//! so no empty `F` record ever follows a `P`. Bytes are bytes: a record may end inside a UTF-8
//! sequence, as containerd's do.

use std::time::{SystemTime, UNIX_EPOCH};

/// Largest content of one record (containerd's `bufSize`).
pub const MAX_RECORD: usize = 16 * 1024;

/// `F`: this record ends a line; `P`: the line goes on in the next record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Full,
    Partial,
}

impl Tag {
    pub fn as_byte(self) -> u8 {
        match self {
            Tag::Full => b'F',
            Tag::Partial => b'P',
        }
    }
}

/// Splits one stream into records. The content of a record is handed out as two slices (what
/// was pending from earlier reads, then the rest from this read) so a line that arrives in one
/// read is never copied.
#[derive(Debug, Default)]
pub struct Framer {
    pending: Vec<u8>,
}

impl Framer {
    /// Feeds bytes read from the stream; `emit(tag, head, tail)` gets each finished record.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut impl FnMut(Tag, &[u8], &[u8])) {
        while !data.is_empty() {
            if self.pending.len() == MAX_RECORD {
                // A full buffer is a whole line if the next byte ends it, else a partial.
                let tag = if data[0] == b'\n' {
                    data = &data[1..];
                    Tag::Full
                } else {
                    Tag::Partial
                };
                emit(tag, &self.pending, &[]);
                self.pending.clear();
                continue;
            }
            let room = MAX_RECORD - self.pending.len();
            // One byte past the room: a newline there still ends a line that fits.
            let window = &data[..data.len().min(room + 1)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    emit(Tag::Full, &self.pending, &data[..i]);
                    self.pending.clear();
                    data = &data[i + 1..];
                }
                None => {
                    let take = data.len().min(room);
                    self.pending.extend_from_slice(&data[..take]);
                    data = &data[take..];
                }
            }
        }
    }

    /// The stream ended: what is left (a last line without newline) is a full record.
    pub fn finish(&mut self, emit: &mut impl FnMut(Tag, &[u8], &[u8])) {
        if !self.pending.is_empty() {
            emit(Tag::Full, &self.pending, &[]);
            self.pending.clear();
        }
    }
}

/// Length of [`rfc3339_nano`]'s output.
pub const TIMESTAMP_LEN: usize = 30;

/// `t` as `2026-12-06T04:05:06.123456789Z`: UTC, always nine fraction digits (fixed width, so
/// records sort as text; Go's RFC3339Nano parser, which the kubelet uses, accepts it).
pub fn rfc3339_nano(t: SystemTime) -> [u8; TIMESTAMP_LEN] {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000000000Z";
    put_digits(&mut out[0..4], year.clamp(0, 9999) as u64);
    put_digits(&mut out[5..7], month as u64);
    put_digits(&mut out[8..10], day as u64);
    put_digits(&mut out[11..13], sod / 3600);
    put_digits(&mut out[14..16], sod / 60 % 60);
    put_digits(&mut out[17..19], sod % 60);
    put_digits(&mut out[20..29], d.subsec_nanos() as u64);
    out
}

fn put_digits(dst: &mut [u8], mut v: u64) {
    for b in dst.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Feeds `chunks` one after another, then EOF; returns (tag, content) per record.
    fn frame(chunks: &[&[u8]]) -> Vec<(char, Vec<u8>)> {
        let mut out = Vec::new();
        let mut emit = |t: Tag, h: &[u8], tl: &[u8]| {
            out.push((t.as_byte() as char, [h, tl].concat()));
        };
        let mut f = Framer::default();
        for c in chunks {
            f.feed(c, &mut emit);
        }
        f.finish(&mut emit);
        out
    }

    fn full(s: &[u8]) -> (char, Vec<u8>) {
        ('F', s.to_vec())
    }

    #[test]
    fn lines_become_full_records() {
        assert_eq!(
            frame(&[b"a\nbc\n\nd"]),
            vec![full(b"a"), full(b"bc"), full(b""), full(b"d")]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_one_record() {
        assert_eq!(
            frame(&[b"hel", b"lo\nwor", b"ld\n"]),
            vec![full(b"hello"), full(b"world")]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_full_at_eof() {
        assert_eq!(frame(&[b"x\n", b"tail"]), vec![full(b"x"), full(b"tail")]);
        assert_eq!(frame(&[]), vec![]);
    }

    #[test]
    fn long_lines_split_into_partials_then_full() {
        let line: Vec<u8> = (0..40 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let mut input = line.clone();
        input.extend_from_slice(b"\nnext\n");
        // However the pipe chunks it, the records are the same.
        for chunk in [1usize, 7, 4096, 16 * 1024, 65536] {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            let recs = frame(&chunks);
            let tags: String = recs.iter().map(|r| r.0).collect();
            assert_eq!(tags, "PPFF", "chunk size {chunk}");
            assert_eq!(recs[0].1.len(), MAX_RECORD);
            assert_eq!(recs[1].1.len(), MAX_RECORD);
            assert_eq!(recs[2].1.len(), 40 * 1024 - 2 * MAX_RECORD);
            let joined: Vec<u8> = recs[..3].iter().flat_map(|r| r.1.clone()).collect();
            assert_eq!(joined, line);
            assert_eq!(recs[3], full(b"next"));
        }
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_one_full_record() {
        let line = vec![b'x'; MAX_RECORD];
        for split in [MAX_RECORD, MAX_RECORD - 1, 1] {
            let (a, b) = line.split_at(split);
            assert_eq!(frame(&[a, b, b"\n", b"y\n"]), vec![full(&line), full(b"y")]);
        }
        // Without a newline at all it is full at EOF, and one byte more makes a partial.
        assert_eq!(frame(&[&line]), vec![full(&line)]);
        let mut longer = line.clone();
        longer.push(b'z');
        assert_eq!(frame(&[&longer]), vec![('P', line.clone()), full(b"z")]);
    }

    #[test]
    fn bytes_are_bytes() {
        assert_eq!(frame(&[b"\xff\xfe\r\0\n"]), vec![full(b"\xff\xfe\r\0")]);
    }

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        let ts = |s: u64, n: u32| {
            String::from_utf8(rfc3339_nano(UNIX_EPOCH + Duration::new(s, n)).to_vec()).unwrap()
        };
        assert_eq!(ts(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            ts(1_796_529_906, 123_456_789),
            "2026-12-06T04:05:06.123456789Z"
        );
        // Leap day and the end of a century year.
        assert_eq!(ts(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(
            ts(4_107_542_399, 999_999_999),
            "2100-02-28T23:59:59.999999999Z"
        );
    }
}
