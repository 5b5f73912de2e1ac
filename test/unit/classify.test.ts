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
  ['image file through a nested overlay', F.OVERLAY | F.OVL_NESTED, 'LOWER'],
  ['dropped file behind a nested overlay', UPPER | F.OVL_NESTED, 'UPPER_NEW'],
  ['tmpfs file behind a nested overlay', F.OVERLAY | F.TMPFS | F.OVL_NESTED, 'TMPFS'],
  ['nested overlay the kernel could not follow is never image', F.OVERLAY | F.OVL_NESTED | F.OVL_UNFOLLOWED, 'UNKNOWN'],
  ['unfollowed wins over upper bits of the top overlay', UPPER | F.OVL_NESTED | F.OVL_UNFOLLOWED, 'UNKNOWN'],
  ['overlay types unknown at load is never image', F.OVERLAY | F.OVL_UNRESOLVED, 'UNKNOWN'],
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
