// SegmentedBytes as a value is used: its text, its string forms and its length,
// the same whether the bytes come in one segment or are split anywhere.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SegmentedBytes, openBlob } from 'persist-location';

/** `bytes` cut into segments at the given offsets. */
function split(bytes: Uint8Array, ...cuts: number[]): SegmentedBytes {
  const bounds = [0, ...cuts, bytes.byteLength];
  return new SegmentedBytes(bounds.slice(1).map((end, i) => bytes.subarray(bounds[i], end)));
}

describe('SegmentedBytes', () => {
  const text = 'größe: 1 €, 🎉 done';
  const bytes = new TextEncoder().encode(text);

  test('text() and toString() decode UTF-8 across segment boundaries, even inside a character', () => {
    // Every cut, including ones inside the 2-, 3- and 4-byte characters.
    for (let cut = 0; cut <= bytes.byteLength; cut++) {
      const value = split(bytes, cut);
      assert.equal(value.text(), text, `cut at ${cut}`);
      assert.equal(value.toString(), text);
      assert.equal(`${value}`, text);
      assert.equal(String(value), text);
    }
    assert.equal(split(bytes, 1, 3, 4, 10, 17).text(), text);
  });

  test('toString(encoding) is the encoding of the whole value, whatever the segments', () => {
    const binary = Uint8Array.from({ length: 200 }, (_, i) => (i * 37) & 0xff);
    const whole = Buffer.from(binary);
    for (const value of [new SegmentedBytes(binary), split(binary, 1), split(binary, 2, 5, 199)]) {
      for (const encoding of ['hex', 'base64', 'base64url', 'latin1'] as const) assert.equal(value.toString(encoding), whole.toString(encoding), encoding);
    }
  });

  test('byteLength is length, for code written for a Uint8Array; bytes that are not UTF-8 read as U+FFFD', () => {
    assert.equal(split(bytes, 3).byteLength, bytes.byteLength);
    assert.equal(new SegmentedBytes([]).byteLength, 0);
    assert.equal(new SegmentedBytes([]).text(), '');
    assert.equal(split(Uint8Array.from([0x61, 0xff, 0x62]), 2).text(), 'a\uFFFDb');
    // A byte order mark is kept, as the bytes have it.
    assert.equal(new SegmentedBytes(Uint8Array.from([0xef, 0xbb, 0xbf, 0x78])).text(), '\uFEFFx');
  });

  test('blob.get gives the text in one call', async () => {
    const blob = await openBlob(`mem://segmented-${process.pid}`);
    try {
      await blob.set('k', bytes);
      assert.equal((await blob.get('k'))?.text(), text);
      assert.equal((await blob.get('missing'))?.text(), undefined);
    } finally {
      await blob.close();
    }
  });
});
