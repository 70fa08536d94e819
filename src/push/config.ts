// Push provider settings, shared by the notification server (providers built
// in) and the push gateway: the config schema of each provider and the
// providers made from it.
import fs from 'node:fs';
import type { Logger } from 'pino';
import { z } from 'zod';
import { boolSchema, positiveSchema } from '../server/config.ts';
import { alertFits } from './apns/payload.ts';
import { ApnsProvider } from './apns/provider.ts';
import { FcmProvider } from './fcm/provider.ts';
import type { PushProvider } from './provider.ts';
import { WebPushProvider } from './webpush/provider.ts';

const caFile = z.string().min(1).optional();

const apnsAlert = z
  .object({ title: z.string().min(1), body: z.string().min(1) })
  .strict()
  .refine(alertFits, { message: 'too long: a message push with this alert would exceed APNs\'s 4096 bytes' });

export const providerSchemas = {
  /** Apple Push Notification service: token-based (.p8) authentication. */
  apns: z
    .object({
      /** production, sandbox, or a URL. */
      host: z.string().min(1).default('production'),
      keyId: z.string().min(1),
      teamId: z.string().min(1),
      keyFile: z.string().min(1),
      topic: z.string().min(1),
      /** Tokens of development builds are 'apns-sandbox'. */
      serves: z.enum(['apns', 'apns-sandbox']).optional(),
      caFile,
      connections: positiveSchema.default(1),
      /** What iOS shows for a message push when the app's extension cannot run (all Apple sees); in the app's language. */
      alert: apnsAlert.optional(),
    })
    .strict()
    .optional(),
  /** Firebase Cloud Messaging HTTP v1: a service account's key file. */
  fcm: z
    .object({
      serviceAccountFile: z.string().min(1),
      /** FCM's origin; another for a test server. */
      endpoint: z.url({ protocol: /^https?$/ }).optional(),
      caFile,
      connections: positiveSchema.default(1),
    })
    .strict()
    .optional(),
  /** Web Push (RFC 8030/8291/8292), and UnifiedPush, whose endpoints are Web Push endpoints. */
  webpush: z
    .object({
      /** The VAPID P-256 private key (PKCS#8 PEM); its public key is the applicationServerKey apps subscribe with. */
      vapidKeyFile: z.string().min(1),
      /** mailto: or https: contact for push services' operators. */
      subject: z.string().regex(/^(mailto:|https:)/, 'a mailto: or https: URI'),
      caFile,
      maxSockets: positiveSchema.default(64),
      /** Allow endpoints on loopback/private networks (local UnifiedPush distributors, tests); off: no SSRF by subscription. */
      allowPrivateNetworks: boolSchema.default(false),
    })
    .strict()
    .optional(),
};

export type ProviderSettings = { [K in keyof typeof providerSchemas]?: z.infer<(typeof providerSchemas)[K]> };

/** Environment overrides of provider settings, under a server's prefix (HUSH_NTF_, HUSH_GATEWAY_). */
export const providerEnv = (prefix: string): Record<string, string> => ({
  [`${prefix}APNS_HOST`]: 'apns.host',
  [`${prefix}APNS_KEY_ID`]: 'apns.keyId',
  [`${prefix}APNS_TEAM_ID`]: 'apns.teamId',
  [`${prefix}APNS_KEY_FILE`]: 'apns.keyFile',
  [`${prefix}APNS_TOPIC`]: 'apns.topic',
  [`${prefix}APNS_CA_FILE`]: 'apns.caFile',
  [`${prefix}APNS_ALERT_TITLE`]: 'apns.alert.title',
  [`${prefix}APNS_ALERT_BODY`]: 'apns.alert.body',
  [`${prefix}FCM_SERVICE_ACCOUNT_FILE`]: 'fcm.serviceAccountFile',
  [`${prefix}FCM_ENDPOINT`]: 'fcm.endpoint',
  [`${prefix}FCM_CA_FILE`]: 'fcm.caFile',
  [`${prefix}WEBPUSH_VAPID_KEY_FILE`]: 'webpush.vapidKeyFile',
  [`${prefix}WEBPUSH_SUBJECT`]: 'webpush.subject',
  [`${prefix}WEBPUSH_CA_FILE`]: 'webpush.caFile',
});

const read = (file: string | undefined) => (file ? { ca: fs.readFileSync(file) } : {});

/** The providers the settings configure (none if none is). */
export function createProviders(c: ProviderSettings, log?: Logger): PushProvider[] {
  const list: PushProvider[] = [];
  if (c.apns)
    list.push(
      new ApnsProvider({
        host: c.apns.host,
        keyId: c.apns.keyId,
        teamId: c.apns.teamId,
        key: fs.readFileSync(c.apns.keyFile, 'utf8'),
        topic: c.apns.topic,
        serves: [c.apns.serves ?? (c.apns.host === 'sandbox' ? 'apns-sandbox' : 'apns')],
        connections: c.apns.connections,
        ...(c.apns.alert ? { alert: c.apns.alert } : {}),
        ...read(c.apns.caFile),
        ...(log ? { log } : {}),
      }),
    );
  if (c.fcm)
    list.push(
      new FcmProvider({
        serviceAccount: fs.readFileSync(c.fcm.serviceAccountFile, 'utf8'),
        connections: c.fcm.connections,
        ...(c.fcm.endpoint ? { endpoint: c.fcm.endpoint } : {}),
        ...read(c.fcm.caFile),
        ...(log ? { log } : {}),
      }),
    );
  if (c.webpush)
    list.push(
      new WebPushProvider({
        vapid: { privateKey: fs.readFileSync(c.webpush.vapidKeyFile, 'utf8'), subject: c.webpush.subject },
        maxSockets: c.webpush.maxSockets,
        allowPrivateNetworks: c.webpush.allowPrivateNetworks,
        ...read(c.webpush.caFile),
        ...(log ? { log } : {}),
      }),
    );
  return list;
}
