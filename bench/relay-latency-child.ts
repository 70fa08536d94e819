// The SEND→NMSG latency clients of the relay benchmark, in a process of their
// own: a fresh heap, so their garbage collection, and the throughput runs'
// leftovers, weigh as little as possible on the latencies they measure.
//   node --import tsx bench/relay-latency-child.ts <relay address> <relay pid>
// Prints the run as one line of JSON.
import { latencyRun } from './relay.ts';

const [address, pid] = process.argv.slice(2);
if (!address || !pid) {
  console.error('usage: relay-latency-child.ts <relay address> <relay pid>');
  process.exit(64);
}
const r = await latencyRun({ address, pid: Number(pid) });
console.log(JSON.stringify(r));
process.exit(0);
