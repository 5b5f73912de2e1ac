import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classify, type Layer } from '../../src/pipeline/classify.js';
import { FileFlag as F } from '../../src/pipeline/records.js';

const UPPER = F.OVERLAY | F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS;

const cases: Array<[string, number, Layer]> = [
  ['image file (overlay, no upper)', F.OVERLAY, 'LOWER'],
  ['image file with layout bits only', F.OVERLAY | F.OVL_LAYOUT_FSDATA, 'LOWER'],
  ['new file in upper', UPPER, 'UPPER_NEW'],
  ['new file, old ovl_entry layout', UPPER | F.OVL_LAYOUT_ENTRY, 'UPPER_NEW'],
  ['copied-up image file', UPPER | F.OVL_HAS_LOWER, 'UPPER_COPIED_UP'],
  ['upper dentry without the alias flag is not upper', F.OVERLAY | F.OVL_UPPER_DENTRY, 'LOWER'],
  ['alias flag without an upper dentry is not upper', F.OVERLAY | F.OVL_UPPER_ALIAS, 'LOWER'],
  ['has-lower alone is not upper', F.OVERLAY | F.OVL_HAS_LOWER, 'LOWER'],
  ['upper bits without the overlay bit is not overlay', F.OVL_UPPER_DENTRY | F.OVL_UPPER_ALIAS, 'OTHER'],
  ['memfd', F.MEMFD | F.UNLINKED, 'MEMFD'],
  ['tmpfs', F.TMPFS, 'TMPFS'],
  ['host disk', 0, 'OTHER'],
  ['unlinked host file', F.UNLINKED, 'OTHER'],
  ['unrelated bits only', F.EMITTED_ALL | F.UNLINKED | F.OVL_LAYOUT_FSDATA, 'OTHER'],
  ['unlinked new upper file', UPPER | F.UNLINKED, 'UPPER_NEW'],
];

for (const [name, flags, layer] of cases) {
  test(`classify: ${name} → ${layer}`, () => assert.equal(classify(flags), layer));
}

test('classify: every single flag alone never yields an upper layer', () => {
  for (let bit = 0; bit < 16; bit++) {
    const l = classify(1 << bit);
    assert.ok(l !== 'UPPER_NEW' && l !== 'UPPER_COPIED_UP', `bit ${bit} alone gave ${l}`);
  }
});
