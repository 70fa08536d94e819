// `npm run bench [-- SECTION...]`: runs every benchmark section (or the named
// ones) in turn. Each section prints its own table and writes
// bench/results/<section>.json. Add a component's benchmark here.
import { run as relay } from './relay.ts';
import { run as ntf } from './ntf.ts';
import { run as push } from './push.ts';
import { run as client } from './client.ts';
import { run as faults } from './faults.ts';
import { run as abuse } from './abuse.ts';
import { run as cluster } from './cluster.ts';
import { run as xmpp } from './xmpp.ts';

const SECTIONS: { name: string; run: () => Promise<void> }[] = [
  { name: 'relay', run: relay },
  { name: 'ntf', run: ntf },
  { name: 'push', run: push },
  { name: 'client', run: client },
  { name: 'faults', run: faults },
  { name: 'abuse', run: abuse },
  { name: 'cluster', run: cluster },
  { name: 'xmpp', run: xmpp },
];

const wanted = process.argv.slice(2);
const unknown = wanted.filter((w) => !SECTIONS.some((s) => s.name === w));
if (unknown.length > 0) {
  console.error(`unknown section(s): ${unknown.join(', ')}; sections: ${SECTIONS.map((s) => s.name).join(', ')}`);
  process.exit(64);
}

let failed = 0;
for (const s of SECTIONS) {
  if (wanted.length > 0 && !wanted.includes(s.name)) continue;
  console.log(`== ${s.name} ==`);
  try {
    await s.run();
  } catch (e) {
    failed++;
    console.error(`${s.name}: FAILED: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
  }
  console.log();
}
process.exit(failed > 0 ? 1 : 0);
