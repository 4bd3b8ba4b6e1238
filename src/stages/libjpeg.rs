//! Calling libjpeg (through the mozjpeg crate): its fatal errors unwind out
//! of the C code as panics, and this turns one into the item's reason, with
//! damaged coded data made fatal too; the metadata of a JPEG libjpeg reads;
//! and whole-image decoding for the JPEGs only libjpeg reads right here
//! (arithmetic-coded, or sampled in a way zune-jpeg misreads).

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

impl Frame {
    /// The bytes a pixel takes while libjpeg decodes it: 8-bit grey, RGB,
    /// or CMYK (read as 4 bytes, then made RGB).
    pub(crate) fn bytes_per_pixel(&self) -> u64 {
        match self.components {
            1 => 1,
            4 => 4,
            _ => 3,
        }
    }
}

/// The frame of a JPEG whose bytes are `bytes` that only libjpeg reads
/// right; see [`libjpeg_frame_in`].
pub(crate) fn libjpeg_frame(bytes: &[u8]) -> Option<Frame> {
    libjpeg_frame_in(std::io::Cursor::new(bytes))
}

/// The frame of a JPEG read from `r` that the general decoder (zune-jpeg)
/// can't read right and libjpeg does: arithmetic-coded (zune-jpeg reads no
/// arithmetic coding; libjpeg is built with it), or Huffman-coded with a
/// component sampled finer than the first (baseline, zune-jpeg decodes it
/// to stripes without an error; progressive, it fails) or by a factor of 3
/// (it refuses the header). `None` for any other file, one whose frame
/// comes after its first scan, or one whose markers end first. The walk
/// seeks past segments, so a frame behind megabytes of APP data is found
/// without reading them; like libjpeg, it skips stray bytes between
/// segments. A frame of zero size is returned as it is, for libjpeg's own
/// error.
pub(crate) fn libjpeg_frame_in(r: impl std::io::Read + std::io::Seek) -> Option<Frame> {
    use std::io::Read;
    let mut r = std::io::BufReader::new(r);
    let mut b = [0u8; 1];
    let mut start = [0u8; 2];
    r.read_exact(&mut start).ok()?;
    if start != [0xFF, 0xD8] {
        return None;
    }
    loop {
        // Up to the next 0xFF, then past any fill bytes to the marker.
        loop {
            r.read_exact(&mut b).ok()?;
            if b[0] == 0xFF {
                break;
            }
        }
        let marker = loop {
            r.read_exact(&mut b).ok()?;
            if b[0] != 0xFF {
                break b[0];
            }
        };
        match marker {
            // Not a marker (a stuffed 0xFF), or standalone: no length.
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            // A scan or the end before any frame.
            0xD9 | 0xDA => return None,
            _ => {}
        }
        let mut len = [0u8; 2];
        r.read_exact(&mut len).ok()?;
        let body = i64::from(u16::from_be_bytes(len).checked_sub(2)?);
        let frame = |f: &[u8; 6]| Frame {
            height: u32::from(u16::from_be_bytes([f[1], f[2]])),
            width: u32::from(u16::from_be_bytes([f[3], f[4]])),
            components: f[5],
        };
        match marker {
            0xC9..=0xCB | 0xCD..=0xCF => {
                let mut f = [0u8; 6];
                r.read_exact(&mut f).ok()?;
                return Some(frame(&f));
            }
            0xC0..=0xC2 => {
                let mut f = [0u8; 6];
                r.read_exact(&mut f).ok()?;
                let mut factors = Vec::with_capacity(usize::from(f[5]));
                for _ in 0..f[5] {
                    let mut c = [0u8; 3];
                    r.read_exact(&mut c).ok()?;
                    factors.push((c[1] >> 4, c[1] & 0x0F));
                }
                return misread_sampling(&factors).then(|| frame(&f));
            }
            0xC3 | 0xC5..=0xC7 => return None,
            _ => {
                r.seek_relative(body).ok()?;
            }
        }
    }
}

/// Whether zune-jpeg misreads these sampling factors (h, v), one pair a
/// component: a component sampled finer than the first, or a factor of 3.
fn misread_sampling(factors: &[(u8, u8)]) -> bool {
    let Some(&(h0, v0)) = factors.first() else {
        return false;
    };
    factors
        .iter()
        .any(|&(h, v)| h > h0 || v > v0 || h == 3 || v == 3)
}

/// At most this many scans are read: a progressive file has about ten,
/// and each scan is a pass over the whole image, so a few kilobytes of
/// repeated scan headers could otherwise keep a core busy for minutes.
/// zune-jpeg, the general decoder, stops at the same count.
pub(crate) const MAX_SCANS: usize = 100;

/// Why libjpeg should not be given `bytes`: more start-of-scan markers than
/// [`MAX_SCANS`]. (0xFF 0xDA never occurs inside coded data, where 0xFF
/// is stuffed; an embedded EXIF thumbnail's scans count too.)
pub(crate) fn too_many_scans(bytes: &[u8]) -> Option<String> {
    let scans = memchr::memmem::find_iter(bytes, &[0xFF, 0xDA]).count();
    (scans > MAX_SCANS).then(|| {
        format!("{scans} scans, more than the {MAX_SCANS} a JPEG may have here (a crafted file?)")
    })
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

/// Whether libjpeg gives `dec`'s pixels as grey (`Some(true)`) or RGB
/// (`Some(false)`); `None` for CMYK and YCCK, which `cmyk` reads.
pub(crate) fn grey<R>(dec: &mozjpeg::Decompress<R>) -> Option<bool> {
    use mozjpeg::ColorSpace;
    match dec.color_space() {
        ColorSpace::JCS_GRAYSCALE => Some(true),
        ColorSpace::JCS_YCbCr | ColorSpace::JCS_RGB => Some(false),
        _ => None,
    }
}

/// Decode at `eighths`/8 (8: full size) into 8-bit grey or RGB.
pub(crate) fn read_image<R: std::io::BufRead>(
    mut dec: mozjpeg::Decompress<R>,
    eighths: u8,
    grey: bool,
) -> Result<DynamicImage, String> {
    use mozjpeg::ColorSpace;
    dec.scale(eighths);
    let space = if grey {
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
    let img = if grey {
        GrayImage::from_raw(w, h, data).map(DynamicImage::ImageLuma8)
    } else {
        RgbImage::from_raw(w, h, data).map(DynamicImage::ImageRgb8)
    };
    img.ok_or_else(|| "pixel data does not match its size".to_string())
}

/// libjpeg's error handler with damaged data made fatal. libjpeg warns of
/// damaged entropy-coded data (a bad Huffman or arithmetic code, data
/// that ends before the scan does, a restart marker missing) and papers
/// over it, with grey or the blocks of a resync; the picture is then not
/// the photo, and must not pass for it. Its other warnings (bytes between
/// segments, an unknown JFIF revision or Adobe transform, a bad ICC
/// marker) leave the pixels right and are let be.
pub(crate) fn damage_errors() -> mozjpeg_sys::jpeg_error_mgr {
    // SAFETY: a zeroed handler is what `jpeg_std_error` fills in.
    unsafe {
        let mut err: mozjpeg_sys::jpeg_error_mgr = std::mem::zeroed();
        mozjpeg_sys::jpeg_std_error(&mut err);
        err.error_exit = Some(fatal);
        err.emit_message = Some(damage_is_fatal);
        err
    }
}

/// libjpeg's words for the message whose code its handler holds.
///
/// # Safety
/// `cinfo` is libjpeg's live object, with a handler whose message code is set.
unsafe fn message(cinfo: &mut mozjpeg_sys::jpeg_common_struct) -> String {
    // SAFETY: the caller's promise; the buffer is the 80 bytes
    // (JMSG_LENGTH_MAX) libjpeg writes at most.
    unsafe {
        let mut buffer = [0u8; 80];
        match (*cinfo.err).format_message {
            Some(format) => {
                type Format = unsafe extern "C-unwind" fn(
                    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
                    out: *mut u8,
                );
                let format: Format = std::mem::transmute(format);
                format(cinfo, buffer.as_mut_ptr());
                let text = buffer.split(|&b| b == 0).next().unwrap_or_default();
                String::from_utf8_lossy(text).into_owned()
            }
            None => format!("libjpeg message {}", (*cinfo.err).msg_code),
        }
    }
}

/// A fatal error: unwinds out of libjpeg (built for it) with its message,
/// as the mozjpeg crate's own handler does, for [`guarded`].
unsafe extern "C-unwind" fn fatal(cinfo: &mut mozjpeg_sys::jpeg_common_struct) {
    // SAFETY: libjpeg passes its live object, whose handler is ours, with
    // the message's code set.
    let msg = unsafe { message(cinfo) };
    std::panic::resume_unwind(Box::new(format!("libjpeg fatal error: {msg}")));
}

/// Whether a libjpeg warning tells of damaged coded data (see
/// [`damage_errors`]). By its words: the codes' numbers change with
/// libjpeg's build options, its messages don't.
pub(crate) fn is_damage(warning: &str) -> bool {
    const DAMAGE: [&str; 4] = [
        "premature end of data segment",
        "bad Huffman code",
        "bad arithmetic code",
        "instead of RST",
    ];
    warning.starts_with("Corrupt JPEG data:") && DAMAGE.iter().any(|d| warning.contains(d))
}

/// A warning (level -1) of damaged data is fatal; other warnings, and
/// traces (levels 0 and up, off unless asked for), are dropped.
unsafe extern "C-unwind" fn damage_is_fatal(
    cinfo: &mut mozjpeg_sys::jpeg_common_struct,
    level: std::os::raw::c_int,
) {
    if level < 0 {
        // SAFETY: as in `fatal`.
        if is_damage(&unsafe { message(cinfo) }) {
            // SAFETY: as in `fatal`.
            unsafe { fatal(cinfo) }
        }
    }
}

/// A whole JPEG decoded by libjpeg, for the files the general decoder
/// can't read right (see [`libjpeg_frame`]): 8-bit grey or RGB, the EXIF
/// orientation applied when `auto_orient` (and then cleared from the EXIF
/// kept), and its metadata. CMYK is converted as `cmyk` does it, by its
/// profile or without one. `within` judges the frame libjpeg read from the
/// header before any pixel is decoded (the caller's limits); a file of
/// over [`MAX_SCANS`] scans is refused, and one whose coded data is
/// damaged fails ([`damage_errors`]).
pub(crate) fn decode_whole(
    bytes: &[u8],
    auto_orient: bool,
    within: &dyn Fn(Frame) -> Result<(), StageError>,
) -> Result<Decoded, StageError> {
    let fail = |e: String| StageError::new(format!("cannot decode jpg: {e}"));
    if let Some(why) = too_many_scans(bytes) {
        return Err(fail(why));
    }
    let whole = match guarded(|| whole(bytes, auto_orient, within)) {
        Ok(Ok(whole)) => whole,
        Ok(Err(WholeError::Refused(e))) => return Err(e),
        Ok(Err(WholeError::Failed(e))) | Err(e) => return Err(fail(e)),
    };
    let (mut image, icc) = match whole.image {
        Some(img) => (img, whole.icc),
        None => {
            // As the general path does: by the profile, the pixels then
            // sRGB; without one, by the general decoder's formula.
            let profile = whole.icc.as_deref().and_then(super::colour::cmyk_profile);
            match profile {
                Some(p) => (super::cmyk::decode_cmyk_jpeg(bytes, &p)?, None),
                None => (
                    super::cmyk::decode_cmyk_jpeg_without_profile(bytes)?,
                    whole.icc,
                ),
            }
        }
    };
    if let Some(o) = whole.orientation {
        image.apply_orientation(o);
    }
    // Callers hand this on as `decode` normalises its images.
    debug_assert!(matches!(
        image,
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_)
    ));
    Ok(Decoded {
        image,
        format: "jpg",
        icc,
        exif: whole.exif,
        xmp: whole.xmp,
    })
}

/// What [`whole`] reads.
struct Whole {
    /// The pixels as stored; `None` for CMYK, which `cmyk` reads.
    image: Option<DynamicImage>,
    icc: Block,
    /// The EXIF block, without its orientation when that is to be applied.
    exif: Block,
    xmp: Block,
    /// The orientation to apply, taken out of `exif`.
    orientation: Option<Orientation>,
}

/// Why [`whole`] gave no image.
enum WholeError {
    /// libjpeg's own words.
    Failed(String),
    /// The caller's limits refused the frame.
    Refused(StageError),
}

impl From<String> for WholeError {
    fn from(e: String) -> Self {
        WholeError::Failed(e)
    }
}

fn whole(
    bytes: &[u8],
    auto_orient: bool,
    within: &dyn Fn(Frame) -> Result<(), StageError>,
) -> Result<Whole, WholeError> {
    use mozjpeg::{Decompress, Marker};
    let dec = Decompress::builder()
        .with_markers(&[Marker::APP(1), Marker::APP(2)])
        .with_err(damage_errors())
        .from_mem(bytes)
        .map_err(|e| e.to_string())?;
    let frame = Frame {
        width: u32::try_from(dec.width()).unwrap_or(u32::MAX),
        height: u32::try_from(dec.height()).unwrap_or(u32::MAX),
        components: u8::try_from(dec.components().len()).unwrap_or(u8::MAX),
    };
    within(frame).map_err(WholeError::Refused)?;
    let (mut exif, icc, xmp) = jpeg_metadata(&dec);
    let orientation = if auto_orient {
        exif.as_mut()
            .and_then(|e| Orientation::remove_from_exif_chunk(e))
    } else {
        None
    };
    let image = match grey(&dec) {
        Some(grey) => Some(read_image(dec, 8, grey)?),
        None => None,
    };
    Ok(Whole {
        image,
        icc,
        exif,
        xmp,
        orientation,
    })
}

#[cfg(test)]
mod tests {
    use super::{Frame, MAX_SCANS, is_damage, libjpeg_frame, misread_sampling, too_many_scans};

    fn data(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(name);
        std::fs::read(path).expect("test data")
    }

    const FRAME: Option<Frame> = Some(Frame {
        width: 640,
        height: 480,
        components: 3,
    });

    /// Where `arithmetic.jpg`'s frame marker is.
    fn sof(bytes: &[u8]) -> usize {
        bytes
            .windows(2)
            .position(|w| w == [0xFF, 0xC9])
            .expect("SOF9")
    }

    #[test]
    fn arithmetic_frames_are_found_and_no_other() {
        assert_eq!(libjpeg_frame(&data("arithmetic.jpg")), FRAME);
        assert_eq!(libjpeg_frame(&data("arithmetic-progressive.jpg")), FRAME);
        assert_eq!(libjpeg_frame(&data("arithmetic-twin.jpg")), None);
        let cmyk = libjpeg_frame(&data("arithmetic-cmyk.jpg")).expect("frame");
        assert_eq!((cmyk.components, cmyk.bytes_per_pixel()), (4, 4));
        let grey = Frame {
            components: 1,
            ..cmyk
        };
        assert_eq!(
            grey.bytes_per_pixel(),
            1,
            "as the general decoder counts it"
        );
        // Fill bytes before a marker, and stray bytes between segments
        // (libjpeg skips them with a warning).
        let whole = data("arithmetic.jpg");
        let mut padded = whole.clone();
        padded.splice(2..2, [0xFF, 0xFF]);
        assert_eq!(libjpeg_frame(&padded), FRAME);
        let mut stray = whole.clone();
        stray.splice(sof(&whole)..sof(&whole), [0, 0, 0]);
        assert_eq!(libjpeg_frame(&stray), FRAME);
        // Behind 320 KB of APP segments.
        let mut behind = whole[..2].to_vec();
        for _ in 0..5 {
            behind.extend([0xFF, 0xE3, 0xFF, 0xFF]);
            behind.extend(std::iter::repeat_n(7u8, 0xFFFD));
        }
        behind.extend(&whole[2..]);
        assert_eq!(libjpeg_frame(&behind), FRAME);
        // A height of 0 (to come in a DNL marker) is left to libjpeg.
        let mut dnl = whole.clone();
        let at = sof(&whole) + 5;
        dnl[at..at + 2].copy_from_slice(&[0, 0]);
        assert_eq!(libjpeg_frame(&dnl).map(|f| f.height), Some(0));
    }

    #[test]
    fn a_broken_header_is_no_libjpeg_frame() {
        let whole = data("arithmetic.jpg");
        // Cut before the frame's size and components: none, and nothing
        // read out of bounds; from there on, the frame.
        let end = sof(&whole) + 2 + 2 + 6;
        for cut in 0..end + 40 {
            let got = libjpeg_frame(&whole[..cut]);
            assert_eq!(got.is_some(), cut >= end, "cut at {cut}: {got:?}");
        }
        // A segment length running past the end, or shorter than itself.
        let mut long = whole[..40].to_vec();
        long[4] = 0xFF;
        assert_eq!(libjpeg_frame(&long), None);
        let mut short = whole.clone();
        short[4..6].copy_from_slice(&[0, 1]);
        assert_eq!(libjpeg_frame(&short), None);
        assert_eq!(libjpeg_frame(b"not a jpeg at all"), None);
        assert_eq!(libjpeg_frame(&[0xFF, 0xD8, 0xFF, 0xDA, 0, 2]), None);
    }

    #[test]
    fn sampling_the_general_decoder_misreads_goes_to_libjpeg() {
        // The usual layouts stay with the general decoder.
        for usual in [
            &[(1, 1)][..],
            &[(1, 1), (1, 1), (1, 1)],
            &[(2, 2), (1, 1), (1, 1)],
            &[(2, 1), (1, 1), (1, 1)],
            &[(1, 2), (1, 1), (1, 1)],
            &[(4, 1), (1, 1), (1, 1)],
            &[(2, 2), (2, 1), (1, 2)],
            &[],
        ] {
            assert!(!misread_sampling(usual), "{usual:?}");
        }
        // Chroma finer than luma, across or down, and factors of 3.
        for misread in [
            &[(1, 1), (2, 2), (2, 2)][..],
            &[(1, 1), (2, 1), (2, 1)],
            &[(2, 1), (1, 2), (1, 1)],
            &[(3, 1), (1, 1), (1, 1)],
            &[(1, 3), (1, 1), (1, 1)],
            &[(3, 3)],
        ] {
            assert!(misread_sampling(misread), "{misread:?}");
        }
    }

    #[test]
    fn damaged_data_is_told_from_harmless_warnings() {
        for damage in [
            "Corrupt JPEG data: premature end of data segment",
            "Corrupt JPEG data: bad Huffman code",
            "Corrupt JPEG data: bad arithmetic code",
            "Corrupt JPEG data: found marker 0xd9 instead of RST3",
        ] {
            assert!(is_damage(damage), "{damage}");
        }
        for harmless in [
            "Corrupt JPEG data: 3 extraneous bytes before marker 0xda",
            "Corrupt JPEG data: bad ICC marker",
            "Warning: unknown JFIF revision number 3.01",
            "Unknown Adobe color transform code 7",
            "Invalid SOS parameters for sequential JPEG",
            "Inconsistent progression sequence for component 0 coefficient 1",
        ] {
            assert!(!is_damage(harmless), "{harmless}");
        }
    }

    #[test]
    fn scans_are_counted_up_to_the_limit() {
        let progressive = data("arithmetic-progressive.jpg");
        assert_eq!(too_many_scans(&progressive), None);
        let mut many = progressive.clone();
        let end = many.len() - 2;
        let extra = MAX_SCANS + 1 - scan_markers(&progressive);
        many.splice(end..end, [0xFF, 0xDA].repeat(extra));
        let why = too_many_scans(&many).expect("refused");
        assert!(why.starts_with("101 scans, more than the 100"), "{why}");
        many.truncate(many.len() - 4);
        many.extend([0xFF, 0xD9]);
        assert_eq!(too_many_scans(&many), None, "exactly 100");
    }

    fn scan_markers(bytes: &[u8]) -> usize {
        bytes.windows(2).filter(|w| *w == [0xFF, 0xDA]).count()
    }
}
