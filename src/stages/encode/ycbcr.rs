//! RGB to YCbCr for JPEG, for conveyor's own encoder (`baseline.rs`) and
//! jpeg-encoder. For halved chroma, each 2x2 block's Cb and Cr become the
//! average of its four pixels', rounded as libjpeg's `h2v2_downsample`
//! rounds, and are given for all four, so the encoder's sampling of one
//! pixel per block takes exactly libjpeg's value. jpeg-encoder can average too, with the same
//! bytes, but at a cost: three photos through `pipelines/web-large.toml`
//! took 906 M instructions with its averaging and 821 M with its default
//! (one pixel per block, the wrong colours); with this, 800 M (callgrind).

/// An RGB or RGBA image as jpeg-encoder reads it, row by row: Y, Cb, Cr
/// with the chroma of each 2x2 block averaged. The rows come in order
/// (the encoder asks for each MCU row's rows, the last repeated at the
/// bottom edge), so each pair of rows is converted once, when its first
/// is asked for. An odd last column or row is averaged with itself, as
/// libjpeg repeats the edge.
pub(super) struct Averaged<'a> {
    data: &'a [u8],
    width: u16,
    height: u16,
    channels: usize,
    /// The pair of rows converted last: its top row + 1 (0: none yet).
    pair: std::cell::RefCell<(usize, Planes)>,
}

impl<'a> Averaged<'a> {
    /// `data`: `width` x `height` pixels of `channels` (3 or 4) bytes.
    pub(super) fn new(data: &'a [u8], (width, height): (u16, u16), channels: usize) -> Self {
        Averaged {
            data,
            width,
            height,
            channels,
            pair: std::cell::RefCell::new((0, Planes::new(usize::from(width)))),
        }
    }
}

impl jpeg_encoder::ImageBuffer for Averaged<'_> {
    fn get_jpeg_color_type(&self) -> jpeg_encoder::JpegColorType {
        jpeg_encoder::JpegColorType::Ycbcr
    }

    fn width(&self) -> u16 {
        self.width
    }

    fn height(&self) -> u16 {
        self.height
    }

    fn fill_buffers(&self, y: u16, buffers: &mut [Vec<u8>; 4]) {
        let (y, width) = (usize::from(y), usize::from(self.width));
        let top = y & !1;
        let mut pair = self.pair.borrow_mut();
        let (done, planes) = &mut *pair;
        if *done != top + 1 {
            let bottom = (top + 1).min(usize::from(self.height) - 1);
            let row =
                |r: usize| &self.data[r * width * self.channels..(r + 1) * width * self.channels];
            convert_pair((row(top), row(bottom)), self.channels, planes);
            *done = top + 1;
        }
        buffers[0].extend_from_slice(&planes.y[y - top]);
        buffers[1].extend_from_slice(&planes.cb[..width]);
        buffers[2].extend_from_slice(&planes.cr[..width]);
    }
}

/// `data` as interleaved Y, Cb, Cr, row by row as the encoder reads it.
#[cfg(test)]
pub(super) fn averaged(data: &[u8], width: usize, height: usize, channels: usize) -> Vec<u8> {
    use jpeg_encoder::ImageBuffer;
    let image = Averaged::new(data, (width as u16, height as u16), channels);
    let mut out = Vec::new();
    for y in 0..height {
        let mut rows: [Vec<u8>; 4] = Default::default();
        image.fill_buffers(y as u16, &mut rows);
        for ((y, cb), cr) in rows[0].iter().zip(&rows[1]).zip(&rows[2]) {
            out.extend([*y, *cb, *cr]);
        }
    }
    out
}

/// One pair of rows, converted: each row's luma, and the averaged chroma
/// of each pixel's 2x2 block (one value a pixel, equal within a block).
pub(super) struct Planes {
    pub(super) y: [Vec<u8>; 2],
    pub(super) cb: Vec<u8>,
    pub(super) cr: Vec<u8>,
    // Per-pixel chroma of both rows, before averaging.
    cbs: [Vec<u16>; 2],
    crs: [Vec<u16>; 2],
}

impl Planes {
    pub(super) fn new(width: usize) -> Self {
        // Even, so an odd last column has a twin to be averaged with.
        let even = width.div_ceil(2) * 2;
        Planes {
            y: [vec![0; width], vec![0; width]],
            cb: vec![0; even],
            cr: vec![0; even],
            cbs: [vec![0; even], vec![0; even]],
            crs: [vec![0; even], vec![0; even]],
        }
    }
}

/// RGB (the first three of `C` bytes a pixel) to Y, Cb, Cr, as
/// jpeg-encoder converts (`rgb_to_ycbcr`: BT.601 in 16-bit fixed point,
/// rounded), written out as plain loops the compiler can vectorise.
#[inline(always)]
fn convert_row<const C: usize>(src: &[u8], y: &mut [u8], cb: &mut [u16], cr: &mut [u16]) {
    for (((px, y), cb), cr) in src
        .chunks_exact(C)
        .zip(y)
        .zip(cb.iter_mut())
        .zip(cr.iter_mut())
    {
        let (l, b, r) = ycc(px);
        (*y, *cb, *cr) = (l as u8, b as u16, r as u16);
    }
}

/// One pixel's Y, Cb and Cr (each within 0..=255).
#[inline(always)]
fn ycc(px: &[u8]) -> (i32, i32, i32) {
    let (r, g, b) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
    (
        (19595 * r + 38470 * g + 7471 * b + 0x7FFF) >> 16,
        (-11059 * r - 21709 * g + 32768 * b + (128 << 16) + 0x7FFF) >> 16,
        (32768 * r - 27439 * g - 5329 * b + (128 << 16) + 0x7FFF) >> 16,
    )
}

#[inline(always)]
fn pair<const C: usize>((top, bottom): (&[u8], &[u8]), p: &mut Planes) {
    let width = p.y[0].len();
    let [y0, y1] = &mut p.y;
    let [cb0, cb1] = &mut p.cbs;
    let [cr0, cr1] = &mut p.crs;
    convert_row::<C>(top, y0, cb0, cr0);
    convert_row::<C>(bottom, y1, cb1, cr1);
    if width % 2 == 1 {
        // libjpeg repeats the last column to fill the block.
        for v in [&mut *cb0, &mut *cb1, &mut *cr0, &mut *cr1] {
            v[width] = v[width - 1];
        }
    }
    for (plane, (a, b)) in [(&mut p.cb, (&*cb0, &*cb1)), (&mut p.cr, (&*cr0, &*cr1))] {
        for (i, ((o, a), b)) in plane
            .chunks_exact_mut(2)
            .zip(a.chunks_exact(2))
            .zip(b.chunks_exact(2))
            .enumerate()
        {
            // libjpeg's bias alternates 1, 2, 1, 2 ... by output column, so
            // halves round neither always up nor always down.
            let bias = 1 + (i as u16 & 1);
            let v = ((a[0] + a[1] + b[0] + b[1] + bias) >> 2) as u8;
            o[0] = v;
            o[1] = v;
        }
    }
}

/// The pair of rows `rows` (the same row twice at the bottom edge) of
/// `channels` (3 or 4) bytes a pixel, converted into `planes`.
pub(super) fn convert_pair(rows: (&[u8], &[u8]), channels: usize, planes: &mut Planes) {
    if channels == 4 {
        pair4(rows, planes);
    } else {
        pair3(rows, planes);
    }
}

/// One row of `channels` (3 or 4) bytes a pixel as Y, Cb and Cr at full
/// resolution (no chroma halved: quality 90 and up).
pub(super) fn convert_full(src: &[u8], channels: usize, planes: (&mut [u8], &mut [u8], &mut [u8])) {
    if channels == 4 {
        full4(src, planes);
    } else {
        full3(src, planes);
    }
}

#[inline(always)]
fn full<const C: usize>(src: &[u8], (y, cb, cr): (&mut [u8], &mut [u8], &mut [u8])) {
    for (((px, y), cb), cr) in src.chunks_exact(C).zip(y).zip(cb).zip(cr) {
        let (l, b, r) = ycc(px);
        (*y, *cb, *cr) = (l as u8, b as u8, r as u8);
    }
}

super::super::gaussian::simd_fn! {
    fn full3(src: &[u8], planes: (&mut [u8], &mut [u8], &mut [u8])) {
        full::<3>(src, planes)
    }
}

super::super::gaussian::simd_fn! {
    fn full4(src: &[u8], planes: (&mut [u8], &mut [u8], &mut [u8])) {
        full::<4>(src, planes)
    }
}

super::super::gaussian::simd_fn! {
    fn pair3(rows: (&[u8], &[u8]), p: &mut Planes) {
        pair::<3>(rows, p)
    }
}

super::super::gaussian::simd_fn! {
    fn pair4(rows: (&[u8], &[u8]), p: &mut Planes) {
        pair::<4>(rows, p)
    }
}

#[cfg(test)]
mod tests {
    use super::averaged;

    #[test]
    fn chroma_is_libjpegs_average_and_luma_untouched() {
        // 5x3: an odd last column and an odd last row.
        let (w, h) = (5, 3);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 256) as u8).collect();
        let out = averaged(&rgb, w, h, 3);
        let px = |x: usize, y: usize| {
            let i = (y * w + x) * 3;
            jpeg_encoder::rgb_to_ycbcr(rgb[i], rgb[i + 1], rgb[i + 2])
        };
        for y in 0..h {
            for x in 0..w {
                let i = (y * w + x) * 3;
                assert_eq!(out[i], px(x, y).0, "luma at {x},{y}");
                // The block's four pixels, edges repeated.
                let (x0, y0) = (x / 2 * 2, y / 2 * 2);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let four = [px(x0, y0), px(x1, y0), px(x0, y1), px(x1, y1)];
                let bias = 1 + (x / 2) as u32 % 2;
                let cb: u32 = four.iter().map(|p| u32::from(p.1)).sum();
                let cr: u32 = four.iter().map(|p| u32::from(p.2)).sum();
                assert_eq!(u32::from(out[i + 1]), (cb + bias) / 4, "Cb at {x},{y}");
                assert_eq!(u32::from(out[i + 2]), (cr + bias) / 4, "Cr at {x},{y}");
            }
        }
        // RGBA: alpha is left out.
        let rgba: Vec<u8> = rgb
            .chunks_exact(3)
            .flat_map(|p| [p[0], p[1], p[2], 9])
            .collect();
        assert_eq!(averaged(&rgba, w, h, 4), out);
    }
}
