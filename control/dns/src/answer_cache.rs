//! Encoded UDP answers kept per receive loop and reused for identical questions.
//!
//! The key is the whole query except the ID and the RD/CD bits (the only header fields a
//! response echoes), so a hit is by construction the message the full path produced for the
//! same bytes; the loop patches the ID and the two bits in and sends it. Only cluster answers
//! that need nothing upstream are stored (see [`crate::handler::Prepared::is_cacheable`]), and
//! the whole cache is dropped when the snapshot generation moves, so an answer never outlives
//! the state it was computed from. Each loop owns its cache: no lock, no sharing, and after
//! the first query of a name no allocation.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

/// Longest query cached; longer ones (large EDNS options) always take the full path.
pub const MAX_QUERY: usize = 512;
/// Entries per loop; at the bound the cache starts over, so random names cannot grow memory.
pub const MAX_ENTRIES: usize = 32 * 1024;

/// Header bits a response copies from its query: RD (byte 2) and CD (byte 3).
const RD: u8 = 0x01;
const CD: u8 = 0x10;

#[derive(Debug)]
pub struct Cached {
    response: Box<[u8]>,
    pub qtype: Option<RecordType>,
    pub rcode: ResponseCode,
}

#[derive(Debug, Default)]
pub struct AnswerCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Cached>,
    /// Reused buffer for building lookup keys.
    key: Vec<u8>,
}

/// Writes the cache key of `query` (at least 12 bytes) into `key`.
fn make_key(query: &[u8], key: &mut Vec<u8>) {
    key.clear();
    key.extend_from_slice(&query[2..]);
    key[0] &= !RD;
    key[1] &= !CD;
}

impl AnswerCache {
    /// Forgets everything if `generation` is not the one the entries were made under.
    pub fn check_generation(&mut self, generation: u64) {
        if generation != self.generation {
            self.entries.clear();
            self.generation = generation;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// On a hit, writes the response for `query` into `out` (ID and RD/CD from the query).
    pub fn answer(&mut self, query: &[u8], out: &mut Vec<u8>) -> Option<&Cached> {
        if query.len() < 12 || query.len() > MAX_QUERY {
            return None;
        }
        make_key(query, &mut self.key);
        let hit = self.entries.get(self.key.as_slice())?;
        out.clear();
        out.extend_from_slice(&hit.response);
        out[0] = query[0];
        out[1] = query[1];
        out[2] = (out[2] & !RD) | (query[2] & RD);
        out[3] = (out[3] & !CD) | (query[3] & CD);
        Some(hit)
    }

    /// Stores the response the full path produced for `query`.
    pub fn insert(
        &mut self,
        query: &[u8],
        response: &[u8],
        qtype: Option<RecordType>,
        rcode: ResponseCode,
    ) {
        if query.len() < 12 || query.len() > MAX_QUERY || response.len() < 12 {
            return;
        }
        if self.entries.len() >= MAX_ENTRIES {
            self.entries.clear();
        }
        make_key(query, &mut self.key);
        self.entries.insert(
            self.key.as_slice().into(),
            Cached {
                response: response.into(),
                qtype,
                rcode,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, flags: [u8; 2], name: &[u8]) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&flags);
        q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
        q.extend_from_slice(name);
        q.extend_from_slice(&[0, 1, 0, 1]);
        q
    }

    #[test]
    fn hit_takes_id_and_rd_cd_from_the_query() {
        let mut c = AnswerCache::default();
        let q1 = query(7, [0x01, 0x00], b"\x01a\x00");
        let mut resp = q1.clone();
        resp[2] = 0x85; // QR AA RD
        resp[3] = 0x00;
        c.insert(&q1, &resp, Some(RecordType::A), ResponseCode::NoError);
        let q2 = query(0xbeef, [0x00, 0x10], b"\x01a\x00"); // no RD, CD set
        let mut out = Vec::new();
        let hit = c.answer(&q2, &mut out).expect("same question hits");
        assert_eq!(hit.qtype, Some(RecordType::A));
        assert_eq!(&out[..4], &[0xbe, 0xef, 0x84, 0x10]);
        assert_eq!(&out[4..], &resp[4..]);
    }

    #[test]
    fn other_bytes_other_case_or_new_generation_miss() {
        let mut c = AnswerCache::default();
        let q = query(1, [1, 0], b"\x01a\x00");
        c.insert(&q, &q, None, ResponseCode::NoError);
        let mut out = Vec::new();
        assert!(c
            .answer(&query(1, [1, 0], b"\x01A\x00"), &mut out)
            .is_none());
        assert!(c
            .answer(&query(1, [0x81, 0], b"\x01a\x00"), &mut out)
            .is_none());
        assert!(c.answer(&q[..11], &mut out).is_none());
        c.check_generation(1);
        assert!(c.answer(&q, &mut out).is_none());
        assert!(c.is_empty());
    }

    #[test]
    fn bounded() {
        let mut c = AnswerCache::default();
        for i in 0..(MAX_ENTRIES + 10) as u32 {
            let mut name = vec![4];
            name.extend_from_slice(&i.to_be_bytes());
            name.push(0);
            let q = query(1, [1, 0], &name);
            c.insert(&q, &q, None, ResponseCode::NoError);
        }
        assert!(c.len() <= MAX_ENTRIES);
        let long = vec![0u8; MAX_QUERY + 1];
        c.insert(&long, &long, None, ResponseCode::NoError);
        assert!(c.answer(&long, &mut Vec::new()).is_none());
    }
}
