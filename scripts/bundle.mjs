// Bundles the CLI (dist/src/cli.js, as tsc wrote it) into one minified ESM
// file, dist/bundle/driftwatch.js, which bin/driftwatch.js runs. The sensor
// is a long-lived process: every module it loads stays in its heap as source
// and bytecode, so only the code it reaches is kept (tree-shaking) and in as
// few bytes as possible. The per-file tree stays in dist/ for the workers
// (custom signatures, backend ingest), the SDK and the tests.
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { rmSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist', 'bundle');
const ownCode = join(root, 'dist', 'src');

// Our modules find files next to themselves (the addon, the repository root,
// worker entry points): each keeps the URL of its own file in dist/src,
// computed from where the bundle lies, so the bundle can move with dist/.
const keepOwnUrl = {
  name: 'keep-own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, async (args) => {
      const contents = await readFile(args.path, 'utf8');
      if (!args.path.startsWith(ownCode) || !contents.includes('import.meta.url')) return undefined;
      const fromBundle = relative(outdir, args.path);
      return { contents: contents.replaceAll('import.meta.url', `new URL(${JSON.stringify(fromBundle)}, import.meta.url).href`), loader: 'js' };
    });
  },
};

rmSync(outdir, { recursive: true, force: true });
// Packages built by rolldown load some dependencies at run time through a
// require() of their own (OpenTelemetry's gRPC exporter: `__require("@grpc/grpc-js")`).
// In the bundle that would load a second copy of the package from
// node_modules, whose objects fail the bundled copy's instanceof checks
// (grpc-js: "Incorrect arguments passed"). Such a require becomes an import.
const staticRequires = {
  name: 'static-package-requires',
  setup(b) {
    b.onLoad({ filter: /node_modules\/.*\.mjs$/ }, async (args) => {
      const contents = await readFile(args.path, 'utf8');
      const specs = [...new Set([...contents.matchAll(/__require\("([^"]+)"\)/g)].map((m) => m[1]).filter((p) => !p.startsWith('node:') && !isBuiltin(p)))];
      if (!specs.length) return undefined;
      let out = contents;
      const imports = specs.map((spec, i) => {
        out = out.replaceAll(`__require(${JSON.stringify(spec)})`, `__dwRequired${i}`);
        return `import * as __dwRequired${i} from ${JSON.stringify(spec)};\n`;
      });
      return { contents: imports.join('') + out, loader: 'js', resolveDir: dirname(args.path) };
    });
  },
};

await build({
  entryPoints: { driftwatch: join(ownCode, 'cli.js') },
  outdir,
  bundle: true,
  // What the CLI imports lazily (other subcommands' stores, optional
  // integrations) stays in chunks of its own, loaded only when used.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  platform: 'node',
  target: 'node24',
  format: 'esm',
  minify: true,
  // Error names and class names stay readable in logs and stack traces;
  // `node --enable-source-maps` maps stack traces back through the .map files
  // (loaded only with that flag).
  keepNames: true,
  sourcemap: 'linked',
  legalComments: 'none',
  // The addon is loaded at run time from native/build.
  external: ['*.node'],
  // CommonJS dependencies call require() for Node's built-ins.
  banner: { js: "import { createRequire as __dwCreateRequire } from 'node:module'; const require = __dwCreateRequire(import.meta.url);" },
  plugins: [keepOwnUrl, staticRequires],
  logLevel: 'warning',
});
