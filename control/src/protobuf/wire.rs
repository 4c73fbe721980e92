//! The protobuf wire format: varints and length-delimited fields, nothing else (Kubernetes'
//! generated messages use no fixed-width or group encodings).

use super::ProtoError;

/// One decoded wire field.
pub(super) enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
}

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(super) fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or(ProtoError::Malformed(self.pos))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ProtoError::Malformed(self.pos))
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next (field number, value), or None at the end.
    pub(super) fn next(
        &mut self,
        message: &'static str,
    ) -> Result<Option<(u64, Wire<'a>)>, ProtoError> {
        if self.at_end() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let (field, wire) = (tag >> 3, (tag & 7) as u8);
        if field == 0 {
            return Err(ProtoError::Malformed(self.pos));
        }
        let value = match wire {
            0 => Wire::Varint(self.varint()?),
            2 => {
                let len =
                    usize::try_from(self.varint()?).map_err(|_| ProtoError::Malformed(self.pos))?;
                let end = self
                    .pos
                    .checked_add(len)
                    .filter(|e| *e <= self.buf.len())
                    .ok_or(ProtoError::Malformed(self.pos))?;
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Wire::Len(s)
            }
            _ => {
                return Err(ProtoError::WireType {
                    message,
                    field,
                    wire,
                })
            }
        };
        Ok(Some((field, value)))
    }
}
