#!/usr/bin/env -S node --max-semi-space-size=4
// --max-semi-space-size=4: V8's young generation stays near 8 MiB (two 4 MiB
// semi-spaces) instead of growing to 32 MiB and more under a drift storm or
// a backend's ingest (bench/BENCHMARKS.md, rows 7 and 11).
import { main } from '../dist/bundle/driftwatch.js';

process.exitCode = await main(process.argv.slice(2));
