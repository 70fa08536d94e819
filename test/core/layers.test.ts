// The source is one downward house: a module imports from its own folder and from lower layers only.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

const SRC = resolve('src');

// Layer of each top folder under src/. Folders of one layer do not import each other.
const LAYERS: Record<string, number> = {
  core: 0, // portable: encodings, crypto seam, handshake, client
  node: 1, // runtime adapters: Node implementations of core's seams (crypto, WebSocket)
  server: 2, // server kit shared by every server
  relay: 3,
  push: 3, // push vocabulary and providers (APNs, FCM, Web Push, a remote gateway)
  ntf: 4,
  gateway: 4,
  xmpp: 4, // the XEP-0357 app server: push providers for XMPP servers
  sdk: 5,
  chat: 6, // apps
  stack: 6,
  cli: 7, // the `hush` command: starts every server and app
  web: 7, // the local stack's browser pages, typed by the stack's web API (src/stack/web.ts bundles them)
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

// Relative specifiers of static imports/exports, side-effect imports and import() (also in type positions).
function relativeImports(text: string): string[] {
  const specs: string[] = [];
  for (const m of text.matchAll(/\bfrom\s+['"](\.[^'"]+)['"]|\bimport\s*\(?\s*['"](\.[^'"]+)['"]/g)) {
    specs.push((m[1] ?? m[2])!);
  }
  return specs;
}

// Bare specifiers (packages, node: built-ins) of every import.
const bareImports = (text: string): string[] =>
  [...text.matchAll(/\bfrom\s+['"]([^.'"][^'"]*)['"]|\bimport\s*\(?\s*['"]([^.'"][^'"]*)['"]/g)].map((m) => (m[1] ?? m[2])!);

function folderOf(path: string): string {
  return relative(SRC, path).split(/[\\/]/)[0]!;
}

function violations(): string[] {
  const found: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file);
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const to = folderOf(resolve(dirname(file), spec));
      if (to === from) continue;
      if (!(from in LAYERS) || !(to in LAYERS) || LAYERS[to]! >= LAYERS[from]!) {
        found.push(`${relative(SRC, file)} imports ${spec} (${from} -> ${to})`);
      }
    }
  }
  return found;
}

test('every top folder under src/ has a layer', () => {
  const folders = readdirSync(SRC, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
  assert.deepEqual(folders.filter((f) => !(f in LAYERS)), []);
});

test('imports only go down the layers, never up or sideways', () => {
  assert.deepEqual(violations(), []);
});

test('core imports no package but the portable noble crypto', () => {
  const found = sourceFiles(join(SRC, 'core')).flatMap((file) =>
    bareImports(readFileSync(file, 'utf8'))
      .filter((spec) => !spec.startsWith('@noble/'))
      .map((spec) => `${relative(SRC, file)} imports ${spec}`),
  );
  assert.deepEqual(found, []);
});

test('the import scanner sees multi-line, side-effect and type imports', () => {
  const text = "import {\n  a,\n  b,\n} from '../ntf/x.ts';\nimport './y.ts';\nexport * from '../z.ts';\ntype T = import('../w.ts').W;\nimport x from 'node:fs';";
  assert.deepEqual(relativeImports(text), ['../ntf/x.ts', './y.ts', '../z.ts', '../w.ts']);
  assert.deepEqual(bareImports(text), ['node:fs']);
});
