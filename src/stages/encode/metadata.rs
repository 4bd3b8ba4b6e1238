//! What `encode` embeds: the colour profile the pixels need, and the EXIF
//! and XMP the `keep` option asks for, cleaned (orientation 1, no GPS
//! unless asked) before any encoder sees them.

use std::sync::OnceLock;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::item::Meta;

/// A kind of metadata `encode` may carry from the source (libvips' `keep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// The EXIF block, orientation reset to 1, without its GPS directory.
    Exif,
    /// The XMP packet (dropped when it records a GPS position and "gps" is
    /// not listed).
    Xmp,
    /// The colour profile; a compact sRGB one when the pixels are sRGB.
    Icc,
    /// The position: keeps the GPS directory of the kept EXIF.
    Gps,
}

/// The metadata one encoded file carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Embed {
    pub icc: Option<Vec<u8>>,
    pub exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

/// Choose what to embed for an item with `meta` under `keep`.
///
/// The profile that describes the pixels is always embedded: without it
/// the colours would be read as sRGB and come out wrong. An EXIF block that
/// can't be edited safely is dropped: a position must never leak because
/// the block was damaged.
pub fn select(meta: &Meta, keep: &[Keep]) -> Embed {
    let wants = |k: Keep| keep.contains(&k);
    let gps = wants(Keep::Gps);
    let icc = match &meta.icc {
        Some(p) => Some(p.clone()),
        None if wants(Keep::Icc) => Some(srgb_profile().to_vec()),
        None => None,
    };
    let exif = meta
        .exif
        .as_deref()
        .filter(|_| wants(Keep::Exif))
        .and_then(|e| match super::exif::clean(e, gps) {
            Ok(clean) => Some(clean),
            Err(why) => {
                tracing::warn!("EXIF not kept: {why}");
                None
            }
        });
    let xmp = meta
        .xmp
        .as_deref()
        .filter(|_| wants(Keep::Xmp))
        .filter(|x| gps || !xmp_has_position(x))
        .map(<[u8]>::to_vec);
    Embed { icc, exif, xmp }
}

/// True when an XMP packet records a GPS position (the EXIF schema's
/// `GPSLatitude`/`GPSLongitude`, as an attribute or an element). Editing
/// the XML is beyond this module: such a packet is dropped whole.
pub fn xmp_has_position(xmp: &[u8]) -> bool {
    let has = |needle: &[u8]| xmp.windows(needle.len()).any(|w| w == needle);
    has(b"GPSLatitude") || has(b"GPSLongitude")
}

/// A compact sRGB profile (parametric curves, a few hundred bytes), made
/// once by moxcms.
pub fn srgb_profile() -> &'static [u8] {
    static PROFILE: OnceLock<Vec<u8>> = OnceLock::new();
    PROFILE.get_or_init(make_srgb_profile)
}

/// The creation date in the profile's header (year, month, day, hours,
/// minutes, seconds). moxcms stamps the moment of encoding there, so two
/// runs on the same photos wrote files a few bytes apart; with a fixed
/// date every run writes the same bytes. The profile carries no ID (its
/// bytes 84..100 are zero), so nothing else depends on the date.
const PROFILE_DATE: [u16; 6] = [2026, 1, 1, 0, 0, 0];

fn make_srgb_profile() -> Vec<u8> {
    let mut bytes = moxcms::ColorProfile::new_srgb()
        .encode()
        .unwrap_or_default();
    if let Some(date) = bytes.get_mut(24..36) {
        for (field, value) in date.chunks_exact_mut(2).zip(PROFILE_DATE) {
            field.copy_from_slice(&value.to_be_bytes());
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_profile_is_small_and_parses() {
        let p = srgb_profile();
        assert!(p.len() > 128 && p.len() < 4096, "{} bytes", p.len());
        assert!(moxcms::ColorProfile::new_from_slice(p).is_ok());
    }

    /// Made a second apart, the profile is the same bytes: its header
    /// does not record when it was made.
    #[test]
    fn the_srgb_profile_is_the_same_bytes_every_time() {
        let first = make_srgb_profile();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(make_srgb_profile(), first);
        assert_eq!(&first[24..26], &2026u16.to_be_bytes(), "the year");
        assert!(first[84..100].iter().all(|&b| b == 0), "no profile ID");
        assert_eq!(srgb_profile(), &first[..]);
    }

    #[test]
    fn profile_of_the_pixels_is_always_embedded() {
        let meta = Meta {
            icc: Some(vec![1, 2, 3]),
            ..Meta::default()
        };
        assert_eq!(select(&meta, &[]).icc, Some(vec![1, 2, 3]));
        assert_eq!(select(&Meta::default(), &[]).icc, None);
        assert!(select(&Meta::default(), &[Keep::Icc]).icc.is_some());
    }

    #[test]
    fn xmp_with_a_position_needs_gps() {
        let meta = Meta {
            xmp: Some(b"<x exif:GPSLatitude=\"48,51.4N\"/>".to_vec()),
            ..Meta::default()
        };
        assert_eq!(select(&meta, &[Keep::Xmp]).xmp, None);
        assert!(select(&meta, &[Keep::Xmp, Keep::Gps]).xmp.is_some());
        assert_eq!(select(&meta, &[]).xmp, None);
    }
}
