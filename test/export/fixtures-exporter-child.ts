// Child process for the spool test: exports findings to a backend that is
// down, reports when they are spooled, and waits to be SIGKILLed. With
// "drain" it just starts an exporter on the same spool and flushes.
import { Exporter } from '../../src/export/exporter.js';
import { makeFindings } from '../helpers/findings.js';

const [mode, backend, spoolDir, count, tag] = process.argv.slice(2);
const exporter = new Exporter({ backend: backend!, spoolDir: spoolDir!, backoffMaxMs: 500 });
if (mode === 'spool') {
  for (const f of makeFindings(Number(count), tag!)) exporter.export(f);
  process.stdout.write(`spooled ${count}\n`);
  setInterval(() => {}, 1000); // wait for SIGKILL
} else {
  const ok = await exporter.flush(30_000);
  await exporter.shutdown(0);
  process.stdout.write(ok ? 'drained\n' : 'not drained\n');
  process.exit(ok ? 0 : 1);
}
