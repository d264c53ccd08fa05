// The page's labels: the app's label store (picsort.photos.labels.LabelStore) kept in the browser, and its zip.
// The manifest lines live in localStorage (one JSON array per model), the photos' bytes in IndexedDB (localStorage
// holds a few MB only). The zip is LabelStore.write_zip's: `<label>/<sha256>.<extension>` for each photo's latest
// label, and manifest.jsonl, which `picsort teach labels.zip` and train.ipynb read (picsort.photos.sources.gather_labels).

// ---- SHA-256 (crypto.subtle exists only on https and localhost: a laptop serving a room over http has none) ----
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
  0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
  0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
  0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
  0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
  0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
  0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
  0xc67178f2]);

export function sha256Plain(bytes) {
  const length = bytes.length;
  const padded = new Uint8Array(((length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length << 3) >>> 0);
  const hash = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c,
                                0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, h] = hash;
    for (let i = 0; i < 64; i++) {
      const t1 = (h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      h = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    hash[0] += a; hash[1] += b; hash[2] += c; hash[3] += d; hash[4] += e; hash[5] += f; hash[6] += g; hash[7] += h;
  }
  return [...hash].map((x) => x.toString(16).padStart(8, "0")).join("");
}

export async function sha256(bytes) {
  if (globalThis.crypto?.subtle) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return [...digest].map((x) => x.toString(16).padStart(2, "0")).join("");
  }
  return sha256Plain(bytes);
}

// ---- a stored (uncompressed) zip, as LabelStore.write_zip writes ----
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes) {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) crc = CRC_TABLE[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

// files: [{ name, bytes }] -> a Blob of a zip holding them, stored. Names are ASCII (label/sha.ext) or the
// manifest's, so no UTF-8 flag is needed; a class name with other letters gets it (bit 11).
export function zipBlob(files) {
  const encoder = new TextEncoder();
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { name, bytes } of files) {
    const nameBytes = encoder.encode(name);
    const crc = crc32(bytes);
    const flags = /^[\x20-\x7e]*$/.test(name) ? 0 : 0x0800;
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true); local.setUint16(4, 20, true); local.setUint16(6, flags, true);
    local.setUint16(8, 0, true); local.setUint16(10, 0, true); local.setUint16(12, 0x21, true);
    local.setUint32(14, crc, true); local.setUint32(18, bytes.length, true); local.setUint32(22, bytes.length, true);
    local.setUint16(26, nameBytes.length, true); local.setUint16(28, 0, true);
    parts.push(local, nameBytes, bytes);
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true); entry.setUint16(4, 20, true); entry.setUint16(6, 20, true);
    entry.setUint16(8, flags, true); entry.setUint16(10, 0, true); entry.setUint16(12, 0, true);
    entry.setUint16(14, 0x21, true); entry.setUint32(16, crc, true); entry.setUint32(20, bytes.length, true);
    entry.setUint32(24, bytes.length, true); entry.setUint16(28, nameBytes.length, true);
    entry.setUint32(42, offset, true);
    central.push(entry, nameBytes);
    offset += 30 + nameBytes.length + bytes.length;
  }
  const centralSize = central.reduce((sum, part) => sum + part.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true); end.setUint16(8, files.length, true); end.setUint16(10, files.length, true);
  end.setUint32(12, centralSize, true); end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: "application/zip" });
}

// ---- the store ----
function randomHex() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return [...bytes].map((x) => x.toString(16).padStart(2, "0")).join("");
}

function now() {
  return new Date().toISOString().replace("Z", "+00:00"); // as picsort.photos.labels._now writes it
}

function openPhotos(name) {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(name, 1);
    request.onupgradeneeded = () => request.result.createObjectStore("photos");
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

export class LabelStore {
  constructor(key) {
    this.key = `picsort-labels:${key}`;
    this.dbName = `picsort-photos:${key}`;
    this.savedIds = []; // this page's saves, newest last: what undo may take back (as the app's undo)
    this.db = null;
  }

  lines() {
    try {
      const lines = JSON.parse(localStorage.getItem(this.key) || "[]");
      return Array.isArray(lines) ? lines : [];
    } catch {
      return [];
    }
  }

  write(lines) {
    localStorage.setItem(this.key, JSON.stringify(lines));
  }

  async photos() {
    if (!this.db) this.db = await openPhotos(this.dbName);
    return this.db;
  }

  latest() {
    const latest = new Map();
    for (const line of this.lines()) {
      latest.delete(line.sha256);
      latest.set(line.sha256, line);
    }
    return latest;
  }

  labelOf(digest) {
    const line = this.latest().get(digest);
    return line ? line.label : null;
  }

  counts() {
    const counts = {};
    for (const line of this.latest().values()) if (line.label !== null) counts[line.label] = (counts[line.label] || 0) + 1;
    return counts;
  }

  async save(bytes, digest, extension, label, { predicted = null, probabilities = null, originalName = null } = {}) {
    const db = await this.photos();
    await done(db.transaction("photos", "readwrite").objectStore("photos").put(bytes, digest));
    const line = { id: randomHex(), sha256: digest, label, predicted, probabilities, original_name: originalName,
                   time: now(), path: `${label}/${digest}.${extension}` };
    this.write([...this.lines(), line]);
    this.savedIds.push(line.id);
    return line;
  }

  // Take back this page's latest save still in effect (LabelStore.undo): the photo gets the label it had before.
  undo() {
    const lines = this.lines();
    const undone = new Set(lines.filter((line) => line.undoes).map((line) => line.undoes));
    const effective = lines.filter((line) => !line.undoes && !undone.has(line.id));
    const mine = effective.filter((line) => this.savedIds.includes(line.id));
    if (!mine.length) return null;
    const last = mine[mine.length - 1];
    const others = effective.filter((line) => line !== last && line.sha256 === last.sha256);
    const restored = others.length ? others[others.length - 1] : null;
    const line = { id: randomHex(), undoes: last.id, sha256: last.sha256, label: restored ? restored.label : null,
                   predicted: restored ? restored.predicted : null,
                   probabilities: restored ? restored.probabilities : null,
                   original_name: restored ? restored.original_name : null, time: now(),
                   path: restored ? restored.path : null };
    this.write([...lines, line]);
    this.savedIds.splice(this.savedIds.indexOf(last.id), 1);
    return { undone: last, now: line };
  }

  async zip() {
    const db = await this.photos();
    const files = [];
    const lines = this.lines();
    for (const line of this.latest().values()) {
      if (line.label === null) continue;
      const bytes = await done(db.transaction("photos").objectStore("photos").get(line.sha256));
      if (bytes) files.push({ name: line.path, bytes: new Uint8Array(bytes) });
    }
    const manifest = lines.map((line) => JSON.stringify(line) + "\n").join("");
    files.push({ name: "manifest.jsonl", bytes: new TextEncoder().encode(manifest) });
    return { blob: zipBlob(files), photos: files.length - 1 };
  }

  async clear() {
    localStorage.removeItem(this.key);
    this.savedIds = [];
    const db = await this.photos();
    await done(db.transaction("photos", "readwrite").objectStore("photos").clear());
  }
}
