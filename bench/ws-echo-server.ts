// Peer for the relay benchmark: a plain `ws` server on 127.0.0.1 that echoes
// every binary frame as it is. Prints "listening <port>" when ready.
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false, maxPayload: 1 << 20 });
wss.on('connection', (ws) => {
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
});
wss.on('listening', () => {
  const a = wss.address();
  console.log(`listening ${typeof a === "string" || a === null ? a : a.port}`);
});
const stop = () => wss.close(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
