//! Calling libjpeg (through the mozjpeg crate): its fatal errors unwind out
//! of the C code as panics, and this turns one into the item's reason; the
//! metadata of a JPEG libjpeg reads; and whole-image decoding for the JPEGs
//! only libjpeg reads here (arithmetic-coded).

use std::panic::AssertUnwindSafe;

use image::metadata::Orientation;
use image::{DynamicImage, GrayImage, RgbImage};

use super::decode::Decoded;
use crate::stage::StageError;

/// Run `f`, which calls libjpeg; a fatal libjpeg error comes back as its
/// message, without the crate's prefix.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = crate::panics::message(payload.as_ref()).unwrap_or("libjpeg failed");
        msg.strip_prefix("libjpeg fatal error: ")
            .unwrap_or(msg)
            .to_string()
    })
}

/// A JPEG's frame, from its SOF marker: width, height and components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    pub components: u8,
}

/// The frame of an arithmetic-coded JPEG (SOF9-SOF11, SOF13-SOF15), `None`
/// for any other file, one whose frame comes after its first scan, or one
/// whose markers can't be walked. zune-jpeg reads no arithmetic coding;
/// libjpeg, built with it, does.
pub(crate) fn arithmetic_frame(bytes: &[u8]) -> Option<Frame> {
    let mut pos = 2;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    loop {
        if *bytes.get(pos)? != 0xFF {
            return None;
        }
        // Any number of 0xFF may pad before a marker.
        while *bytes.get(pos + 1)? == 0xFF {
            pos += 1;
        }
        let marker = *bytes.get(pos + 1)?;
        pos += 2;
        match marker {
            // Standalone markers: no length follows.
            0x01 | 0xD0..=0xD7 => continue,
            // A scan or the end before any frame.
            0xD9 | 0xDA => return None,
            _ => {}
        }
        let len = usize::from(u16::from_be_bytes([*bytes.get(pos)?, *bytes.get(pos + 1)?]));
        let body = bytes.get(pos + 2..pos + len)?;
        match marker {
            0xC9..=0xCB | 0xCD..=0xCF => {
                let [_precision, h1, h0, w1, w0, components, ..] = *body else {
                    return None;
                };
                let (height, width) = (u16::from_be_bytes([h1, h0]), u16::from_be_bytes([w1, w0]));
                // A height of 0 is given later by a DNL marker: left to the
                // general decoder, whose error says so.
                return (height > 0 && width > 0).then_some(Frame {
                    width: u32::from(width),
                    height: u32::from(height),
                    components,
                });
            }
            0xC0..=0xC3 | 0xC5..=0xC7 => return None,
            _ => pos += len,
        }
    }
}

/// A metadata block of a JPEG, if it has one.
pub(crate) type Block = Option<Vec<u8>>;

/// The EXIF block (after its `Exif\0\0` header), the ICC profile (its
/// APP2 chunks joined in order) and the XMP packet of a JPEG whose APP1
/// and APP2 markers libjpeg kept.
pub(crate) fn jpeg_metadata<R>(dec: &mozjpeg::Decompress<R>) -> (Block, Block, Block) {
    const ICC_TAG: &[u8] = b"ICC_PROFILE\0";
    const XMP_TAG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
    let mut exif = None;
    let mut xmp = None;
    let mut chunks: Vec<(u8, &[u8])> = Vec::new();
    for m in dec.markers() {
        match m.marker {
            mozjpeg::Marker::APP(1) => {
                if let Some(rest) = m.data.strip_prefix(b"Exif\0\0".as_slice()) {
                    exif.get_or_insert_with(|| rest.to_vec());
                } else if let Some(rest) = m.data.strip_prefix(XMP_TAG) {
                    xmp.get_or_insert_with(|| rest.to_vec());
                }
            }
            mozjpeg::Marker::APP(2) => {
                if let Some(rest) = m.data.strip_prefix(ICC_TAG)
                    && rest.len() >= 2
                {
                    chunks.push((rest[0], &rest[2..]));
                }
            }
            _ => {}
        }
    }
    chunks.sort_by_key(|c| c.0);
    let icc = (!chunks.is_empty()).then(|| chunks.iter().flat_map(|c| c.1).copied().collect());
    (exif, icc, xmp)
}

/// A whole JPEG decoded by libjpeg, for the files the general decoder
/// can't read (see [`arithmetic_frame`]): 8-bit grey or RGB, the EXIF
/// orientation applied when `auto_orient` (and then cleared from the EXIF
/// kept), and its metadata. CMYK is converted by its profile as `cmyk`
/// does; one without a CMYK profile is refused. The caller checks the size
/// against its limits first.
pub(crate) fn decode_whole(bytes: &[u8], auto_orient: bool) -> Result<Decoded, StageError> {
    let fail = |e: String| StageError::new(format!("cannot decode jpg: {e}"));
    let (img, icc, exif, xmp) = guarded(|| whole(bytes, auto_orient))
        .and_then(|r| r)
        .map_err(fail)?;
    let (img, icc) = match img {
        Some(img) => (img, icc),
        None => {
            let profile = icc.as_deref().and_then(super::colour::cmyk_profile);
            let Some(p) = profile else {
                return Err(fail(
                    "arithmetic-coded CMYK without a CMYK colour profile is not supported".into(),
                ));
            };
            // As the general path does: the pixels are now sRGB.
            let mut img = super::cmyk::decode_cmyk_jpeg(bytes, &p)?;
            if let Some(o) = auto_orient.then(|| orientation(&exif)).flatten() {
                img.apply_orientation(o);
            }
            (img, None)
        }
    };
    let exif = exif.map(|mut e| {
        if auto_orient {
            let _ = Orientation::remove_from_exif_chunk(&mut e);
        }
        e
    });
    Ok(Decoded {
        image: img,
        format: "jpg",
        icc,
        exif,
        xmp,
    })
}

/// The orientation an EXIF block gives, without changing it.
fn orientation(exif: &Block) -> Option<Orientation> {
    let mut copy = exif.clone()?;
    Orientation::remove_from_exif_chunk(&mut copy)
}

/// What [`whole`] reads: the image (`None` for CMYK, read by `cmyk`), and
/// the ICC profile, EXIF and XMP.
type Whole = (Option<DynamicImage>, Block, Block, Block);

fn whole(bytes: &[u8], auto_orient: bool) -> Result<Whole, String> {
    use mozjpeg::{ColorSpace, Decompress, Marker};
    let dec = Decompress::builder()
        .with_markers(&[Marker::APP(1), Marker::APP(2)])
        .from_mem(bytes)
        .map_err(|e| e.to_string())?;
    let (exif, icc, xmp) = jpeg_metadata(&dec);
    let gray = match dec.color_space() {
        ColorSpace::JCS_GRAYSCALE => true,
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => false,
        _ => return Ok((None, icc, exif, xmp)),
    };
    let space = if gray {
        ColorSpace::JCS_GRAYSCALE
    } else {
        ColorSpace::JCS_RGB
    };
    let mut started = dec.to_colorspace(space).map_err(|e| e.to_string())?;
    let (w, h) = (
        u32::try_from(started.width()).map_err(|e| e.to_string())?,
        u32::try_from(started.height()).map_err(|e| e.to_string())?,
    );
    let data: Vec<u8> = started.read_scanlines().map_err(|e| e.to_string())?;
    started.finish().map_err(|e| e.to_string())?;
    let img = if gray {
        GrayImage::from_raw(w, h, data).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
    };
    let mut img = img.ok_or("pixel data does not match its size")?;
    if let Some(o) = auto_orient.then(|| orientation(&exif)).flatten() {
        img.apply_orientation(o);
    }
    Ok((Some(img), icc, exif, xmp))
}

#[cfg(test)]
mod tests {
    use super::{Frame, arithmetic_frame};

    fn data(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read(path).expect("test data")
    }

    #[test]
    fn arithmetic_frames_are_found_and_no_other() {
        let frame = Some(Frame {
            width: 640,
            height: 480,
            components: 3,
        });
        assert_eq!(arithmetic_frame(&data("arithmetic.jpg")), frame);
        assert_eq!(arithmetic_frame(&data("arithmetic-progressive.jpg")), frame);
        assert_eq!(arithmetic_frame(&data("arithmetic-twin.jpg")), None);
        // Fill bytes before a marker are allowed.
        let mut padded = data("arithmetic.jpg");
        padded.splice(2..2, [0xFF, 0xFF]);
        assert_eq!(arithmetic_frame(&padded), frame);
    }

    #[test]
    fn a_broken_header_is_no_arithmetic_frame() {
        let whole = data("arithmetic.jpg");
        // Cut before the frame header is whole: none, and nothing read out
        // of bounds; from there on, the frame.
        let sof = whole
            .windows(2)
            .position(|w| w == [0xFF, 0xC9])
            .expect("SOF9");
        let len = usize::from(u16::from_be_bytes([whole[sof + 2], whole[sof + 3]]));
        for cut in 0..whole.len().min(sof + 2 + len + 40) {
            let got = arithmetic_frame(&whole[..cut]);
            assert_eq!(got.is_some(), cut >= sof + 2 + len, "cut at {cut}: {got:?}");
        }
        // A segment length running past the end.
        let mut long = whole[..40].to_vec();
        long[4] = 0xFF;
        assert_eq!(arithmetic_frame(&long), None);
        assert_eq!(arithmetic_frame(b"not a jpeg at all"), None);
        assert_eq!(arithmetic_frame(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
    }
}
