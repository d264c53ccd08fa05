// The model view of a photo, as picsort.inference.classify.Classifier.model_view makes it: the whole picture squished to
// (size + extra) × (size + extra) with Pillow's bilinear filter, then the centre size × size cropped. This is
// Pillow's own resampling (libImaging/Resample.c: a triangle filter widened by the reduction factor, so a large
// photo is averaged rather than sampled; coefficients rounded to 22-bit fixed point; a horizontal pass to 8 bits,
// then a vertical one), written again so that the page's pixels are Pillow's to the bit
// (tests/unit/web/test_site.py and tests/end_to_end/test_web_page.py compare them).

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;

function bilinear(x) {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for one axis: each output position's first input, count
// and fixed-point weights.
export function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    const ss = 1.0 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const w = bilinear((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const value = ww !== 0 ? k[x] / ww : k[x];
      weights[xx * ksize + x] = value < 0 ? Math.trunc(-0.5 + value * ONE) : Math.trunc(0.5 + value * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, weights, ksize };
}

function clip8(value) {
  if (value >= ONE * 256) return 255;
  if (value <= 0) return 0;
  return value >> PRECISION_BITS;
}

// rgba: the photo's pixels as getImageData gives them (width × height × 4). Returns the model view, size × size × 3
// (RGB, rows first), as a Uint8Array.
export function modelView(rgba, width, height, size, extra) {
  const scaled = size + extra;
  const left = Math.floor(extra / 2);
  const horizontal = coefficients(width, scaled);
  const vertical = coefficients(height, scaled);
  // The rows the kept output rows read, and the kept output columns: Pillow computes the whole squished picture
  // and then crops it; computing only the crop gives the same pixels.
  const firstRow = vertical.bounds[left * 2];
  const lastRow = vertical.bounds[(left + size - 1) * 2] + vertical.bounds[(left + size - 1) * 2 + 1];
  const rows = lastRow - firstRow;
  const temp = new Uint8Array(rows * size * 3);
  const hk = horizontal.ksize;
  for (let y = 0; y < rows; y++) {
    const rowStart = (y + firstRow) * width * 4;
    for (let xx = 0; xx < size; xx++) {
      const out = left + xx;
      const xmin = horizontal.bounds[out * 2];
      const xmax = horizontal.bounds[out * 2 + 1];
      const base = out * hk;
      let r = ONE >> 1, g = ONE >> 1, b = ONE >> 1;
      let p = rowStart + xmin * 4;
      for (let x = 0; x < xmax; x++, p += 4) {
        const w = horizontal.weights[base + x];
        r += rgba[p] * w;
        g += rgba[p + 1] * w;
        b += rgba[p + 2] * w;
      }
      const t = (y * size + xx) * 3;
      temp[t] = clip8(r);
      temp[t + 1] = clip8(g);
      temp[t + 2] = clip8(b);
    }
  }
  const view = new Uint8Array(size * size * 3);
  const vk = vertical.ksize;
  for (let yy = 0; yy < size; yy++) {
    const out = left + yy;
    const ymin = vertical.bounds[out * 2] - firstRow;
    const ymax = vertical.bounds[out * 2 + 1];
    const base = out * vk;
    for (let xx = 0; xx < size; xx++) {
      let r = ONE >> 1, g = ONE >> 1, b = ONE >> 1;
      for (let y = 0; y < ymax; y++) {
        const w = vertical.weights[base + y];
        const p = ((ymin + y) * size + xx) * 3;
        r += temp[p] * w;
        g += temp[p + 1] * w;
        b += temp[p + 2] * w;
      }
      const t = (yy * size + xx) * 3;
      view[t] = clip8(r);
      view[t + 1] = clip8(g);
      view[t + 2] = clip8(b);
    }
  }
  return view;
}
