// The live dashboard (/dashboard): polls /api/metrics (src/stack/metrics.ts)
// every second and draws small SVG charts — tokens and subscriptions by
// status (stacked bars over time), notifications per second (from counter
// deltas), the push latency and message → push histograms, and queue lengths. Data marks are
// <rect>, <path> and <circle> elements; axes and grid lines are <line>s, so a
// chart shows marks only once it has data to draw.
import type { DashboardMetrics, Histogram } from '../stack/metrics.ts';

const POLL_MS = 1000;
/** Seconds of history the time charts show: what there is, from 30 s up to 2 minutes. */
const MIN_WINDOW_S = 30;
const MAX_WINDOW_S = 120;
let windowS = MIN_WINDOW_S;
const KEEP = 600;
const W = 560;
const H = 190;
const M = { l: 40, r: 12, t: 10, b: 22 };
const PW = W - M.l - M.r;
const PH = H - M.t - M.b;
const SVG_NS = 'http://www.w3.org/2000/svg';

const TOKEN_COLORS: Record<keyof DashboardMetrics['tokens'], string> = {
  NEW: '#9aa5b8',
  REGISTERED: '#f0b429',
  CONFIRMED: '#f7d070',
  ACTIVE: '#27ab83',
  INVALID: '#e12d39',
  EXPIRED: '#8e44ad',
};
const SUB_COLORS: Record<keyof DashboardMetrics['subscriptions'], string> = {
  NEW: '#9aa5b8',
  PENDING: '#f0b429',
  ACTIVE: '#27ab83',
  INACTIVE: '#f57c00',
  END: '#5c6ac4',
  DELETED: '#b0b7c3',
  AUTH: '#e12d39',
};

interface Series {
  name: string;
  color: string;
  values: Array<{ t: number; v: number }>;
}

// ---- DOM and SVG helpers

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}, text?: string): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function html<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

const fmt = (v: number, digits = 1) => (Number.isInteger(v) ? String(v) : v.toFixed(digits));
const seconds = (s: number) => (s < 1 ? `${fmt(+(s * 1000).toPrecision(3))} ms` : `${fmt(+s.toPrecision(3))} s`);

/** 1, 2, 5 × 10^k at or above v (at least 1). */
function niceMax(v: number): number {
  if (!(v > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** A chart's section: its SVG (made once) and legend. */
class Chart {
  readonly svg: SVGSVGElement;
  readonly legend: HTMLElement;
  readonly sub: HTMLElement;

  constructor(readonly id: string) {
    const section = document.getElementById(id);
    if (!section) throw new Error(`no #${id}`);
    this.sub = section.querySelector<HTMLElement>('.sub') ?? section.appendChild(html('div', { class: 'sub' }));
    this.svg = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': section.querySelector('h2')?.textContent ?? id });
    this.legend = html('div', { class: 'legend' });
    section.append(this.svg, this.legend);
  }

  /** Clears the plot; draws the y grid (0…max) and returns the y mapping. */
  frame(max: number, unit = ''): (v: number) => number {
    this.svg.replaceChildren();
    const y = (v: number) => M.t + PH - (PH * v) / max;
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      this.svg.append(
        svg('line', { class: f === 0 ? 'axis' : 'grid', x1: M.l, x2: W - M.r, y1: y(v), y2: y(v) }),
        svg('text', { x: M.l - 6, y: y(v) + 3, 'text-anchor': 'end' }, `${fmt(v)}${unit}`),
      );
    }
    return y;
  }

  /** Time axis labels for the last windowS seconds. */
  timeAxis(): void {
    for (const s of [windowS, windowS / 2, 0]) {
      const x = M.l + PW * (1 - s / windowS);
      this.svg.append(svg('text', { x, y: H - 6, 'text-anchor': s === 0 ? 'end' : s === windowS ? 'start' : 'middle' }, s === 0 ? 'now' : `−${s} s`));
    }
  }

  empty(text: string): void {
    this.svg.append(svg('text', { class: 'empty', x: M.l + PW / 2, y: M.t + PH / 2, 'text-anchor': 'middle' }, text));
  }

  setLegend(items: Array<{ name: string; color: string; value: string; zero?: boolean }>): void {
    this.legend.replaceChildren(
      ...items.map((i) => html('span', i.zero ? { class: 'zero' } : {}, html('i', { style: `background:${i.color}` }), `${i.name} ${i.value}`)),
    );
  }
}

const xOfTime = (t: number, now: number) => M.l + PW * (1 - (now - t) / (windowS * 1000));

/** Stacked bars, one per sample in the window, by status. */
function drawStacked<K extends string>(chart: Chart, samples: DashboardMetrics[], pick: (m: DashboardMetrics) => Record<K, number>, colors: Record<K, string>): void {
  const keys = Object.keys(colors) as K[];
  const now = samples.at(-1)?.time ?? Date.now();
  const visible = samples.filter((m) => now - m.time <= windowS * 1000);
  const total = (m: DashboardMetrics) => keys.reduce((s, k) => s + (pick(m)[k] ?? 0), 0);
  const y = chart.frame(niceMax(Math.max(0, ...visible.map(total))));
  chart.timeAxis();
  const bw = Math.max(1.5, (PW / windowS) * (POLL_MS / 1000) - 1);
  let any = false;
  for (const m of visible) {
    const x = xOfTime(m.time, now) - bw;
    let acc = 0;
    for (const k of keys) {
      const v = pick(m)[k] ?? 0;
      if (v <= 0) continue;
      any = true;
      const top = y(acc + v);
      chart.svg.append(svg('rect', { x: Math.max(M.l, x), y: top, width: bw, height: y(acc) - top, fill: colors[k] }, undefined));
      acc += v;
    }
  }
  if (!any) chart.empty(samples.length ? 'none yet' : 'waiting for data…');
  const last = samples.at(-1);
  chart.setLegend(keys.map((k) => ({ name: k, color: colors[k], value: last ? String(pick(last)[k] ?? 0) : '–', zero: !last || !(pick(last)[k] > 0) })));
}

/** Lines over the window; a dot on each line's latest value. */
function drawLines(chart: Chart, series: Series[], unit: string, digits = 1): void {
  const now = Math.max(0, ...series.flatMap((s) => s.values.map((p) => p.t)));
  const visible = series.map((s) => ({ ...s, values: s.values.filter((p) => now - p.t <= windowS * 1000) }));
  const y = chart.frame(niceMax(Math.max(0, ...visible.flatMap((s) => s.values.map((p) => p.v)))));
  chart.timeAxis();
  let any = false;
  for (const s of visible) {
    if (s.values.length === 0) continue;
    any = true;
    const d = s.values.map((p, i) => `${i ? 'L' : 'M'}${xOfTime(p.t, now).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    chart.svg.append(svg('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round' }));
    const last = s.values.at(-1)!;
    chart.svg.append(svg('circle', { cx: xOfTime(last.t, now), cy: y(last.v), r: 3, fill: s.color }));
  }
  if (!any) chart.empty('waiting for data…');
  chart.setLegend(
    series.map((s) => {
      const v = s.values.at(-1)?.v;
      return { name: s.name, color: s.color, value: v === undefined ? '–' : `${fmt(v, digits)}${unit}`, zero: !v };
    }),
  );
}

/** A latency histogram: Prometheus's cumulative buckets as one bar per bucket. */
function drawLatency(chart: Chart, m: DashboardMetrics | undefined, h: Histogram | undefined, what: { noun: string; about: string; color: string }): void {
  const bars: Array<{ label: string; n: number }> = [];
  let prev = 0;
  let prevLe = 0;
  for (const b of h?.buckets ?? []) {
    const label = b.le === '+Inf' ? `>${seconds(prevLe)}` : seconds(b.le);
    bars.push({ label, n: Math.max(0, b.count - prev) });
    prev = b.count;
    if (b.le !== '+Inf') prevLe = b.le;
  }
  const y = chart.frame(niceMax(Math.max(0, ...bars.map((b) => b.n)) * 1.1));
  const slot = PW / Math.max(1, bars.length);
  bars.forEach((b, i) => {
    const x = M.l + slot * i;
    chart.svg.append(svg('text', { x: x + slot / 2, y: H - 6, 'text-anchor': 'middle' }, b.label.replace(/ /g, '')));
    if (b.n <= 0) return;
    chart.svg.append(svg('rect', { x: x + 3, y: y(b.n), width: slot - 6, height: y(0) - y(b.n), rx: 2, fill: what.color }));
    chart.svg.append(svg('text', { x: x + slot / 2, y: y(b.n) - 3, 'text-anchor': 'middle' }, String(b.n)));
  });
  if (!h || h.count === 0) {
    chart.empty(m ? `no ${what.noun} yet` : 'waiting for data…');
    chart.sub.textContent = what.about;
    chart.setLegend([]);
    return;
  }
  const quantile = (q: number) => {
    const want = q * h.count;
    const b = h.buckets.find((x) => x.count >= want);
    return !b ? '–' : b.le === '+Inf' ? `>${seconds(prevLe)}` : `≤ ${seconds(b.le)}`;
  };
  chart.sub.textContent = `${h.count} ${what.noun} since start · mean ${seconds(h.sum / h.count)} · p50 ${quantile(0.5)} · p95 ${quantile(0.95)}`;
  chart.setLegend([{ name: what.noun, color: what.color, value: String(h.count) }]);
}

// ---- the dashboard

export class Dashboard {
  readonly samples: DashboardMetrics[] = [];
  readonly rates: { pushes: Series; received: Series; sent: Series } = {
    pushes: { name: 'pushes sent (NTF → provider)', color: '#4f46e5', values: [] },
    received: { name: 'NMSGs received (relay → NTF)', color: '#27ab83', values: [] },
    sent: { name: 'messages sent (to relay)', color: '#f0b429', values: [] },
  };
  readonly queues: { queues: Series; waiting: Series; pending: Series; pushQueue: Series } = {
    queues: { name: 'queues (relay)', color: '#9aa5b8', values: [] },
    waiting: { name: 'messages waiting (relay)', color: '#4f46e5', values: [] },
    pending: { name: 'NMSGs kept for an absent notifier (relay)', color: '#f57c00', values: [] },
    pushQueue: { name: 'pushes queued (NTF)', color: '#8e44ad', values: [] },
  };
  private readonly charts = {
    tokens: new Chart('chart-tokens'),
    subscriptions: new Chart('chart-subscriptions'),
    rate: new Chart('chart-rate'),
    latency: new Chart('chart-latency'),
    delay: new Chart('chart-delay'),
    queues: new Chart('chart-queues'),
  };
  private busy = false;
  private errors = 0;

  constructor() {
    this.draw();
    void this.poll();
    setInterval(() => void this.poll(), POLL_MS);
  }

  get latest(): DashboardMetrics | undefined {
    return this.samples.at(-1);
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    const status = document.getElementById('status')!;
    try {
      const res = await fetch('/api/metrics', { cache: 'no-store' });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      this.add((await res.json()) as DashboardMetrics);
      this.errors = 0;
      status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
      status.classList.remove('error');
    } catch (e) {
      this.errors++;
      status.textContent = `cannot read /api/metrics (${e instanceof Error ? e.message : String(e)})${this.errors > 1 ? ` ×${this.errors}` : ''}`;
      status.classList.add('error');
    } finally {
      this.busy = false;
    }
  }

  add(m: DashboardMetrics): void {
    const prev = this.samples.at(-1);
    this.samples.push(m);
    if (this.samples.length > KEEP) this.samples.shift();
    if (prev && m.time > prev.time) {
      const dt = (m.time - prev.time) / 1000;
      // A counter that went down: the stack restarted; its rate is unknown for this interval.
      const rate = (a: number, b: number) => (b >= a ? (b - a) / dt : 0);
      this.push(this.rates.pushes, m.time, rate(prev.pushes.total, m.pushes.total));
      this.push(this.rates.received, m.time, rate(prev.ntf.notificationsReceived, m.ntf.notificationsReceived));
      this.push(this.rates.sent, m.time, rate(prev.relay.messagesSent, m.relay.messagesSent));
    }
    this.push(this.queues.queues, m.time, m.relay.queues);
    this.push(this.queues.waiting, m.time, m.relay.messagesWaiting);
    this.push(this.queues.pending, m.time, m.relay.pendingNotifications);
    this.push(this.queues.pushQueue, m.time, Object.values(m.pushes.queued).reduce((a, b) => a + b, 0));
    this.draw();
  }

  private push(s: Series, t: number, v: number): void {
    s.values.push({ t, v });
    if (s.values.length > KEEP) s.values.shift();
  }

  private draw(): void {
    const { charts, samples } = this;
    const m = this.latest;
    const span = m && samples[0] ? (m.time - samples[0].time) / 1000 : 0;
    windowS = Math.min(MAX_WINDOW_S, Math.max(MIN_WINDOW_S, Math.ceil(span / 10) * 10));
    drawStacked(charts.tokens, samples, (x) => x.tokens, TOKEN_COLORS);
    drawStacked(charts.subscriptions, samples, (x) => x.subscriptions, SUB_COLORS);
    drawLines(charts.rate, Object.values(this.rates), '/s');
    if (m) charts.rate.sub.textContent = `${m.pushes.total} pushes since start (${m.pushes.byKind.message} message, ${m.pushes.byKind.verification} verification, ${m.pushes.byKind.check} check; ${m.pushes.byOutcome.invalid} invalid, ${m.pushes.byOutcome.failed} failed, ${m.pushes.retries} retries)`;
    drawLatency(charts.latency, m, m?.pushLatency, { noun: 'pushes', about: 'time a push provider took to accept a push', color: '#4f46e5' });
    drawLatency(charts.delay, m, m?.notificationDelay, {
      noun: 'message pushes',
      about: "from the relay's notification to the provider accepting the push",
      color: '#27ab83',
    });
    drawLines(charts.queues, Object.values(this.queues), '', 0);
    if (m) charts.queues.sub.textContent = `${m.relay.notifiers} of ${m.relay.queues} queues with a notifier · ${m.relay.messagesSent} messages sent, ${m.relay.messagesDelivered} delivered`;
    this.summary(m);
  }

  private summary(m: DashboardMetrics | undefined): void {
    const el = document.getElementById('summary');
    if (!el) return;
    const stat = (v: number | string, k: string) => html('div', { class: 'stat card' }, html('div', { class: 'v' }, String(v)), html('div', { class: 'k' }, k));
    if (!m) return void el.replaceChildren();
    el.replaceChildren(
      stat(m.tokens.ACTIVE, 'active tokens'),
      stat(m.subscriptions.ACTIVE, 'active subscriptions'),
      stat(m.pushes.total, 'pushes'),
      stat(m.relay.messagesSent, 'messages sent'),
      stat(m.relay.connections, 'relay connections'),
      stat(m.ntf.connections, 'NTF client connections'),
      stat(m.ntf.relayConnections, 'NTF ↔ relays'),
    );
  }
}

declare global {
  interface Window {
    dashboard: Dashboard;
  }
}

window.dashboard = new Dashboard();
