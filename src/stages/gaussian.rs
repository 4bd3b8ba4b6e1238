//! The Gaussian blur that `blur` and `sharpen` share: a direct integer
//! kernel for small sigma, three box passes beyond, on 8-bit pixels.

use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};

use crate::stage::StageError;

/// Channels per pixel and whether the last one is alpha.
pub(super) fn layout(img: &DynamicImage) -> Result<(usize, bool), StageError> {
    match img {
        DynamicImage::ImageLuma8(_) => Ok((1, false)),
        DynamicImage::ImageRgb8(_) => Ok((3, false)),
        DynamicImage::ImageRgba8(_) => Ok((4, true)),
        other => Err(StageError::new(format!(
            "unsupported pixel layout {:?}",
            other.color()
        ))),
    }
}

pub(super) fn bytes_mut(img: &mut DynamicImage) -> &mut [u8] {
    match img {
        DynamicImage::ImageLuma8(b) => b,
        DynamicImage::ImageRgb8(b) => b,
        DynamicImage::ImageRgba8(b) => b,
        _ => &mut [],
    }
}

/// Widths of three box blurs whose succession approximates a Gaussian of
/// `sigma` (the usual construction: boxes of two neighbouring odd widths).
pub(super) fn box_radii(sigma: f32) -> [usize; 3] {
    let n = 3.0f32;
    let ideal = (12.0 * sigma * sigma / n + 1.0).sqrt();
    let mut lower = ideal.floor() as i64;
    if lower % 2 == 0 {
        lower -= 1;
    }
    let upper = lower + 2;
    let m = ((12.0 * sigma * sigma - n * (lower * lower) as f32 - 4.0 * n * lower as f32 - 3.0 * n)
        / (-4.0 * lower as f32 - 4.0))
        .round() as i64;
    let mut radii = [0usize; 3];
    for (i, r) in radii.iter_mut().enumerate() {
        let width = if (i as i64) < m { lower } else { upper };
        *r = usize::try_from((width - 1) / 2).unwrap_or(0);
    }
    radii
}

/// One horizontal box pass over interleaved rows, edges clamped.
pub(super) fn box_h(src: &[u8], dst: &mut [u8], w: usize, c: usize, r: usize) {
    if r == 0 || w == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let div = (2 * r + 1) as u32;
    for (row_in, row_out) in src.chunks_exact(w * c).zip(dst.chunks_exact_mut(w * c)) {
        for ch in 0..c {
            let px = |x: usize| u32::from(row_in[x * c + ch]);
            let mut acc: u32 = (0..=2 * r)
                .map(|i| px(i.saturating_sub(r).min(w - 1)))
                .sum();
            for x in 0..w {
                row_out[x * c + ch] = ((acc + div / 2) / div) as u8;
                acc += px((x + r + 1).min(w - 1));
                acc -= px(x.saturating_sub(r));
            }
        }
    }
}

/// One vertical box pass, a running sum per column, row by row.
pub(super) fn box_v(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, r: usize) {
    if r == 0 || h == 0 {
        dst.copy_from_slice(src);
        return;
    }
    let stride = w * c;
    let div = (2 * r + 1) as u32;
    let row = |y: usize| &src[y * stride..(y + 1) * stride];
    let mut acc = vec![0u32; stride];
    for i in 0..=2 * r {
        for (a, &v) in acc.iter_mut().zip(row(i.saturating_sub(r).min(h - 1))) {
            *a += u32::from(v);
        }
    }
    for y in 0..h {
        let out = &mut dst[y * stride..(y + 1) * stride];
        for (o, &a) in out.iter_mut().zip(&acc) {
            *o = ((a + div / 2) / div) as u8;
        }
        let (add, sub) = (row((y + r + 1).min(h - 1)), row(y.saturating_sub(r)));
        for ((a, &p), &m) in acc.iter_mut().zip(add).zip(sub) {
            *a = *a + u32::from(p) - u32::from(m);
        }
    }
}

/// Define a hot loop compiled twice, for the baseline CPU and for AVX2 (8
/// lanes of 32-bit multiplies, which baseline SSE2 lacks), the build chosen
/// at run time.
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn portable($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY (for callers): only to be called on a CPU with AVX2;
                // the one call below checks that first.
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    portable($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(super) use simd_fn;

/// Fixed-point scale of the direct kernel's weights.
pub(super) const KERNEL_BITS: u32 = 14;

/// Up to this radius the Gaussian is applied directly (exact weights, cost
/// growing with the radius); beyond it, three box blurs (constant cost).
pub(super) const DIRECT_RADIUS: usize = 8;

/// Integer Gaussian weights out to 3 sigma, summing to exactly
/// `1 << KERNEL_BITS`.
pub(super) fn gaussian_kernel(sigma: f32) -> Vec<u32> {
    let r = (3.0 * sigma).ceil().max(1.0) as usize;
    let f: Vec<f64> = (0..=2 * r)
        .map(|i| {
            let d = i as f64 - r as f64;
            (-d * d / (2.0 * f64::from(sigma) * f64::from(sigma))).exp()
        })
        .collect();
    let total: f64 = f.iter().sum();
    let one = 1u32 << KERNEL_BITS;
    let mut k: Vec<u32> = f
        .iter()
        .map(|v| (v / total * f64::from(one)).round() as u32)
        .collect();
    // Rounding leaves the sum a little off; the centre absorbs it.
    let sum: u32 = k.iter().sum();
    k[r] = (k[r] + one).saturating_sub(sum);
    k
}

#[inline(always)]
pub(super) fn narrow(acc: &[u32], out: &mut [u8]) {
    let half = 1u32 << (KERNEL_BITS - 1);
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = ((a + half) >> KERNEL_BITS) as u8;
    }
}

simd_fn! {
/// Horizontal pass of a direct kernel over interleaved rows, edges clamped.
/// Rows are padded once so the inner loops run over contiguous bytes, which
/// the compiler turns into SIMD.
fn conv_h(src: &[u8], dst: &mut [u8], w: usize, c: usize, kernel: &[u32]) {
    let r = kernel.len() / 2;
    let stride = w * c;
    let mut pad = vec![0u8; (w + 2 * r) * c];
    let mut acc = vec![0u32; stride];
    for (row_in, row_out) in src.chunks_exact(stride).zip(dst.chunks_exact_mut(stride)) {
        let (first, last) = (&row_in[..c], &row_in[stride - c..]);
        for x in 0..r {
            pad[x * c..(x + 1) * c].copy_from_slice(first);
            pad[(r + w + x) * c..(r + w + x + 1) * c].copy_from_slice(last);
        }
        pad[r * c..(r + w) * c].copy_from_slice(row_in);
        acc.fill(0);
        for (k, &weight) in kernel.iter().enumerate() {
            for (a, &v) in acc.iter_mut().zip(&pad[k * c..k * c + stride]) {
                *a += weight * u32::from(v);
            }
        }
        narrow(&acc, row_out);
    }
}
}

simd_fn! {
/// Vertical pass of a direct kernel, edges clamped.
fn conv_v(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, kernel: &[u32]) {
    let r = kernel.len() / 2;
    let stride = w * c;
    let mut acc = vec![0u32; stride];
    for (y, row_out) in dst.chunks_exact_mut(stride).enumerate().take(h) {
        acc.fill(0);
        for (k, &weight) in kernel.iter().enumerate() {
            let sy = (y + k).saturating_sub(r).min(h - 1);
            for (a, &v) in acc.iter_mut().zip(&src[sy * stride..(sy + 1) * stride]) {
                *a += weight * u32::from(v);
            }
        }
        narrow(&acc, row_out);
    }
}
}

/// Blur `src` (8-bit interleaved pixels, `w` x `h` x `c`) into `dst` with a
/// Gaussian of `sigma`: a direct separable kernel for small `sigma` (the
/// usual case for sharpening), three box blurs each way for large ones.
/// Every pass writes all of its output, so `dst` need not be initialised.
pub(super) fn blur_into(src: &[u8], dst: &mut [u8], w: usize, h: usize, c: usize, sigma: f32) {
    if w == 0 || h == 0 {
        return;
    }
    let mut tmp = vec![0u8; src.len()];
    let kernel = gaussian_kernel(sigma);
    if kernel.len() / 2 <= DIRECT_RADIUS {
        conv_h(src, &mut tmp, w, c, &kernel);
        conv_v(&tmp, dst, w, h, c, &kernel);
        return;
    }
    let [first, rest @ ..] = box_radii(sigma);
    box_h(src, &mut tmp, w, c, first);
    box_v(&tmp, dst, w, h, c, first);
    for r in rest {
        box_h(dst, &mut tmp, w, c, r);
        box_v(&tmp, dst, w, h, c, r);
    }
}

/// A blurred copy of `img`, in a new buffer rather than a clone of it that
/// the passes would overwrite anyway.
pub(super) fn gaussian(img: &DynamicImage, sigma: f32) -> Result<DynamicImage, StageError> {
    let (c, _) = layout(img)?;
    let (w, h) = (img.width(), img.height());
    let src = img.as_bytes();
    let mut out = vec![0u8; src.len()];
    blur_into(src, &mut out, w as usize, h as usize, c, sigma);
    let image = match c {
        1 => GrayImage::from_raw(w, h, out).map(DynamicImage::ImageLuma8),
        3 => RgbImage::from_raw(w, h, out).map(DynamicImage::ImageRgb8),
        _ => RgbaImage::from_raw(w, h, out).map(DynamicImage::ImageRgba8),
    };
    image.ok_or_else(|| StageError::new("pixel data does not match its size"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and variance along x of the blurred image of one bright column,
    /// and the sum of its values.
    fn spread(sigma: f32) -> (f64, f64, u64) {
        let img =
            image::GrayImage::from_fn(101, 9, |x, _| image::Luma([if x == 50 { 255 } else { 0 }]));
        let out = gaussian(&DynamicImage::ImageLuma8(img), sigma).expect("blur");
        let row: Vec<f64> = (0..101)
            .map(|x| (0..9).map(|y| f64::from(out.as_bytes()[y * 101 + x])).sum())
            .collect();
        let total: f64 = row.iter().sum();
        let mean = row
            .iter()
            .enumerate()
            .map(|(x, v)| x as f64 * v)
            .sum::<f64>()
            / total;
        let var = row
            .iter()
            .enumerate()
            .map(|(x, v)| (x as f64 - mean).powi(2) * v)
            .sum::<f64>()
            / total;
        (
            mean,
            var,
            out.as_bytes().iter().map(|&v| u64::from(v)).sum(),
        )
    }

    #[test]
    fn gaussian_blur_has_the_asked_spread_and_keeps_the_mean() {
        // Direct kernels (small sigma) and boxes (large) alike.
        for sigma in [0.7f32, 1.0, 2.0, 4.0, 6.0] {
            let (mean, var, sum) = spread(sigma);
            assert!((mean - 50.0).abs() < 0.01, "sigma {sigma}: centre {mean}");
            let want = f64::from(sigma * sigma);
            assert!(
                (var - want).abs() < 0.15 * want,
                "sigma {sigma}: variance {var}, want {want}"
            );
            // Rounding may lose or gain a little of each row's 255.
            assert!(sum.abs_diff(9 * 255) < 9 * 20, "sigma {sigma}: sum {sum}");
        }
        let flat = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            37,
            23,
            image::Rgb([10, 128, 250]),
        ));
        assert_eq!(gaussian(&flat, 1.5).expect("blur"), flat);
    }

    #[test]
    fn direct_kernel_matches_a_plain_reference() {
        let (w, h, c) = (37usize, 29usize, 3usize);
        let src: Vec<u8> = (0..w * h * c).map(|i| (i * 7919 % 251) as u8).collect();
        let kernel = gaussian_kernel(1.3);
        let r = kernel.len() / 2;
        let round = |a: u32| ((a + (1 << (KERNEL_BITS - 1))) >> KERNEL_BITS) as u8;
        let mut mid = vec![0u8; src.len()];
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    let a: u32 = (0..kernel.len())
                        .map(|k| {
                            let sx = (x + k).saturating_sub(r).min(w - 1);
                            kernel[k] * u32::from(src[(y * w + sx) * c + ch])
                        })
                        .sum();
                    mid[(y * w + x) * c + ch] = round(a);
                }
            }
        }
        let mut want = vec![0u8; src.len()];
        for y in 0..h {
            for i in 0..w * c {
                let a: u32 = (0..kernel.len())
                    .map(|k| {
                        let sy = (y + k).saturating_sub(r).min(h - 1);
                        kernel[k] * u32::from(mid[sy * w * c + i])
                    })
                    .sum();
                want[y * w * c + i] = round(a);
            }
        }
        let img = image::RgbImage::from_raw(w as u32, h as u32, src).expect("size");
        let got = gaussian(&DynamicImage::ImageRgb8(img), 1.3).expect("blur");
        assert_eq!(got.as_bytes(), &want[..]);
    }
}
