use super::*;

/// Tags of IFD0, in order (for tests and checks).
fn ifd0_tags(exif: &[u8]) -> Result<Vec<u16>, ExifError> {
    let mut copy = exif.to_vec();
    let t = open(&mut copy)?;
    let (ifd, n) = t.ifd0()?;
    (0..n)
        .map(|i| t.u16(ifd + 2 + i * ENTRY, "entry"))
        .collect()
}

/// The orientation value of IFD0, if it has one.
fn orientation(exif: &[u8]) -> Result<Option<u16>, ExifError> {
    let mut copy = exif.to_vec();
    let t = open(&mut copy)?;
    let (ifd, n) = t.ifd0()?;
    for i in 0..n {
        let e = ifd + 2 + i * ENTRY;
        if t.u16(e, "entry")? == TAG_ORIENTATION {
            return t.u16(e + 8, "orientation").map(Some);
        }
    }
    Ok(None)
}

/// A TIFF block with IFD0 = {Make "Cam", Orientation 6, GPS pointer,
/// Copyright "Me"} and a GPS IFD with a latitude (three rationals, out of
/// line), in either byte order.
fn sample(big: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut b: Vec<u8> = if big {
        b"MM\0*".to_vec()
    } else {
        b"II*\0".to_vec()
    };
    b.extend(u32b(8));
    // IFD0 at 8: 4 entries -> 2 + 48 + 4 = 54 bytes, ends at 62.
    let gps_at = 62u32;
    let entry = |b: &mut Vec<u8>, tag: u16, ty: u16, count: u32, value: [u8; 4]| {
        b.extend(u16b(tag));
        b.extend(u16b(ty));
        b.extend(u32b(count));
        b.extend(value);
    };
    b.extend(u16b(4));
    entry(&mut b, 0x010F, 2, 4, *b"Cam\0");
    let mut orient = [0u8; 4];
    orient[..2].copy_from_slice(&u16b(6));
    entry(&mut b, TAG_ORIENTATION, TYPE_SHORT, 1, orient);
    entry(&mut b, TAG_GPS_IFD, 4, 1, u32b(gps_at));
    entry(&mut b, 0x8298, 2, 3, *b"Me\0\0");
    b.extend(u32b(0));
    assert_eq!(b.len(), gps_at as usize);
    // GPS IFD: LatitudeRef "N", Latitude 3 rationals at 62 + 30 = 92.
    b.extend(u16b(2));
    entry(&mut b, 1, 2, 2, *b"N\0\0\0");
    entry(&mut b, 2, 5, 3, u32b(92));
    b.extend(u32b(0));
    for v in [48u32, 1, 51, 1, 2400, 100] {
        b.extend(u32b(v));
    }
    b
}

#[test]
fn gps_is_removed_and_orientation_reset_in_both_byte_orders() {
    for big in [false, true] {
        let src = sample(big);
        assert_eq!(ifd0_tags(&src).unwrap(), [0x010F, 0x0112, 0x8825, 0x8298]);
        let out = clean(&src, false).unwrap();
        assert_eq!(out.len(), src.len());
        assert_eq!(ifd0_tags(&out).unwrap(), [0x010F, 0x0112, 0x8298]);
        assert_eq!(orientation(&out).unwrap(), Some(1));
        // The latitude's bytes are gone, not only unlinked.
        assert!(out[62..].iter().all(|&b| b == 0), "big={big}");
        // The copyright after the removed entry reads the same.
        assert!(out.windows(3).any(|w| w == b"Me\0"));
    }
}

#[test]
fn gps_stays_when_asked() {
    for big in [false, true] {
        let out = clean(&sample(big), true).unwrap();
        assert_eq!(ifd0_tags(&out).unwrap(), [0x010F, 0x0112, 0x8825, 0x8298]);
        assert_eq!(orientation(&out).unwrap(), Some(1));
        assert_eq!(&out[62..], &sample(big)[62..]);
    }
}

#[test]
fn bad_blocks_are_errors() {
    assert_eq!(clean(b"", false), Err(ExifError::NotTiff));
    assert_eq!(clean(b"JFIF....", false), Err(ExifError::NotTiff));
    assert!(clean(b"II*\0\xff\xff\xff\xff", false).is_err());
    let mut s = sample(false);
    s[8] = 0xff; // IFD0 claims 255 entries.
    assert!(clean(&s, false).is_err());
}

/// A tiny deterministic generator, so failures reproduce.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn hostile_bytes_never_panic() {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for round in 0..20_000 {
        let mut b = sample(round % 2 == 0);
        let flips = 1 + xorshift(&mut seed) % 6;
        for _ in 0..flips {
            let at = (xorshift(&mut seed) as usize) % b.len();
            b[at] = xorshift(&mut seed) as u8;
        }
        if round % 7 == 0 {
            let cut = (xorshift(&mut seed) as usize) % b.len();
            b.truncate(cut);
        }
        for keep_gps in [false, true] {
            if let Ok(out) = clean(&b, keep_gps) {
                assert_eq!(out.len(), b.len());
            }
        }
        let _ = ifd0_tags(&b);
        let _ = orientation(&b);
    }
}
