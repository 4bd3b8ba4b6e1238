//! A small editor for EXIF blocks (a TIFF structure, either byte order) that
//! does the two edits `encode` needs before it embeds a kept EXIF block:
//! reset the orientation to 1 (the pixels are upright by then) and remove
//! the GPS IFD (the place a photo was taken) unless it is asked for.
//!
//! It edits in place and never grows the block: the GPS pointer is taken
//! out of IFD0 and the GPS directory and the values it points to are
//! zeroed, so a reader that scans the bytes finds no position either.
//! Every offset is checked against the block; hostile bytes give an error,
//! never a panic or a read out of bounds.

use std::fmt;

const TAG_ORIENTATION: u16 = 0x0112;
const TAG_GPS_IFD: u16 = 0x8825;
const TYPE_SHORT: u16 = 3;
const ENTRY: usize = 12;

/// Why an EXIF block could not be edited (it is then not embedded at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExifError {
    /// No `II*\0` or `MM\0*` header.
    NotTiff,
    /// An offset or a count points outside the block.
    OutOfBounds(&'static str),
}

impl fmt::Display for ExifError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExifError::NotTiff => f.write_str("EXIF block has no TIFF header"),
            ExifError::OutOfBounds(what) => {
                write!(f, "EXIF block is damaged: {what} out of bounds")
            }
        }
    }
}

impl std::error::Error for ExifError {}

/// Reads and writes numbers in the block's byte order, within bounds.
struct Tiff<'a> {
    bytes: &'a mut [u8],
    big: bool,
}

impl Tiff<'_> {
    fn range(&self, at: usize, len: usize, what: &'static str) -> Result<usize, ExifError> {
        match at.checked_add(len) {
            Some(end) if end <= self.bytes.len() => Ok(at),
            _ => Err(ExifError::OutOfBounds(what)),
        }
    }

    fn u16(&self, at: usize, what: &'static str) -> Result<u16, ExifError> {
        let at = self.range(at, 2, what)?;
        let b = [self.bytes[at], self.bytes[at + 1]];
        Ok(if self.big {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32(&self, at: usize, what: &'static str) -> Result<u32, ExifError> {
        let at = self.range(at, 4, what)?;
        let b = [
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ];
        Ok(if self.big {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    fn set_u16(&mut self, at: usize, v: u16, what: &'static str) -> Result<(), ExifError> {
        let at = self.range(at, 2, what)?;
        let b = if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.bytes[at..at + 2].copy_from_slice(&b);
        Ok(())
    }

    fn zero(&mut self, at: usize, len: usize, what: &'static str) -> Result<(), ExifError> {
        let at = self.range(at, len, what)?;
        self.bytes[at..at + len].fill(0);
        Ok(())
    }

    /// Offset of IFD0 and its entry count, checked to fit.
    fn ifd0(&self) -> Result<(usize, usize), ExifError> {
        let at = self.u32(4, "IFD0 offset")? as usize;
        self.ifd_at(at, "IFD0")
    }

    fn ifd_at(&self, at: usize, what: &'static str) -> Result<(usize, usize), ExifError> {
        let n = usize::from(self.u16(at, what)?);
        // The entries and the next-IFD offset after them.
        self.range(at + 2, n * ENTRY + 4, what)?;
        Ok((at, n))
    }

    /// Byte size of one value of a TIFF field type (unknown types: 1).
    fn type_size(t: u16) -> usize {
        match t {
            3 | 8 => 2,
            4 | 9 | 11 | 13 => 4,
            5 | 10 | 12 => 8,
            _ => 1,
        }
    }
}

/// Parse the header: the byte order, checked magic number.
fn open(bytes: &mut [u8]) -> Result<Tiff<'_>, ExifError> {
    let big = match bytes.get(..4) {
        Some([b'I', b'I', 42, 0]) => false,
        Some([b'M', b'M', 0, 42]) => true,
        _ => return Err(ExifError::NotTiff),
    };
    Ok(Tiff { bytes, big })
}

/// `exif` with its orientation set to 1 and, unless `keep_gps`, its GPS
/// IFD removed. An error when the block is not a TIFF structure or an
/// offset it holds points outside it.
pub fn clean(exif: &[u8], keep_gps: bool) -> Result<Vec<u8>, ExifError> {
    let mut out = exif.to_vec();
    let mut t = open(&mut out)?;
    reset_orientation(&mut t)?;
    if !keep_gps {
        remove_gps(&mut t)?;
    }
    Ok(out)
}

fn reset_orientation(t: &mut Tiff<'_>) -> Result<(), ExifError> {
    let (ifd, n) = t.ifd0()?;
    for i in 0..n {
        let e = ifd + 2 + i * ENTRY;
        if t.u16(e, "entry")? == TAG_ORIENTATION && t.u16(e + 2, "entry")? == TYPE_SHORT {
            // A SHORT with count 1 sits in the first two bytes of the value field.
            t.set_u16(e + 8, 1, "orientation")?;
        }
    }
    Ok(())
}

fn remove_gps(t: &mut Tiff<'_>) -> Result<(), ExifError> {
    let (ifd, n) = t.ifd0()?;
    let mut i = 0;
    let mut n = n;
    while i < n {
        let e = ifd + 2 + i * ENTRY;
        if t.u16(e, "entry")? != TAG_GPS_IFD {
            i += 1;
            continue;
        }
        let gps = t.u32(e + 8, "GPS offset")? as usize;
        // A GPS directory that can't be walked is still unlinked below;
        // only its bytes stay, unreachable.
        let _ = zero_ifd(t, gps);
        // Shift the following entries and the next-IFD offset up by one
        // entry, then clear the freed slot at the end.
        let tail_start = e + ENTRY;
        let tail_end = ifd + 2 + n * ENTRY + 4;
        t.range(tail_start, tail_end - tail_start, "IFD0")?;
        t.bytes.copy_within(tail_start..tail_end, e);
        t.zero(tail_end - ENTRY, ENTRY, "IFD0")?;
        n -= 1;
        let count = u16::try_from(n).map_err(|_| ExifError::OutOfBounds("IFD0 count"))?;
        t.set_u16(ifd, count, "IFD0 count")?;
    }
    Ok(())
}

/// Zero a directory and the out-of-line values its entries point to.
fn zero_ifd(t: &mut Tiff<'_>, at: usize) -> Result<(), ExifError> {
    let (ifd, n) = t.ifd_at(at, "GPS IFD")?;
    for i in 0..n {
        let e = ifd + 2 + i * ENTRY;
        let size = Tiff::type_size(t.u16(e + 2, "GPS entry")?);
        let len = (t.u32(e + 4, "GPS entry")? as usize).saturating_mul(size);
        if len > 4 {
            let off = t.u32(e + 8, "GPS value")? as usize;
            // Values that point outside are skipped, not fatal: nothing
            // can be read there either.
            let _ = t.zero(off, len, "GPS value");
        }
    }
    t.zero(ifd, 2 + n * ENTRY + 4, "GPS IFD")
}

#[cfg(test)]
#[path = "exif_tests.rs"]
mod tests;
