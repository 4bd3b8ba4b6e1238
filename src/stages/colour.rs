//! Colour management for `decode` and `thumbnail`: pixels described by an
//! embedded ICC profile are converted to sRGB with moxcms (pure Rust, already
//! compiled in through `image`), unless the profile is sRGB already, in which
//! case nothing is done. `colour = "keep"` leaves the pixels alone and lets
//! the profile travel with the item for `encode` to embed.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use image::{DynamicImage, ImageBuffer, Pixel};
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformExecutor, TransformOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What `decode` and `thumbnail` do with an embedded colour profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ColourMode {
    /// Convert the pixels to sRGB (nothing to do for sRGB sources); the
    /// profile is then dropped, as sRGB needs none.
    #[default]
    Srgb,
    /// Leave the pixels as they are; the profile travels with the item and
    /// `encode` embeds it.
    Keep,
}

/// Why a profile could not be applied.
#[derive(Debug)]
pub enum ColourError {
    /// The bytes are not an ICC profile moxcms can read.
    Unreadable(moxcms::CmsError),
    /// The profile's colour space does not describe these pixels (an RGB
    /// image with a CMYK profile ...).
    Mismatch {
        profile: DataColorSpace,
        pixels: &'static str,
    },
    /// moxcms read the profile but could not build or run the conversion.
    Transform(moxcms::CmsError),
}

impl fmt::Display for ColourError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColourError::Unreadable(e) => write!(f, "unreadable ICC profile ({e})"),
            ColourError::Mismatch { profile, pixels } => {
                write!(f, "a {profile:?} ICC profile on {pixels} pixels")
            }
            ColourError::Transform(e) => write!(f, "colour conversion failed ({e})"),
        }
    }
}

impl std::error::Error for ColourError {}

/// Parse an ICC profile.
pub fn parse(icc: &[u8]) -> Result<ColorProfile, ColourError> {
    ColorProfile::new_from_slice(icc).map_err(ColourError::Unreadable)
}

/// Whether `p` describes sRGB: its colorants and tone curves match sRGB's
/// (within what the 16.16 fixed point of different vendors' sRGB profiles
/// gives), or, for a profile without them (LUT-based v4 sRGB profiles), its
/// description says sRGB. Costs a few microseconds, far less than a
/// conversion.
pub fn is_srgb(p: &ColorProfile) -> bool {
    if p.color_space != DataColorSpace::Rgb {
        return false;
    }
    let srgb = ColorProfile::new_srgb();
    let has_matrix = p.red_trc.is_some() && p.green_trc.is_some() && p.blue_trc.is_some();
    if !has_matrix {
        return description(p).is_some_and(|d| d.contains("sRGB"));
    }
    let close = |a: &moxcms::Xyzd, b: &moxcms::Xyzd| {
        (a.x - b.x).abs() < 2e-3 && (a.y - b.y).abs() < 2e-3 && (a.z - b.z).abs() < 2e-3
    };
    close(&p.red_colorant, &srgb.red_colorant)
        && close(&p.green_colorant, &srgb.green_colorant)
        && close(&p.blue_colorant, &srgb.blue_colorant)
        && [&p.red_trc, &p.green_trc, &p.blue_trc]
            .iter()
            .all(|t| t.as_ref().is_some_and(is_srgb_curve))
}

fn description(p: &ColorProfile) -> Option<String> {
    match p.description.as_ref()? {
        moxcms::ProfileText::PlainString(s) => Some(s.clone()),
        moxcms::ProfileText::Description(d) => Some(d.ascii_string.clone()),
        moxcms::ProfileText::Localizable(l) => l.first().map(|s| s.value.clone()),
    }
}

/// A tone curve within half an 8-bit step of the sRGB curve everywhere.
fn is_srgb_curve(curve: &moxcms::ToneReprCurve) -> bool {
    let Ok(eval) = curve.make_linear_evaluator() else {
        return false;
    };
    (0..=64).all(|i| {
        let v = i as f32 / 64.0;
        let want = if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        };
        (eval.evaluate_value(v) - want).abs() < 0.5 / 255.0
    })
}

/// The destination for grey pixels: sRGB's tone curve on one channel, so
/// grey stays one channel.
fn srgb_grey() -> ColorProfile {
    let mut p = ColorProfile::new_srgb();
    p.color_space = DataColorSpace::Gray;
    p.gray_trc = p.red_trc.clone();
    p
}

fn options() -> TransformOptions {
    TransformOptions {
        // The intent the profile asks for is the usual choice of viewers;
        // matrix profiles (nearly all photos) have no other.
        rendering_intent: moxcms::RenderingIntent::Perceptual,
        ..TransformOptions::default()
    }
}

/// What became of an image and its profile.
pub struct Applied {
    /// The profile that now describes the pixels (`None`: sRGB).
    pub icc: Option<Vec<u8>>,
    /// Why the profile was ignored (the pixels were then taken as sRGB).
    pub ignored: Option<ColourError>,
}

/// Apply `mode` to `img` described by `icc`: convert to sRGB, or keep.
pub fn apply(img: &mut DynamicImage, icc: Option<Vec<u8>>, mode: ColourMode) -> Applied {
    let Some(bytes) = icc else {
        return Applied {
            icc: None,
            ignored: None,
        };
    };
    if mode == ColourMode::Keep {
        return Applied {
            icc: Some(bytes),
            ignored: None,
        };
    }
    let ignored = known(&bytes)
        .and_then(|k| if k.srgb { Ok(()) } else { convert(img, &k) })
        .err();
    Applied { icc: None, ignored }
}

/// [`apply`] for an item's image, saying in the log when a profile was
/// ignored; returns the item's new `meta.icc`.
pub fn apply_for(
    img: &mut DynamicImage,
    icc: Option<Vec<u8>>,
    mode: ColourMode,
    path: &std::path::Path,
) -> Option<Vec<u8>> {
    let applied = apply(img, icc, mode);
    if let Some(why) = applied.ignored {
        tracing::warn!(path = %path.display(), "{why}: the pixels are taken as sRGB, unconverted");
    }
    applied.icc
}

/// A profile seen before in this process: parsed, judged, and its
/// transforms built once. A library's photos share a few profiles (one per
/// camera or phone), and building a transform costs more than converting a
/// thumbnail's pixels.
pub struct Known {
    profile: ColorProfile,
    srgb: bool,
    t8: Mutex<Vec<(Layout, Arc<moxcms::Transform8BitExecutor>)>>,
    t16: Mutex<Vec<(Layout, Arc<moxcms::Transform16BitExecutor>)>>,
}

/// How many profiles are remembered; past that the memory starts over.
const KNOWN_PROFILES: usize = 32;

/// The profile `icc`, from the cache or parsed now.
pub fn known(icc: &[u8]) -> Result<Arc<Known>, ColourError> {
    static SEEN: OnceLock<Mutex<HashMap<Vec<u8>, Arc<Known>>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    if let Some(k) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(icc) {
        return Ok(Arc::clone(k));
    }
    let profile = parse(icc)?;
    let k = Arc::new(Known {
        srgb: is_srgb(&profile),
        profile,
        t8: Mutex::default(),
        t16: Mutex::default(),
    });
    let mut map = seen.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= KNOWN_PROFILES {
        map.clear();
    }
    map.insert(icc.to_vec(), Arc::clone(&k));
    Ok(k)
}

impl Known {
    fn transform8(
        &self,
        layout: Layout,
    ) -> Result<Arc<moxcms::Transform8BitExecutor>, ColourError> {
        let mut built = self.t8.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = built.iter().find(|(l, _)| *l == layout) {
            return Ok(Arc::clone(t));
        }
        let t = self
            .profile
            .create_transform_8bit(layout, &destination(layout), layout, options())
            .map_err(ColourError::Transform)?;
        built.push((layout, Arc::clone(&t)));
        Ok(t)
    }

    fn transform16(
        &self,
        layout: Layout,
    ) -> Result<Arc<moxcms::Transform16BitExecutor>, ColourError> {
        let mut built = self.t16.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, t)) = built.iter().find(|(l, _)| *l == layout) {
            return Ok(Arc::clone(t));
        }
        let t = self
            .profile
            .create_transform_16bit(layout, &destination(layout), layout, options())
            .map_err(ColourError::Transform)?;
        built.push((layout, Arc::clone(&t)));
        Ok(t)
    }
}

/// Convert `img`, described by the profile `k`, to sRGB in place.
fn convert(img: &mut DynamicImage, k: &Known) -> Result<(), ColourError> {
    let p = &k.profile;
    let grey_profile = p.color_space == DataColorSpace::Gray;
    let mismatch = |pixels| ColourError::Mismatch {
        profile: p.color_space,
        pixels,
    };
    if !grey_profile && p.color_space != DataColorSpace::Rgb {
        return Err(mismatch("RGB or grey"));
    }
    let converted = match std::mem::take(img) {
        DynamicImage::ImageLuma8(b) if grey_profile => {
            DynamicImage::ImageLuma8(run8(k, &b, Layout::Gray)?)
        }
        DynamicImage::ImageLumaA8(b) if grey_profile => {
            DynamicImage::ImageLumaA8(run8(k, &b, Layout::GrayAlpha)?)
        }
        DynamicImage::ImageLuma16(b) if grey_profile => {
            DynamicImage::ImageLuma16(run16(k, &b, Layout::Gray)?)
        }
        DynamicImage::ImageLumaA16(b) if grey_profile => {
            DynamicImage::ImageLumaA16(run16(k, &b, Layout::GrayAlpha)?)
        }
        _ if grey_profile => return Err(mismatch("colour")),
        // Grey pixels with an RGB profile (rare): they become RGB.
        DynamicImage::ImageLuma8(b) => {
            let b = DynamicImage::ImageLuma8(b).to_rgb8();
            DynamicImage::ImageRgb8(run8(k, &b, Layout::Rgb)?)
        }
        DynamicImage::ImageRgb8(b) => DynamicImage::ImageRgb8(run8(k, &b, Layout::Rgb)?),
        DynamicImage::ImageRgba8(b) => DynamicImage::ImageRgba8(run8(k, &b, Layout::Rgba)?),
        DynamicImage::ImageLumaA8(b) => {
            let b = DynamicImage::ImageLumaA8(b).to_rgba8();
            DynamicImage::ImageRgba8(run8(k, &b, Layout::Rgba)?)
        }
        other if other.color().has_alpha() => {
            DynamicImage::ImageRgba16(run16(k, &other.to_rgba16(), Layout::Rgba)?)
        }
        other => DynamicImage::ImageRgb16(run16(k, &other.to_rgb16(), Layout::Rgb)?),
    };
    *img = converted;
    Ok(())
}

/// The sRGB destination for a layout.
fn destination(layout: Layout) -> ColorProfile {
    match layout {
        Layout::Gray | Layout::GrayAlpha => srgb_grey(),
        _ => ColorProfile::new_srgb(),
    }
}

fn run8<P: Pixel<Subpixel = u8>>(
    k: &Known,
    b: &ImageBuffer<P, Vec<u8>>,
    layout: Layout,
) -> Result<ImageBuffer<P, Vec<u8>>, ColourError> {
    transform_buffer(k.transform8(layout)?.as_ref(), b)
}

fn run16<P: Pixel<Subpixel = u16>>(
    k: &Known,
    b: &ImageBuffer<P, Vec<u16>>,
    layout: Layout,
) -> Result<ImageBuffer<P, Vec<u16>>, ColourError> {
    transform_buffer(k.transform16(layout)?.as_ref(), b)
}

fn transform_buffer<T, P>(
    t: &(dyn TransformExecutor<T> + Send + Sync),
    b: &ImageBuffer<P, Vec<T>>,
) -> Result<ImageBuffer<P, Vec<T>>, ColourError>
where
    T: Copy + Default + image::Primitive + Send + Sync,
    P: Pixel<Subpixel = T>,
{
    use rayon::prelude::*;
    let src = b.as_raw();
    let mut out = vec![T::default(); src.len()];
    let (w, h) = (b.width() as usize, b.height() as usize);
    let stride = w * usize::from(P::CHANNEL_COUNT);
    // Bands of whole rows over the cores the item may use; a pixel's
    // conversion does not depend on its neighbours.
    crate::cores::split((w * h) as u64, |parts| {
        if parts <= 1 || stride == 0 {
            return t.transform(src, &mut out);
        }
        let per = h.div_ceil(parts).max(1) * stride;
        out.par_chunks_mut(per)
            .zip(src.par_chunks(per))
            .try_for_each(|(o, s)| t.transform(s, o))
    })
    .map_err(ColourError::Transform)?;
    ImageBuffer::from_raw(b.width(), b.height(), out)
        .ok_or(ColourError::Transform(moxcms::CmsError::LaneSizeMismatch))
}

/// Whether `icc` is a CMYK profile (such pixels must be converted while
/// decoding: an image holds no CMYK).
pub fn cmyk_profile(icc: &[u8]) -> Option<ColorProfile> {
    parse(icc)
        .ok()
        .filter(|p| p.color_space == DataColorSpace::Cmyk)
}

/// Convert 8-bit CMYK samples (0 = no ink) to an sRGB image.
pub fn cmyk_to_srgb(
    cmyk: &[u8],
    (w, h): (u32, u32),
    p: &ColorProfile,
) -> Result<image::RgbImage, ColourError> {
    let t = p
        .create_transform_8bit(
            Layout::Rgba,
            &ColorProfile::new_srgb(),
            Layout::Rgb,
            options(),
        )
        .map_err(ColourError::Transform)?;
    let mut out = vec![0u8; cmyk.len() / 4 * 3];
    t.transform(cmyk, &mut out)
        .map_err(ColourError::Transform)?;
    image::RgbImage::from_raw(w, h, out)
        .ok_or(ColourError::Transform(moxcms::CmsError::LaneSizeMismatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_profiles_are_recognised_and_others_are_not() {
        let srgb = ColorProfile::new_srgb().encode().expect("encode");
        assert!(is_srgb(&parse(&srgb).expect("parse")));
        for p in [
            ColorProfile::new_display_p3(),
            ColorProfile::new_adobe_rgb(),
            ColorProfile::new_pro_photo_rgb(),
        ] {
            let bytes = p.encode().expect("encode");
            assert!(!is_srgb(&parse(&bytes).expect("parse")));
        }
    }

    #[test]
    fn an_unreadable_profile_leaves_the_pixels_as_srgb() {
        let mut img =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 2, [9, 80, 200].into()));
        let before = img.clone();
        let applied = apply(&mut img, Some(b"not a profile".to_vec()), ColourMode::Srgb);
        assert!(applied.icc.is_none());
        assert!(matches!(applied.ignored, Some(ColourError::Unreadable(_))));
        assert_eq!(img, before);
    }
}
