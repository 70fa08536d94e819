// The parts of xmpp.js (@xmpp/component, @xmpp/client) Hush uses: the packages ship no types.
declare module '@xmpp/component' {
  import type { EventEmitter } from 'node:events';

  export interface Element {
    name: string;
    attrs: Record<string, string | undefined>;
    children: Array<Element | string>;
    is(name: string, ns?: string): boolean;
    getChild(name: string, ns?: string): Element | undefined;
    getChildren(name: string, ns?: string): Element[];
    getChildElements(): Element[];
    getChildText(name: string, ns?: string): string | null;
    text(): string;
    append(...children: Array<Element | string>): Element;
    toString(): string;
  }

  export function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: Array<Element | string | undefined>): Element;

  export interface IqContext {
    stanza: Element;
    element: Element;
    from: string;
    to: string;
  }

  /** An IQ handler: the result's child (true: an empty result) or an error element. */
  export type IqHandler = (ctx: IqContext) => Promise<Element | boolean | undefined> | Element | boolean | undefined;

  /** What xmpp.js's client and component share. */
  export interface Entity extends EventEmitter {
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
    iqCallee: { get(ns: string, name: string, handler: IqHandler): void; set(ns: string, name: string, handler: IqHandler): void };
  }

  export type Component = Entity;

  export function component(o: { service: string; domain: string; password: string }): Component;
}

declare module '@xmpp/client' {
  import type { Element, Entity } from '@xmpp/component';

  export { Element };
  export function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: Array<Element | string | undefined>): Element;

  export interface Client extends Entity {
    iqCaller: { request(el: Element, timeoutMs?: number): Promise<Element> };
  }

  export function client(o: { service: string; domain: string; username?: string; password?: string; resource?: string }): Client;
}
