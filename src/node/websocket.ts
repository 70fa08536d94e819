// The Node side of the client's WebSocket seam (Node 20 has no global WebSocket).
// TLS certificates are not what authenticates a Hush server — the handshake
// pins its identity key — so a self-signed certificate is accepted unless a CA
// is given. `lookup` resolves host names (the notification server's relay
// policy, src/server/address-guard.ts).
import type { LookupFunction } from 'node:net';
import WebSocket from 'ws';
import type { WebSocketFactory, WebSocketLike } from '../core/client.ts';

export function nodeWebSocket(o: { ca?: string | Buffer; lookup?: LookupFunction } = {}): WebSocketFactory {
  return (url) =>
    new WebSocket(url, {
      perMessageDeflate: false,
      ...(o.ca ? { ca: o.ca } : { rejectUnauthorized: false }),
      ...(o.lookup ? { lookup: o.lookup } : {}),
    }) as unknown as WebSocketLike;
}
