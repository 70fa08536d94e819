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

  export interface Component extends EventEmitter {
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
    iqCallee: {
      get(ns: string, name: string, handler: (ctx: IqContext) => Promise<Element | boolean | undefined> | Element | boolean | undefined): void;
      set(ns: string, name: string, handler: (ctx: IqContext) => Promise<Element | boolean | undefined> | Element | boolean | undefined): void;
    };
    reconnect: EventEmitter & { delay: number };
  }

  export function component(o: { service: string; domain: string; password: string }): Component;
}

declare module '@xmpp/client' {
  import type { EventEmitter } from 'node:events';
  import type { Element } from '@xmpp/component';

  export { Element };
  export function xml(name: string, attrs?: Record<string, string | undefined> | null, ...children: Array<Element | string | undefined>): Element;

  export interface Client extends EventEmitter {
    status: string;
    start(): Promise<unknown>;
    stop(): Promise<unknown>;
    send(el: Element): Promise<void>;
    iqCaller: {
      request(el: Element, timeoutMs?: number): Promise<Element>;
    };
    iqCallee: {
      set(ns: string, name: string, handler: (ctx: { stanza: Element; element: Element }) => Promise<Element | boolean | undefined> | Element | boolean | undefined): void;
    };
  }

  export function client(o: { service: string; domain: string; username?: string; password?: string; resource?: string }): Client;
}
